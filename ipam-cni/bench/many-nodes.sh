#!/usr/bin/env bash
# Ten nodes, one pool, on a real API server: the figures of `many_nodes_one_pool` and
# `many_nodes_one_pool_through_agents` (ipam-cni/tests/kube.rs: the plugin alone, then with
# an ipam-agent per node) with release binaries, one after the other. Ten plugin processes at a time, as ten
# nodes' kubelets would start them, each node 100 ADDs in a row, into one pool with a
# ReservedIP; then every DEL. The test prints the wall time of the ADDs, API writes per ADD
# and 409 conflicts per ADD (from the API server's own metrics); this script adds the CPU
# the API server and etcd spent.
#
#   ipam-cni/bench/many-nodes.sh            RSA 2048 serving key (kubeadm's default)
#   IPAM_TESTENV_KEY=ec ipam-cni/bench/many-nodes.sh    ECDSA P-256 (k3s's default)
#   RUNS=5 ...                              runs per server (default 3)
#   PER_NODE=1000 ...                       ADDs per node (default 100); the agents' RSS is
#                                           printed with the figures
#
# Results: ipam-cni/bench/RESULTS.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dir=$(mktemp -d)
trap 'testenv/stop.sh "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
kubeconfig=$(testenv/start.sh "$dir" | tail -n1)
kubectl=$root/testenv/kubectl.sh
"$kubectl" --kubeconfig "$kubeconfig" apply -f deploy/crds/ >/dev/null
"$kubectl" --kubeconfig "$kubeconfig" create namespace ipam-rs >/dev/null
cargo build --release -q -p ipam-cni -p ipamctl -p ipam-agent
cargo test --release -q -p ipam-cni --test kube --no-run 2>/dev/null
cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$(cat "$1")/stat"; }
for run in $(seq 1 "${RUNS:-3}"); do
  for test in many_nodes_one_pool many_nodes_one_pool_through_agents; do
    api0=$(cpu "$dir/apiserver.pid") etcd0=$(cpu "$dir/etcd.pid")
    IPAM_TEST_KUBECONFIG=$kubeconfig IPAM_TEST_KUBECTL=$kubectl IPAM_BENCH_PER_NODE=${PER_NODE:-100} \
      cargo test --release -q -p ipam-cni --test kube "$test" -- --exact --nocapture 2>&1 \
      | grep '^many_nodes_one_pool'
    api1=$(cpu "$dir/apiserver.pid") etcd1=$(cpu "$dir/etcd.pid")
    echo "  run $run (ADDs and DELs): API server $(echo "$api1 - $api0" | bc) s CPU, etcd $(echo "$etcd1 - $etcd0" | bc) s CPU"
  done
done
