#!/usr/bin/env bash
# What one sync of the lifecycle controller costs: N Pods and N allocations on a fresh test
# API server (testenv/start.sh), then SYNCS syncs, each counted by the API server's own
# request metrics and timed, with the CPU the API server and etcd spent on them.
#
#   ipam-controller/bench/sync-cost.sh [N] [SYNCS] [watch]     (default 5000 5)
#
# With `watch`, the controller reads the cluster as it runs (watches, one list per process)
# instead of listing it at every sync.
#
# Results: ipam-controller/bench/RESULTS.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
n=${1:-5000} syncs=${2:-5} mode=${3:-}
dir=$(mktemp -d)
trap 'testenv/stop.sh "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
kubeconfig=$(testenv/start.sh "$dir" | tail -n1)
testenv/kubectl.sh --kubeconfig "$kubeconfig" apply -f deploy/crds/ >/dev/null
cargo build --release -q -p ipam-controller --example sync_cost
target=${CARGO_TARGET_DIR:-$root/target}
APISERVER_PID=$(cat "$dir/apiserver.pid") ETCD_PID=$(cat "$dir/etcd.pid") \
  "$target/release/examples/sync_cost" "$kubeconfig" "$n" "$syncs" $mode
