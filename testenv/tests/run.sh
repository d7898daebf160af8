#!/usr/bin/env bash
# The tests on a real cluster (issue 15, point 7): kubelet + containerd nodes asking ipam-cni
# on the Kubernetes store for the Pods' addresses.
#
#   testenv/tests/run.sh [DIR] [TEST...]
#
# DIR: a running cluster of start.sh --cluster (2 nodes or more); without it, one is started
# in a temporary directory and stopped at the end. TEST: run only these (names below).
# One cluster serves every test: each works in its own pool and its own Pods, and removes them.
# Prints `N passed, N failed` last; exit status 0 only if none failed.
#
# Prerequisites: root, and what start.sh installs or builds (Debian's containerd, runc,
# iptables, etcd-server, ...; the Kubernetes binaries of build-node.sh, about 20 minutes the
# first time). Outside CI, a missing one skips the tests with a message saying what to do;
# under CI=true it fails them.
#
# Waits poll with generous deadlines (IPAM_TESTENV_TEST_TIMEOUT, default 600 s for each):
# on a busy 2-core machine a kubelet's sandbox back-off or a Pod's deletion take tens of
# seconds. Nothing here measures speed.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
. "$here/../lib.sh"
. "$TESTENV_DIR/cluster-lib.sh"
T=${IPAM_TESTENV_TEST_TIMEOUT:-600}

skip_or_fail() { # MESSAGE
  if [ "${CI:-}" = true ]; then die "prerequisite missing (CI=true, so this fails): $1"; fi
  echo "cluster tests SKIPPED: $1"
  exit 0
}
[ "$(id -u)" = 0 ] || skip_or_fail "the cluster needs root (network and mount namespaces, cgroups)"
if [ "${CI:-}" != true ]; then
  missing=()
  for c in containerd runc iptables etcd; do command -v $c >/dev/null || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] || skip_or_fail "missing ${missing[*]}: apt-get install containerd runc iptables etcd-server"
  . "$TESTENV_DIR/kube-build.sh"
  kdir=$(kube_build_dir)
  for b in "${KUBE_BINARIES[@]}"; do
    [ -x "$kdir/$b" ] || skip_or_fail "no $kdir/$b: run testenv/build-node.sh first (about 20 min once per machine)"
  done
fi

own_cluster=false
if [ $# -gt 0 ] && [ -d "$1" ]; then
  dir=$(readlink -f "$1"); shift
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/ipam-cluster-tests.XXXXXX")
  own_cluster=true
  "$TESTENV_DIR/start.sh" --cluster --nodes 2 "$dir" >/dev/null
fi
load_cluster "$dir"
[ "$NODES" -ge 2 ] || die "$dir has $NODES node(s); the tests need 2 or more"
[ "$API" = ipam ] || die "$dir serves the $API API; these tests use the project's own (start.sh --cluster without --api)"

passed=0 failed=0 failures=()
finish() {
  local rc=$?
  if $own_cluster; then
    if [ $failed -eq 0 ] && [ $rc -eq 0 ]; then "$TESTENV_DIR/stop.sh" "$dir" >/dev/null 2>&1; rm -rf "$dir"
    else "$TESTENV_DIR/stop.sh" "$dir" >/dev/null 2>&1; echo "logs kept in $dir/logs and $dir/nodes" >&2; fi
  fi
}
trap finish EXIT

k() { "$TESTENV_DIR/exec.sh" "$dir" kubectl "$@"; }
ctl() { "$TESTENV_DIR/exec.sh" "$dir" ipamctl "$@"; }
note() { echo "    $*"; }
fail() { echo "    FAIL: $*" >&2; return 1; }
# Polls CMD (a shell function or command) until it succeeds; fails the test naming WHAT.
poll() { # WHAT CMD...
  local what=$1 deadline=$(($(date +%s) + T)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { fail "$what: not within $T s"; return 1; }
    sleep 2
  done
}

# Allocations of POOL as lines "ADDRESS NAMESPACE/NAME UID CONTAINERID", sorted.
allocs() { # POOL
  ctl get allocations -o json | python3 -c '
import json, sys
pool = sys.argv[1]
for a in json.load(sys.stdin)["items"]:
    if a.get("pool") == pool:
        print(a["address"], "%s/%s" % (a.get("podNamespace", "?"), a.get("podName", "?")), a.get("podUID", "?"), a["containerID"])
' "$1" | sort
}
alloc_count() { allocs "$1" | wc -l; }
pool_empty() { [ "$(alloc_count "$1")" -eq 0 ]; }
# The Pods of a label selector as "IP NAMESPACE/NAME UID NODE PHASE", tab-separated (a
# Pending Pod's IP is empty, a field that blank-separated awk would skip), sorted.
pods_of() { # SELECTOR
  k get pods -l "$1" -o jsonpath='{range .items[*]}{.status.podIP}{"\t"}{.metadata.namespace}/{.metadata.name}{"\t"}{.metadata.uid}{"\t"}{.spec.nodeName}{"\t"}{.status.phase}{"\n"}{end}' | sort
}
# Every Running Pod of SELECTOR holds exactly one address of POOL and the pool holds no other:
# no leak, no duplicate, each address recorded with its Pod's namespace, name and UID.
pods_match_allocations() { # SELECTOR POOL
  local want got
  want=$(pods_of "$1" | awk -F '\t' '$5 == "Running" && $1 != "" {print $1, $2, $3}' | sort)
  got=$(allocs "$2" | awk '{print $1, $2, $3}' | sort)
  [ "$want" = "$got" ] && [ -n "$want" ]
}
# Counts of the plugin's ADD and DEL lines for POOL's addresses, over every node's log.
plugin_log_counts() { # PREFIX (addresses starting with it)
  local adds=0 dels=0 i f
  for i in $(seq 1 "$NODES"); do
    f=$(node_dir "node$i")/root/var/log/ipam-cni/ipam-cni.log
    [ -f "$f" ] || continue
    adds=$((adds + $(grep -c "ADD .*: $1" "$f" || true)))
    dels=$((dels + $(grep -c "DEL .*: released $1" "$f" || true)))
  done
  echo "$adds $dels"
}

pool() { # NAME SUBNET RANGE [RESERVED-RANGE]
  ctl apply -f - >/dev/null <<EOF
apiVersion: ipam.rs/v1alpha1
kind: IPPool
metadata:
  name: $1
spec:
  subnet: $2
  ips:
  - $3
EOF
  if [ -n "${4:-}" ]; then
    ctl apply -f - >/dev/null <<EOF
apiVersion: ipam.rs/v1alpha1
kind: ReservedIP
metadata:
  name: $1-reserved
spec:
  ips:
  - $4
EOF
  fi
}
drop_pool() { # NAME
  ctl delete reservedip "$1-reserved" >/dev/null 2>&1 || true
  ctl delete ippool "$1" --force >/dev/null 2>&1 || true
}

# A busybox Pod annotated with POOL, on NODE (spec.nodeName) or wherever the scheduler puts
# it. (No HTTP probe: with macvlan, as on any host, the node cannot reach its own Pods.)
pod() { # NAME POOL [NODE] [LABEL]
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {test: ${4:-$1}}
  annotations:
    ipam.rs/ippool: '{"ipv4": ["$2"]}'
spec:
  ${3:+nodeName: $3}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: localhost/ipam-rs/busybox:1.35
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
EOF
}
# The address the Pod's eth0 really has (kubectl exec: API server -> kubelet -> containerd).
eth0_addr() { k exec "$1" -- ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
pod_ip() { k get pod "$1" -o jsonpath='{.status.podIP}'; }
pod_ready() { [ "$(k get pod "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
# The last address of 10.a.b.c, for range checks.
last_octet() { echo "${1##*.}"; }

# --- the tests -----------------------------------------------------------------------------

# Pods on both nodes get addresses from their pool and never a reserved one; ipamctl shows each
# with its Pod's namespace, name and UID; deleting a Pod frees its address.
test_pods_on_both_nodes() {
  pool t1-pool 10.71.0.0/24 10.71.0.10-10.71.0.20 10.71.0.10-10.71.0.12
  pod t1-a t1-pool node1 t1
  pod t1-b t1-pool node2 t1
  poll "t1-a Ready" pod_ready t1-a || return 1
  poll "t1-b Ready" pod_ready t1-b || return 1
  local p ip
  for p in t1-a t1-b; do
    ip=$(pod_ip $p)
    [[ $ip == 10.71.0.* ]] && [ "$(last_octet "$ip")" -ge 13 ] && [ "$(last_octet "$ip")" -le 20 ] \
      || { fail "$p has $ip: not from t1-pool's 10.71.0.13-20 (10-12 are reserved)"; return 1; }
    [ "$(eth0_addr $p)" = "$ip" ] || { fail "$p's eth0 has '$(eth0_addr $p)', its status says $ip"; return 1; }
    note "$p on $(k get pod $p -o jsonpath='{.spec.nodeName}'): $ip, on its eth0 (kubectl exec)"
  done
  [ "$(pod_ip t1-a)" != "$(pod_ip t1-b)" ] || { fail "both Pods have $(pod_ip t1-a)"; return 1; }
  pods_match_allocations test=t1 t1-pool || { fail "allocations do not match the Pods:"; allocs t1-pool >&2; pods_of test=t1 >&2; return 1; }
  note "ipamctl get allocations: $(allocs t1-pool | awk '{print $1, $2}' | paste -sd, -) (with the Pods' UIDs)"
  ip=$(pod_ip t1-a)
  k delete pod t1-a --wait=false >/dev/null
  freed() { ! allocs t1-pool | grep -q "^$ip "; }
  poll "t1-a's address $ip released after its deletion" freed || return 1
  note "t1-a deleted: $ip released"
  k delete pod t1-b --wait=false >/dev/null
  poll "t1-pool empty" pool_empty t1-pool
  drop_pool t1-pool
}

# Each node's agent (the DaemonSet's agent container) answers its plugin: the ADDs and DELs of
# Pods on a node are calls its agent counts on its /metrics, and its /healthz says ok.
test_calls_through_the_agent() {
  pool t11-pool 10.81.0.0/24 10.81.0.10-10.81.0.40
  k -n ipam-rs rollout status daemonset/ipam-cni --timeout="${T}s" >/dev/null || { fail "ipam-cni not on every node"; return 1; }
  metrics_of() { in_cluster curl -sf --max-time 5 "http://$(node_ip "$1"):9474/$2"; }
  answered() { # NODE COMMAND: the calls of COMMAND the node's agent answered with success
    local text; text=$(metrics_of "$1" metrics) || return 1
    awk -v series="ipam_rs_agent_calls_total{command=\"$2\",code=\"0\"}" \
      '$1 == series {n = $2} END {print n + 0}' <<<"$text"
  }
  local i adds=() dels=() n
  for i in 1 2; do
    poll "node$i's agent healthy" metrics_of "node$i" healthz || return 1
    adds[i]=$(answered "node$i" ADD) dels[i]=$(answered "node$i" DEL)
  done
  pod t11-a t11-pool node1 t11
  pod t11-b t11-pool node1 t11
  pod t11-c t11-pool node2 t11
  for p in t11-a t11-b t11-c; do poll "$p Ready" pod_ready $p || return 1; done
  pods_match_allocations test=t11 t11-pool || { fail "allocations do not match the Pods"; allocs t11-pool >&2; return 1; }
  # At least one ADD per Pod (a kubelet may retry a sandbox); none of the other node's.
  for i in 1 2; do
    n=$(( $(answered "node$i" ADD) - adds[i] ))
    want=$(( i == 1 ? 2 : 1 ))
    [ "$n" -ge "$want" ] || { fail "node$i's agent answered $n ADDs for its $want Pod(s)"; metrics_of "node$i" metrics | grep calls_total >&2; return 1; }
    note "node$i: its agent answered $n ADD(s) for its $want Pod(s)"
  done
  # Each call's API requests, as the agent's store counted them (its cache at work: an ADD
  # writes twice and reads only to check after the write).
  local api
  api=$(metrics_of node1 metrics | awk '
    $1 == "ipam_rs_agent_call_api_reads_sum{command=\"ADD\"}" {r = $2}
    $1 == "ipam_rs_agent_call_api_writes_sum{command=\"ADD\"}" {w = $2}
    $1 == "ipam_rs_agent_call_api_writes_count{command=\"ADD\"}" {n = $2}
    END {if (n > 0) printf "%d ADDs, %.2f reads and %.2f writes each", n, r / n, w / n}')
  [ -n "$api" ] || { fail "node1's agent reports no API requests per ADD"; metrics_of node1 metrics | grep api >&2; return 1; }
  note "node1's agent, its API requests: $api"
  k delete pod t11-a t11-b t11-c --wait=false >/dev/null
  poll "t11-pool empty" pool_empty t11-pool || return 1
  for i in 1 2; do
    del_done() { [ $(( $(answered "node$1" DEL) - dels[$1] )) -ge "$2" ]; }
    poll "node$i's agent answered its Pods' DELs" del_done "$i" $(( i == 1 ? 2 : 1 )) || return 1
  done
  note "the Pods deleted: their DELs answered by their nodes' agents"
  drop_pool t11-pool
}

# A Deployment of 20 replicas across the nodes scales to 0 and back with no leak and no
# duplicate: the addresses held are exactly those of the Running Pods, and the plugin's ADDs
# minus its releases equal them.
test_scale_20() {
  pool t2-pool 10.72.0.0/24 10.72.0.10-10.72.0.90
  k apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: t2
spec:
  replicas: 20
  selector:
    matchLabels: {test: t2}
  template:
    metadata:
      labels: {test: t2}
      annotations:
        ipam.rs/ippool: '{"ipv4": ["t2-pool"]}'
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: localhost/ipam-rs/busybox:1.35
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
EOF
  k rollout status deploy/t2 --timeout="${T}s" >/dev/null || { fail "20 replicas did not roll out"; return 1; }
  poll "20 Pods match 20 allocations" pods_match_allocations test=t2 t2-pool || { fail "mismatch"; allocs t2-pool >&2; pods_of test=t2 >&2; return 1; }
  local on1 on2
  on1=$(pods_of test=t2 | awk -F '\t' '$4 == "node1"' | wc -l) on2=$(pods_of test=t2 | awk -F '\t' '$4 == "node2"' | wc -l)
  note "20 Running (node1: $on1, node2: $on2), 20 addresses, all distinct: $(allocs t2-pool | awk '{print $1}' | sort -u | wc -l)"
  [ "$on1" -gt 0 ] && [ "$on2" -gt 0 ] || { fail "the replicas are not on both nodes"; return 1; }
  k scale deploy/t2 --replicas=0 >/dev/null
  empty() { [ "$(alloc_count t2-pool)" -eq 0 ] && [ -z "$(pods_of test=t2)" ]; }
  poll "scaled to 0: no Pod, no address left" empty || { allocs t2-pool >&2; return 1; }
  note "scaled to 0: no address held"
  k scale deploy/t2 --replicas=20 >/dev/null
  k rollout status deploy/t2 --timeout="${T}s" >/dev/null || { fail "scaling back to 20 did not roll out"; return 1; }
  poll "20 Pods match 20 allocations again" pods_match_allocations test=t2 t2-pool || { allocs t2-pool >&2; pods_of test=t2 >&2; return 1; }
  local counts adds dels
  counts=$(plugin_log_counts 10.72.0.) adds=${counts% *} dels=${counts#* }
  note "back to 20: plugin ADDs $adds, releases $dels, held $(alloc_count t2-pool)"
  # 40 Pods have run (20, scaled to 0, 20 again): each had its ADD, the first 20 their release.
  [ "$adds" -ge 40 ] && [ "$dels" -ge 20 ] || { fail "the plugin's logs show $adds ADDs and $dels releases for 40 Pods, 20 of them deleted"; return 1; }
  [ $((adds - dels)) -eq "$(alloc_count t2-pool)" ] || { fail "ADDs $adds - releases $dels != $(alloc_count t2-pool) held"; return 1; }
  k delete deploy/t2 --wait=false >/dev/null
  poll "t2 deleted: no address left" empty || return 1
  drop_pool t2-pool
}

# Exhaustion: a Pod that finds its pool used up stays ContainerCreating, with a
# FailedCreatePodSandBox event carrying the plugin's message and the pool's counts, and runs
# once an address frees.
test_exhaustion() {
  pool t3-pool 10.73.0.0/24 10.73.0.10-10.73.0.11 10.73.0.11
  pod t3-a t3-pool node1 t3
  poll "t3-a Ready" pod_ready t3-a || return 1
  pod t3-b t3-pool node2 t3
  event() {
    k get events --field-selector involvedObject.name=t3-b,reason=FailedCreatePodSandBox \
      -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' | grep -i 'used up'
  }
  poll "t3-b's FailedCreatePodSandBox event saying the pool is used up" event || return 1
  note "t3-b: $(event | head -n1 | sed 's/.*ipam-cni/ipam-cni/' | cut -c1-220)"
  [ "$(k get pod t3-b -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}')" = ContainerCreating ] \
    || { fail "t3-b is not ContainerCreating"; return 1; }
  event | grep -q 't3-pool' || { fail "the event does not name t3-pool"; return 1; }
  event | grep -Eq 'total|[0-9]' || { fail "the event gives no counts"; return 1; }
  k delete pod t3-a --wait=false >/dev/null
  poll "t3-b Ready once t3-a's address is free" pod_ready t3-b || return 1
  [ "$(pod_ip t3-b)" = 10.73.0.10 ] || { fail "t3-b got $(pod_ip t3-b), expected 10.73.0.10"; return 1; }
  note "t3-a deleted: t3-b Running with 10.73.0.10"
  k delete pod t3-b --wait=false >/dev/null
  poll "t3-pool empty" pool_empty t3-pool
  drop_pool t3-pool
}

# A kubelet restart (kill -9 and start) keeps the running Pods, their sandboxes and addresses.
test_kubelet_restart() {
  pool t4-pool 10.74.0.0/24 10.74.0.10-10.74.0.20
  pod t4-a t4-pool node1 t4
  poll "t4-a Ready" pod_ready t4-a || return 1
  local before after
  before="$(pod_ip t4-a) $(k get pod t4-a -o jsonpath='{.metadata.uid} {.status.containerStatuses[0].containerID}')"
  "$TESTENV_DIR/node.sh" "$dir" kill node1
  note "node1's kubelet killed (SIGKILL)"
  "$TESTENV_DIR/node.sh" "$dir" start node1
  ready() { [ "$(k get node node1 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
  poll "node1 Ready again" ready || return 1
  poll "t4-a Ready after the restart" pod_ready t4-a || return 1
  after="$(pod_ip t4-a) $(k get pod t4-a -o jsonpath='{.metadata.uid} {.status.containerStatuses[0].containerID}')"
  [ "$before" = "$after" ] || { fail "before the restart: $before; after: $after"; return 1; }
  [ "$(k get pod t4-a -o jsonpath='{.status.containerStatuses[0].restartCount}')" = 0 ] || { fail "the container restarted"; return 1; }
  pods_match_allocations test=t4 t4-pool || { fail "allocations changed"; allocs t4-pool >&2; return 1; }
  note "kubelet restarted: t4-a kept its container and $(pod_ip t4-a); one allocation"
  k delete pod t4-a --wait=false >/dev/null
  poll "t4-pool empty" pool_empty t4-pool
  drop_pool t4-pool
}

# The DaemonSet's rolling update replaces the binary on every node while Pods start, and those
# Pods get their addresses (the kubelet retries a sandbox that fell into the gap).
test_daemonset_rolling_update() {
  pool t5-pool 10.75.0.0/24 10.75.0.10-10.75.0.60
  local old new v2 i sum want
  old=$(k -n ipam-rs get ds ipam-cni -o jsonpath='{.spec.template.spec.containers[0].image}')
  # A second image whose ipam-cni differs in its bytes (a marker appended after the ELF
  # data, which the loader never reads), so the binary on the nodes visibly changes.
  v2=$dir/images-v2
  mkdir -p "$v2"
  cp "$IPAM_CNI" "$v2/ipam-cni"
  printf '\nipam-rs testenv rolling update %s\n' "$(date +%s%N)" >>"$v2/ipam-cni"
  "$TESTENV_DIR/images/build.sh" "$v2" "$v2/ipam-cni" "$IPAMCTL" "$IPAM_CONTROLLER" "$IPAM_AGENT" >/dev/null
  new=$(cat "$v2/ipam-cni.ref")
  for i in $(seq 1 "$NODES"); do
    "$TESTENV_DIR/exec.sh" --node "node$i" "$dir" ctr -n k8s.io images import "$v2/ipam-cni.tar" >/dev/null
  done
  want=$(sha256sum <"$v2/ipam-cni" | cut -c1-64)
  k apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: t5
spec:
  replicas: 0
  selector:
    matchLabels: {test: t5}
  template:
    metadata:
      labels: {test: t5}
      annotations:
        ipam.rs/ippool: '{"ipv4": ["t5-pool"]}'
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: localhost/ipam-rs/busybox:1.35
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
EOF
  # The update and Pods starting at once.
  # Both containers: the installer and the node agent (whose restart sends the plugin's calls
  # the direct way meanwhile).
  k -n ipam-rs set image daemonset/ipam-cni "install-cni=$new" "agent=$new" >/dev/null
  k scale deploy/t5 --replicas=8 >/dev/null
  k -n ipam-rs rollout status daemonset/ipam-cni --timeout="${T}s" >/dev/null || { fail "the DaemonSet did not roll out"; return 1; }
  for i in $(seq 1 "$NODES"); do
    installed() { [ "$(sha256sum <"$(node_dir "node$1")/root/opt/cni/bin/ipam-cni" | cut -c1-64)" = "$want" ]; }
    poll "node$i runs the new ipam-cni" installed "$i" || return 1
  done
  note "$old -> $new: the new binary on all $NODES nodes"
  k rollout status deploy/t5 --timeout="${T}s" >/dev/null || { fail "8 Pods did not start during the update"; return 1; }
  poll "8 Pods match 8 allocations" pods_match_allocations test=t5 t5-pool || { allocs t5-pool >&2; pods_of test=t5 >&2; return 1; }
  note "8 Pods started during the update: 8 distinct addresses"
  k delete deploy/t5 --wait=false >/dev/null
  poll "t5-pool empty" pool_empty t5-pool
  drop_pool t5-pool
}

# Leaked addresses come back without a DEL (ipam-controller): Pods on node2 are deleted while
# its kubelet is stopped and its Node object is gone, so no DEL reaches the plugin.
# `ipamctl gc --dry-run` names them at once; the controller releases them after its grace
# period (1m here) and writes the pool's counts; the Pod on node1 keeps its address
# throughout. Then node2 comes back (its kubelet stops the deleted Pods' sandboxes, whose DELs
# find nothing left to release), and the leader is killed: the other replica takes the Lease.
test_leaks_reclaimed() {
  pool t6-pool 10.76.0.0/24 10.76.0.10-10.76.0.40
  local p keep leaked t0 held_by
  for p in t6-a t6-b t6-c; do pod "$p" t6-pool node2 t6; done
  pod t6-keep t6-pool node1 t6
  for p in t6-a t6-b t6-c t6-keep; do poll "$p Ready" pod_ready "$p" || return 1; done
  keep=$(pod_ip t6-keep)
  "$TESTENV_DIR/node.sh" "$dir" stop node2
  k delete node node2 >/dev/null
  k delete pod t6-a t6-b t6-c --grace-period=0 --force >/dev/null 2>&1
  note "node2's kubelet stopped, node2 deleted, its 3 Pods force-deleted: no DEL"
  leaked() { [ "$(ctl gc --dry-run -o json | python3 -c '
import json, sys
print(sum(1 for i in json.load(sys.stdin)["items"] if i["pool"] == "t6-pool" and i["reason"] == "podGone"))')" = 3 ]; }
  poll "gc --dry-run lists the 3 addresses as podGone" leaked || return 1
  t0=$(date +%s)
  only_keep() { [ "$(allocs t6-pool | awk '{print $1, $2}')" = "$keep default/t6-keep" ]; }
  poll "the controller releases the 3 leaked addresses" only_keep || { allocs t6-pool >&2; return 1; }
  note "released $(($(date +%s) - t0)) s after gc --dry-run saw them (grace 1m); t6-keep kept $keep"
  counted() { [ "$(k get ippool t6-pool -o jsonpath='{.status.allocatedIPCount}')" = 1 ]; }
  poll "t6-pool's status counts 1 allocation" counted || return 1
  pods_match_allocations test=t6 t6-pool || { fail "t6-keep's allocation changed"; allocs t6-pool >&2; return 1; }
  # The leader's metrics (on its node's address: host network) say what it did.
  leader_metrics() {
    local i text
    for i in $(seq 1 "$NODES"); do
      text=$(in_cluster curl -sf --max-time 5 "http://$(node_ip "node$i"):9472/metrics") || continue
      grep -qx 'ipam_rs_controller_leader 1' <<<"$text" && { echo "$text"; return 0; }
    done
    return 1
  }
  local m released
  m=$(leader_metrics) || { fail "no replica serves metrics as the leader"; return 1; }
  released=$(awk '$1 == "ipam_rs_leaks_released_total{reason=\"podGone\"}" {print $2}' <<<"$m")
  [ "${released:-0}" -ge 3 ] || { fail "ipam_rs_leaks_released_total{reason=\"podGone\"} is ${released:-absent}"; return 1; }
  grep -qx 'ipam_rs_pool_allocated_addresses{pool="t6-pool"} 1.0' <<<"$m" \
    || { fail "the leader's ipam_rs_pool_allocated_addresses for t6-pool is not 1"; grep t6-pool <<<"$m" >&2; return 1; }
  note "the leader's /metrics: $released released (podGone), t6-pool allocated 1"

  "$TESTENV_DIR/node.sh" "$dir" start node2
  node2_ready() { [ "$(k get node node2 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
  poll "node2 registered and Ready again" node2_ready || return 1
  k -n ipam-rs rollout status daemonset/ipam-cni --timeout="${T}s" >/dev/null || { fail "ipam-cni not back on node2"; return 1; }
  k -n ipam-rs rollout status deployment/ipam-controller --timeout="${T}s" >/dev/null || { fail "the controller's replicas are not back"; return 1; }
  held_by() { k -n ipam-rs get lease ipam-controller -o jsonpath='{.spec.holderIdentity}'; }
  # The holder may be the replica node2 ran, whose Pod went with the node, until its Lease
  # runs out: wait for a leader whose Pod runs.
  leader_runs() {
    local h; h=$(held_by)
    [ -n "$h" ] && [ "$(k -n ipam-rs get pod "$h" -o jsonpath='{.status.phase}')" = Running ]
  }
  poll "a controller whose Pod runs holds the Lease" leader_runs || return 1
  local leader
  leader=$(held_by)
  t0=$(date +%s)
  k -n ipam-rs delete pod "$leader" --grace-period=0 --force >/dev/null 2>&1 || true
  other() { local h; h=$(held_by); [ -n "$h" ] && [ "$h" != "$leader" ]; }
  poll "another replica takes the Lease over from $leader" other || return 1
  note "leader $leader killed: $(held_by) leads $(($(date +%s) - t0)) s later"

  k delete pod t6-keep --wait=false >/dev/null
  poll "t6-pool empty" pool_empty t6-pool
  drop_pool t6-pool
}

# A StatefulSet's Pods keep their addresses (ipam.keepStatefulSetAddresses, on by default):
# db-0 gets the same address after its deletion, a kubelet restart, and a move to the other
# node; when db-0 is force-deleted on a node that cannot be reached, the new db-0 waits (its
# ADD fails with code 11, naming the earlier Pod) until that node is deleted, then gets it
# back; scaling 3 -> 1 frees db-1's and db-2's; deleting the StatefulSet frees all.
test_statefulset_keeps_addresses() {
  pool t7-pool 10.77.0.0/24 10.77.0.10-10.77.0.30
  sts() { # REPLICAS
    k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: $1
  podManagementPolicy: Parallel
  selector: {matchLabels: {test: t7}}
  template:
    metadata:
      labels: {test: t7}
      annotations:
        ipam.rs/ippool: '{"ipv4": ["t7-pool"]}'
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: localhost/ipam-rs/busybox:1.35
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
EOF
  }
  sts 3
  all_ready() { [ "$(pods_of test=t7 | awk -F '\t' '$5 == "Running" && $1 != ""' | wc -l)" = "$1" ]; }
  poll "db-0, db-1, db-2 Running" all_ready 3 || return 1
  poll "each db Pod holds one address of t7-pool" pods_match_allocations test=t7 t7-pool || return 1
  local ip0 uid node other
  ip0=$(pod_ip db-0)
  # The next db-0 Ready, another Pod than UID, with db-0's address.
  back() { # UID
    pod_ready db-0 && [ "$(k get pod db-0 -o jsonpath='{.metadata.uid}')" != "$1" ] && [ "$(pod_ip db-0)" = "$ip0" ]
  }
  no_twice() { # every address is one Pod's at most
    local dup; dup=$(pods_of test=t7 | awk -F '\t' '$1 != "" {print $1}' | sort | uniq -d)
    [ -z "$dup" ] || { fail "address(es) on two Pods at once: $dup"; pods_of test=t7 >&2; return 1; }
  }
  db0_events() { k get events --field-selector involvedObject.name=db-0 -o jsonpath='{range .items[*]}{.message}{"\n"}{end}'; }

  uid=$(k get pod db-0 -o jsonpath='{.metadata.uid}')
  k delete pod db-0 >/dev/null
  poll "db-0 re-created with $ip0" back "$uid" || { pods_of test=t7 >&2; allocs t7-pool >&2; return 1; }
  no_twice || return 1
  note "db-0 deleted: the new db-0 has $ip0 again"

  node=$(k get pod db-0 -o jsonpath='{.spec.nodeName}')
  "$TESTENV_DIR/node.sh" "$dir" kill "$node"
  "$TESTENV_DIR/node.sh" "$dir" start "$node"
  ready_node() { [ "$(k get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
  poll "$node Ready again" ready_node "$node" || return 1
  poll "db-0 Ready after the kubelet restart" pod_ready db-0 || return 1
  [ "$(pod_ip db-0)" = "$ip0" ] || { fail "db-0 has $(pod_ip db-0) after the kubelet restart, not $ip0"; return 1; }
  note "$node's kubelet killed and restarted: db-0 keeps $ip0"

  other=node1; [ "$node" != node1 ] || other=node2
  k cordon "$node" >/dev/null
  uid=$(k get pod db-0 -o jsonpath='{.metadata.uid}')
  k delete pod db-0 >/dev/null
  poll "db-0 re-created on $other with $ip0" back "$uid" || { pods_of test=t7 >&2; allocs t7-pool >&2; return 1; }
  [ "$(k get pod db-0 -o jsonpath='{.spec.nodeName}')" = "$other" ] || { fail "db-0 is not on $other"; return 1; }
  k uncordon "$node" >/dev/null
  no_twice || return 1
  note "db-0 moved from $node to $other: $ip0 again"

  # db-0 force-deleted while its node cannot be reached: its sandbox may still run there.
  node=$other
  other=node1; [ "$node" != node1 ] || other=node2
  k cordon "$node" >/dev/null
  "$TESTENV_DIR/node.sh" "$dir" stop "$node"
  uid=$(k get pod db-0 -o jsonpath='{.metadata.uid}')
  k delete pod db-0 --grace-period=0 --force >/dev/null 2>&1
  note "$node's kubelet stopped, db-0 force-deleted (its sandbox still runs on $node)"
  waits() { db0_events | grep -q "still held by its earlier Pod"; }
  poll "the new db-0's ADD waits, naming the earlier Pod" waits || { k describe pod db-0 >&2; return 1; }
  no_twice || return 1
  [ "$(pod_ip db-0)" != "$ip0" ] || { fail "the new db-0 got $ip0 while the old one may run"; return 1; }
  note "the new db-0 waits: $(db0_events | grep -o 'address [0-9.]* of StatefulSet Pod [^ ]* is still held by its earlier Pod[^,]*' | head -n1)"
  k delete node "$node" >/dev/null
  poll "db-0 Ready on $other with $ip0 once $node is deleted" back "$uid" || { k describe pod db-0 >&2; allocs t7-pool >&2; return 1; }
  note "$node deleted: the controller handed $ip0 over, the new db-0 runs with it"
  "$TESTENV_DIR/node.sh" "$dir" start "$node"
  poll "$node registered and Ready again" ready_node "$node" || return 1
  k -n ipam-rs rollout status daemonset/ipam-cni --timeout="${T}s" >/dev/null || { fail "ipam-cni not back on $node"; return 1; }
  k -n ipam-rs rollout status deployment/ipam-controller --timeout="${T}s" >/dev/null || { fail "the controller's replicas are not back"; return 1; }
  poll "db-0, db-1, db-2 Running" all_ready 3 || return 1
  poll "each db Pod holds one address of t7-pool" pods_match_allocations test=t7 t7-pool || { allocs t7-pool >&2; return 1; }
  no_twice || return 1

  # The pool switches keeping off: db-2's next DEL releases its address.
  local ip1 ip2
  ip1=$(pod_ip db-1) ip2=$(pod_ip db-2)
  k patch ippool t7-pool --type=merge -p '{"spec": {"keepStatefulSetAddresses": false}}' >/dev/null
  uid=$(k get pod db-2 -o jsonpath='{.metadata.uid}')
  k delete pod db-2 >/dev/null
  db2_back() { pod_ready db-2 && [ "$(k get pod db-2 -o jsonpath='{.metadata.uid}')" != "$uid" ]; }
  poll "db-2 re-created" db2_back || return 1
  [ "$(pod_ip db-2)" != "$ip2" ] || { fail "db-2 got $ip2 back although t7-pool keeps no StatefulSet address"; return 1; }
  note "keepStatefulSetAddresses: false on t7-pool: db-2 re-created with $(pod_ip db-2), not $ip2"
  ip2=$(pod_ip db-2)
  k patch ippool t7-pool --type=merge -p '{"spec": {"keepStatefulSetAddresses": true}}' >/dev/null
  sts 1
  only_db0() { [ "$(allocs t7-pool | awk '{print $1, $2}')" = "$ip0 default/db-0" ]; }
  poll "scaled to 1: db-1's $ip1 and db-2's $ip2 free, db-0 keeps $ip0" only_db0 || { allocs t7-pool >&2; return 1; }
  note "scaled 3 -> 1: $ip1 and $ip2 released"
  k delete statefulset db >/dev/null
  poll "StatefulSet deleted: t7-pool empty" pool_empty t7-pool || { allocs t7-pool >&2; return 1; }
  note "StatefulSet deleted: every address released"
  drop_pool t7-pool
}

# Chaos (issue 16's proof): a Deployment and a StatefulSet on both nodes while, round after
# round, Pods are force-deleted, a kubelet or a node agent is killed while Pods are created,
# a kubelet is stopped while its Pods are deleted (no DEL reaches the plugin), a node is deleted and
# registers again, and the controller's leader is killed. Throughout, every Pod list is
# checked for an address on two Pods; once the churn stops and the grace period has passed,
# the pool holds exactly the running Pods' addresses, each recorded for its Pod: no leak, no
# duplicate. Rounds: IPAM_CHAOS_ROUNDS (default 1: every fault once; testenv/chaos.sh runs 5); each action waits with the deadline T.
test_chaos() {
  local rounds=${IPAM_CHAOS_ROUNDS:-1} round action victim node checks=0
  pool tc-pool 10.78.0.0/24 10.78.0.10-10.78.0.120
  k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: tc-web}
spec:
  replicas: 6
  selector: {matchLabels: {app: tc-web}}
  template:
    metadata:
      labels: {test: tc, app: tc-web}
      annotations:
        ipam.rs/ippool: '{"ipv4": ["tc-pool"]}'
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: localhost/ipam-rs/busybox:1.35
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: tc-db}
spec:
  serviceName: tc-db
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: tc-db}}
  template:
    metadata:
      labels: {test: tc, app: tc-db}
      annotations:
        ipam.rs/ippool: '{"ipv4": ["tc-pool"]}'
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: localhost/ipam-rs/busybox:1.35
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
EOF
  running() { pods_of test=tc | awk -F '\t' '$5 == "Running" && $1 != ""' | wc -l; }
  settled() { [ "$(running)" = 9 ] && [ "$(pods_of test=tc | wc -l)" = 9 ]; }
  poll "9 Pods Running" settled || return 1
  # One list: no address on two Pods. Every check is counted, failures fail the test.
  no_twice() {
    local dup; dup=$(pods_of test=tc | awk -F '\t' '$1 != "" {print $1}' | sort | uniq -d)
    checks=$((checks + 1))
    [ -z "$dup" ] || { fail "address(es) on two Pods at once: $dup"; pods_of test=tc >&2; return 1; }
  }
  # Runs CMD... while checking the Pod list every 2 s.
  watching() {
    "$@" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do no_twice || { wait "$pid" || true; return 1; }; sleep 2; done
    wait "$pid"
  }
  ready_node() { [ "$(k get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
  random_pod() { pods_of "$1" | awk -F '\t' '$5 == "Running" {print $2}' | cut -d/ -f2 | shuf -n1; }
  on_node() { pods_of test=tc | awk -F '\t' -v n="$1" '$4 == n {print $2}' | cut -d/ -f2; }
  force_delete() { k delete pod "$@" --grace-period=0 --force >/dev/null 2>&1 || true; }
  for round in $(seq 1 "$rounds"); do
    for action in $(shuf -e force_web force_db kubelet_killed_during_creation agent_killed_during_creation kubelet_stopped_while_deleting node_deleted leader_killed); do
      node=node$((RANDOM % 2 + 1))
      case $action in
        force_web) victim=$(random_pod app=tc-web) ; [ -z "$victim" ] || force_delete "$victim" ;;
        force_db) victim=$(random_pod app=tc-db) ; [ -z "$victim" ] || force_delete "$victim" ;;
        kubelet_killed_during_creation)
          k scale deployment tc-web --replicas=8 >/dev/null
          sleep 1
          "$TESTENV_DIR/node.sh" "$dir" kill "$node"
          sleep 3
          "$TESTENV_DIR/node.sh" "$dir" start "$node"
          k scale deployment tc-web --replicas=6 >/dev/null ;;
        agent_killed_during_creation)
          # Both nodes' agents (SIGKILL, again and again for 5 s, so that the kubelet's
          # restart back-off keeps them down a while) as Pods start: calls in the middle are
          # cut off, and the plugin does them itself until the agents are back.
          k scale deployment tc-web --replicas=8 >/dev/null
          for _ in $(seq 1 25); do pkill -KILL -f -- '^/usr/local/bin/ipam-agent ' || true; sleep 0.2; done
          sleep 3
          k scale deployment tc-web --replicas=6 >/dev/null ;;
        kubelet_stopped_while_deleting)
          "$TESTENV_DIR/node.sh" "$dir" stop "$node"
          # shellcheck disable=SC2046
          k delete pod $(on_node "$node") --wait=false >/dev/null 2>&1 || true
          sleep 10
          "$TESTENV_DIR/node.sh" "$dir" start "$node" ;;
        node_deleted)
          "$TESTENV_DIR/node.sh" "$dir" stop "$node"
          k delete node "$node" >/dev/null
          # shellcheck disable=SC2046
          force_delete $(on_node "$node")
          "$TESTENV_DIR/node.sh" "$dir" start "$node" ;;
        leader_killed)
          victim=$(k -n ipam-rs get lease ipam-controller -o jsonpath='{.spec.holderIdentity}')
          [ -z "$victim" ] || k -n ipam-rs delete pod "$victim" --grace-period=0 --force >/dev/null 2>&1 || true ;;
      esac
      note "round $round: $action${node:+ ($node)}"
      no_twice || return 1
      watching poll "$node Ready" ready_node "$node" || return 1
    done
  done
  note "churn over: $checks checks of the Pod list, no address on two Pods"
  note "calls the plugin made itself while an agent was down: $(cat "$dir"/nodes/*/root/var/log/ipam-cni/ipam-cni.log 2>/dev/null | grep -c 'doing the call here' || true)"
  watching poll "9 Pods Running after the churn" settled || { pods_of test=tc >&2; return 1; }
  k -n ipam-rs rollout status daemonset/ipam-cni --timeout="${T}s" >/dev/null || { fail "ipam-cni not on every node"; return 1; }
  k -n ipam-rs rollout status deployment/ipam-controller --timeout="${T}s" >/dev/null || { fail "the controller's replicas are not back"; return 1; }
  # No leak: the pool holds exactly the running Pods' addresses, each for its Pod (the
  # controller releases what was leaked once the grace period has passed).
  exact() { pods_match_allocations test=tc tc-pool; }
  local t0; t0=$(date +%s)
  watching poll "tc-pool holds exactly the 9 running Pods' addresses" exact || { allocs tc-pool >&2; pods_of test=tc >&2; return 1; }
  no_twice || return 1
  note "settled $(($(date +%s) - t0)) s after the Pods ran again: 9 Pods, 9 allocations, leaked 0"
  k delete statefulset tc-db >/dev/null
  k delete deployment tc-web >/dev/null
  poll "tc-pool empty" pool_empty tc-pool || { allocs tc-pool >&2; return 1; }
  drop_pool tc-pool
}

# Network isolation: every process of the cluster is in its network namespace or in a Pod's,
# none in the host's; those namespaces have no route out; and no socket of theirs is
# connected to an address outside them (the namespaces' own addresses, and the Service range
# that kube-proxy maps onto them).
# kubectl cannot break a pool (issue 16, point 3): the controller's admission webhook refuses
# each bad object with a message naming the field and the value, admits a good one, deletes a
# pool holding addresses only when forced; with the webhook removed (the escape hatch), a
# bad pool written with kubectl does not stop another network's Pods.
test_webhook() {
  pool t9-pool 10.79.0.0/24 10.79.0.10-10.79.0.20
  pod t9-a t9-pool node1
  poll "t9-a Ready" pod_ready t9-a || return 1
  ippool() { # NAME SUBNET RANGE [EXTRA SPEC LINE]
    printf 'apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata:\n  name: %s\nspec:\n  subnet: %s\n  ips:\n  - %s\n%s' \
      "$1" "$2" "$3" "${4:+  $4
}"
  }
  # Each row: what, the manifest, the words the refusal must have.
  refused() { # WHAT MANIFEST WORD...
    local what=$1 manifest=$2 out w; shift 2
    if out=$(printf '%s' "$manifest" | k apply -f - 2>&1); then
      fail "$what: admitted ($out)"; return 1
    fi
    for w in "$@"; do
      [[ $out == *"$w"* ]] || { fail "$what: the refusal does not say '$w': $out"; return 1; }
    done
    note "$what: $(printf '%s' "$out" | tail -n1 | cut -c1-230)"
  }
  local denied='admission webhook "pools.ipam.rs" denied the request'
  refused "host bits in the subnet" "$(ippool t9-bad 10.79.1.5/24 10.79.1.10)" \
    "$denied" 'IPPool "t9-bad"' spec.subnet 10.79.1.5/24 10.79.1.0/24 || return 1
  refused "an address of the wrong syntax" "$(ippool t9-bad 10.79.1.0/24 010.79.1.10)" \
    "$denied" 'spec.ips[0]' 010.79.1.10 || return 1
  refused "a pool overlapping t9-pool" "$(ippool t9-over 10.79.0.0/24 10.79.0.15-10.79.0.30)" \
    "$denied" spec.ips 10.79.0.15-10.79.0.30 'ippool "t9-over" overlaps ippool "t9-pool" at 10.79.0.15-10.79.0.20' || return 1
  refused "a new subnet for t9-pool, which holds t9-a's address" "$(ippool t9-pool 10.78.0.0/24 10.78.0.10)" \
    "$denied" spec.subnet 10.78.0.0/24 'cannot change from 10.79.0.0/24 while the pool holds 1 address(es)' || return 1
  refused "a new family for t9-pool" "$(ippool t9-pool fd79::/120 fd79::10)" \
    "$denied" spec.subnet fd79::/120 'while the pool holds 1' || return 1
  # Our CRD's schema knows its fields: kubectl's validation names an unknown one before the
  # request is sent (and the API server prunes it without validation: the webhook never sees
  # it; Spiderpool's unimplemented fields are the unit tests' and the Spiderpool schema's).
  refused "an unknown field" "$(ippool t9-unk 10.79.1.0/24 10.79.1.10 'vlan: 5')" \
    'unknown field "vlan"' || return 1
  local out
  if out=$(k delete ippool t9-pool 2>&1); then fail "t9-pool, which holds an address, was deleted: $out"; return 1; fi
  for w in "$denied" 'IPPool "t9-pool"' 'holds 1 address(es)' 'metadata.annotations[ipam.rs/force-delete]'; do
    [[ $out == *"$w"* ]] || { fail "the refused delete does not say '$w': $out"; return 1; }
  done
  note "delete of t9-pool: $(printf '%s' "$out" | tail -n1 | cut -c1-230)"
  # Admitted: a pool beside the others, its deletion (empty), then the forced deletion of
  # t9-pool; t9-a keeps its address, which its DEL releases.
  out=$(ippool t9-good 10.79.2.0/24 10.79.2.10 | k apply -f - 2>&1) || { fail "a good pool refused: $out"; return 1; }
  k delete ippool t9-good >/dev/null || { fail "the empty t9-good not deleted"; return 1; }
  k annotate ippool t9-pool ipam.rs/force-delete=true >/dev/null
  out=$(k delete ippool t9-pool 2>&1) || { fail "the forced delete of t9-pool refused: $out"; return 1; }
  note "good pool created and deleted; t9-pool deleted once annotated ipam.rs/force-delete=true"
  # Every replica counts what it refused.
  local refusals=0 i m
  for i in $(seq 1 "$NODES"); do
    m=$(in_cluster curl -sf --max-time 5 "http://$(node_ip "node$i"):9472/metrics") || continue
    refusals=$((refusals + $(printf '%s\n' "$m" | awk '/^ipam_rs_webhook_refusals_total/ {s += $2} END {print s + 0}')))
  done
  [ "$refusals" -ge 6 ] || { fail "the replicas count $refusals refusals, expected 6 or more"; return 1; }
  note "ipam_rs_webhook_refusals_total over the replicas: $refusals"
  k delete pod t9-a --wait=false >/dev/null
  poll "t9-a's address released" pool_empty t9-pool || return 1

  # The webhook down: the operator removed its configuration. A bad pool goes in with
  # kubectl, and a Pod on another network's pool still starts.
  local saved
  saved=$(k get validatingwebhookconfiguration ipam-controller -o json)
  k delete validatingwebhookconfiguration ipam-controller >/dev/null
  # Admitted once the API server no longer calls it.
  broken_in() { ippool t9-broken 10.79.3.5/24 10.79.3.10 | k apply -f - >/dev/null 2>&1; }
  poll "the bad pool t9-broken admitted without the webhook" broken_in || return 1
  pool t9-other 10.79.4.0/24 10.79.4.10-10.79.4.20
  pod t9-b t9-other node2
  poll "t9-b (pool t9-other) Ready beside the bad pool" pod_ready t9-b || return 1
  note "webhook configuration removed: t9-broken admitted, t9-b Running with $(pod_ip t9-b)"
  ctl get ippool t9-broken >/dev/null 2>&1 && { fail "ipamctl reads the bad pool t9-broken as valid"; return 1; }
  k delete ippool t9-broken >/dev/null
  # Restored as it was (its caBundle too): bad pools are refused again.
  printf '%s' "$saved" | python3 -c '
import json, sys
o = json.load(sys.stdin)
for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
    o["metadata"].pop(k, None)
json.dump(o, sys.stdout)' | k create -f - >/dev/null
  refused_again() { ! ippool t9-bad 10.79.1.5/24 10.79.1.10 | k apply -f - >/dev/null 2>&1; }
  poll "a bad pool refused again once the configuration is back" refused_again || return 1
  k delete pod t9-b --wait=false >/dev/null
  poll "t9-other empty" pool_empty t9-other || return 1
  drop_pool t9-other
}

test_network_isolation() {
  "$here/isolation.sh" "$dir"
}

all=(pods_on_both_nodes calls_through_the_agent exhaustion kubelet_restart scale_20 daemonset_rolling_update leaks_reclaimed statefulset_keeps_addresses webhook chaos network_isolation)
selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=("${all[@]}")
for t in "${selected[@]}"; do
  declare -F "test_$t" >/dev/null || die "no test '$t' (tests: ${all[*]})"
done
for t in "${selected[@]}"; do
  echo "--- $t"
  t0=$(date +%s)
  # Not `if ( ... )`: bash ignores set -e inside a tested command.
  set +e
  ( set -e; "test_$t" )
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    echo "ok   $t ($(($(date +%s) - t0)) s)"
    passed=$((passed + 1))
  else
    echo "FAIL $t ($(($(date +%s) - t0)) s)"
    failed=$((failed + 1)) failures+=("$t")
  fi
done
[ $failed -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
