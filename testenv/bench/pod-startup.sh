#!/usr/bin/env bash
# Pod start-up cost, side by side (issue 15, point 8): a benchmark, not a test.
#
#   testenv/bench/pod-startup.sh [DIR]      (DIR: a running cluster; else one is started)
#
# Creates 50 Pods at once on node1, three times each, under three network configurations of
# node1 (the same macvlan network, node, images and Pods; only the IPAM section differs):
#   host-local    Debian's host-local (a file per address, flock)
#   ipam-redb     ipam-cni on its embedded redb store (/var/lib/cni/ipam-cni on the node)
#   ipam-kube     ipam-cni on the Kubernetes store (the cluster's API server)
# and reports, per configuration, the median and p95 of creation -> Ready per Pod over the
# 150 Pods, and the ratio to host-local. Times are observed by a watch of the API server
# (the moment each Pod appears and the moment it turns Ready, in milliseconds here), so both
# ends are seen the same way. BENCH_PODS and BENCH_RUNS change the counts.
#
# The figures depend on the machine and its load: testenv/bench/RESULTS.md records them with
# the load they were taken under.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
. "$here/../lib.sh"
. "$TESTENV_DIR/cluster-lib.sh"
pods=${BENCH_PODS:-50} runs=${BENCH_RUNS:-3}
T=${IPAM_TESTENV_TEST_TIMEOUT:-900}

own=false
if [ $# -gt 0 ]; then dir=$(readlink -f "$1")
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/ipam-bench.XXXXXX"); own=true
  "$TESTENV_DIR/start.sh" --cluster --nodes 2 "$dir" >/dev/null
fi
load_cluster "$dir"
conf=$(node_dir node1)/root/etc/cni/net.d/10-macvlan.conflist
cp "$conf" "$dir/bench-conflist.orig"
out=$dir/bench
mkdir -p "$out"
finish() {
  cp "$dir/bench-conflist.orig" "$conf"
  if $own; then "$TESTENV_DIR/stop.sh" "$dir" >/dev/null 2>&1 || true; fi
}
trap finish EXIT
k() { "$TESTENV_DIR/exec.sh" "$dir" kubectl "$@"; }

# The bench's pool: 10.76.0.0/16, room for every Pod of a run.
"$TESTENV_DIR/exec.sh" "$dir" ipamctl apply -f - >/dev/null <<EOF
apiVersion: ipam.rs/v1alpha1
kind: IPPool
metadata:
  name: bench-pool
spec:
  subnet: 10.76.0.0/16
  ips:
  - 10.76.0.10-10.76.3.250
EOF

ipam_of() { # CONFIG: the ipam section
  case $1 in
    host-local) echo '{"type": "host-local", "ranges": [[{"subnet": "10.76.0.0/16", "rangeStart": "10.76.0.10", "rangeEnd": "10.76.3.250"}]]}' ;;
    ipam-redb) echo '{"type": "ipam-cni", "ranges": [[{"subnet": "10.76.0.0/16", "rangeStart": "10.76.0.10", "rangeEnd": "10.76.3.250"}]]}' ;;
    ipam-kube) echo '{"type": "ipam-cni", "ippools": {"ipv4": ["bench-pool"]}, "store": {"kubernetes": {"kubeconfig": "/etc/cni/net.d/ipam-cni.kubeconfig", "nodeName": "node1"}}}' ;;
  esac
}
set_config() { # CONFIG
  cat >"$conf.tmp" <<EOF
{"cniVersion": "1.0.0", "name": "macvlan-net", "plugins": [
  {"type": "macvlan", "master": "pods1", "mode": "bridge", "ipam": $(ipam_of "$1")}]}
EOF
  mv -f "$conf.tmp" "$conf"
  # containerd reloads the configuration directory on change; give it its moment.
  sleep 5
}

manifest() { # RUN
  local i
  for i in $(seq 1 "$pods"); do
    cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: bench-$1-$i
  labels: {bench: "$1"}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: localhost/ipam-rs/busybox:1.35
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
EOF
  done
}

# One run: a watch stamps each event as it arrives ("MS NAME READY"); 50 Pods created in one
# kubectl call; wait until all are Ready; delete them and wait until they are gone.
one_run() { # CONFIG N
  local run=$1-$2 log=$out/$1-$2.events
  : >"$log"
  # In a process group of its own (setsid), so that the watch and its stamper end together.
  setsid bash -c '"$0" "$1" kubectl get pods -l "bench=$2" --watch \
      -o "jsonpath={.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}" 2>/dev/null \
    | while read -r name ready; do echo "$(date +%s%3N) $name ${ready:-none}"; done' \
    "$TESTENV_DIR/exec.sh" "$dir" "$run" >>"$log" &
  local watcher=$!
  sleep 3
  manifest "$run" | k create -f - >/dev/null
  local deadline=$(($(date +%s) + T))
  until [ "$(awk '$3 == "True" {print $2}' "$log" | sort -u | wc -l)" -ge "$pods" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$run: not all $pods Pods Ready within $T s"
    sleep 1
  done
  kill -- "-$watcher" 2>/dev/null || true
  k delete pods -l "bench=$run" --wait=false >/dev/null
  until [ -z "$(k get pods -l "bench=$run" -o name)" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$run: Pods not gone within $T s"
    sleep 2
  done
}

configs=(host-local ipam-redb ipam-kube)
# Round by round, every configuration in each: a load that drifts during the bench (the
# machine is shared) then weighs on all three alike.
for r in $(seq 1 "$runs"); do
  for c in "${configs[@]}"; do
    set_config "$c"
    echo "bench: $c run $r: $pods Pods (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    one_run "$c" "$r"
  done
done

python3 - "$out" "$pods" "${configs[@]}" <<'PY'
import glob, os, statistics, sys
out, pods, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def per_pod(path):
    first, ready = {}, {}
    for line in open(path):
        ms, name, status = line.split()
        first.setdefault(name, int(ms))
        if status == "True":
            ready.setdefault(name, int(ms))
    return [(ready[n] - first[n]) / 1000 for n in ready]
def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
rows = {}
for c in configs:
    xs = []
    for path in sorted(glob.glob(os.path.join(out, c + "-*.events"))):
        xs += per_pod(path)
    rows[c] = (statistics.median(xs), p95(xs), len(xs))
base = rows[configs[0]]
print("| configuration | Pods | median creation -> Ready | p95 | median / host-local | p95 / host-local |")
print("|---|---|---|---|---|---|")
for c in configs:
    m, p, n = rows[c]
    print(f"| {c} | {n} | {m:.2f} s | {p:.2f} s | {m / base[0]:.2f} | {p / base[1]:.2f} |")
PY
