#!/usr/bin/env bash
# The seed document's walk-through on a real two-node cluster, its commands as written:
#
#   examples/walkthrough.sh --cluster [--api spiderpool|ipam] [DIR]
#
# Without DIR it starts a cluster (testenv/start.sh --cluster --nodes 2 --api API) in a
# temporary directory and stops it at the end; with DIR it uses the running cluster of DIR,
# which must serve that API. Needs root (the cluster does).
#
# --api spiderpool (the default): the seed's own commands, verbatim: kubectl apply of its
#   SpiderReservedIP and SpiderIPPool, kubectl create of its Deployment (nginx, 2 replicas,
#   ipam.spidernet.io/ippool), kubectl patch spiderreservedip, kubectl delete po, kubectl
#   delete sr; on a cluster with deploy/spiderpool-compat/ installed.
# --api ipam: the same steps on the project's own API (deploy/crds/): the manifests'
#   apiVersion and kind are ipam.rs/v1alpha1 IPPool and ReservedIP, and the patch and delete
#   name `reservedip`. Everything else is the same, the checks too.
#
# Each state the seed shows is checked, and `kubectl get po -owide` printed as the seed does:
# one Pod Running with 10.6.168.133, the other ContainerCreating, its events saying the pool
# is used up (with its counts); after the patch and the running Pod's deletion, both
# ContainerCreating; after the ReservedIP's deletion both Running, with two different
# addresses of the pool (the seed's were 10.6.168.133 and 10.6.168.131, Spiderpool's pick;
# ipam-cni's per-node cursors pick their own pair, see step 5). Waits poll with generous deadlines (WALKTHROUGH_TIMEOUT, default 600 s each):
# the kubelet retries a failed sandbox with a back-off, and a Pod's deletion takes tens of
# seconds on 1.20.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
api=spiderpool dir=
while [ $# -gt 0 ]; do
  case $1 in
    --cluster) ;;
    --api)
      api=${2:?--api needs spiderpool or ipam}; shift
      case $api in spiderpool|ipam) ;; *) echo "walkthrough: --api: '$api' is not one of spiderpool, ipam" >&2; exit 2 ;; esac ;;
    -*) echo "usage: $0 --cluster [--api spiderpool|ipam] [DIR]" >&2; exit 2 ;;
    *) dir=$1 ;;
  esac
  shift
done
timeout=${WALKTHROUGH_TIMEOUT:-600}

own=false
if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/ipam-walkthrough-cluster.XXXXXX")
  own=true
  echo "+ testenv/start.sh --cluster --nodes 2 --api $api $dir" >&2
  testenv/start.sh --cluster --nodes 2 --api "$api" "$dir" >/dev/null
fi
dir=$(readlink -f "$dir")
grep -qx "API=$api" "$dir/cluster.env" 2>/dev/null \
  || { echo "walkthrough: $dir is not a running cluster with --api $api" >&2; exit 1; }
finish() {
  local rc=$?
  if $own; then
    testenv/stop.sh "$dir" >/dev/null 2>&1 || true
    if [ $rc -eq 0 ]; then rm -rf "$dir"; else echo "walkthrough: FAILED (exit $rc); logs kept in $dir" >&2; fi
  elif [ $rc -ne 0 ]; then
    echo "walkthrough: FAILED (exit $rc); the seed's objects are left in the cluster of $dir for a look" >&2
  fi
}
trap finish EXIT

# kubectl, inside the cluster's network namespace, echoed as the seed writes its commands.
kubectl() { testenv/exec.sh "$dir" kubectl "$@"; }
run() { echo "~# $*"; "$@"; }
fail() { echo "walkthrough: UNEXPECTED: $*" >&2; kubectl get po -owide >&2 || true; exit 1; }
step() { printf '\n=== %s\n' "$*"; }
# Polls a check function until it holds, for at most $timeout seconds.
wait_for() { # WHAT CHECK...
  local what=$1 deadline=$(($(date +%s) + timeout)); shift
  until "$@" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within $timeout s"
    sleep 2
  done
}

if [ "$api" = spiderpool ]; then
  apiversion=spiderpool.spidernet.io/v2beta1 rip_kind=SpiderReservedIP pool_kind=SpiderIPPool
  rip_resource=spiderreservedip rip_short=sr pool_resource=spiderippool
else
  apiversion=ipam.rs/v1alpha1 rip_kind=ReservedIP pool_kind=IPPool
  rip_resource=reservedip rip_short=reservedip pool_resource=ippool
fi

# The Deployment's Pods, "NAME PHASE IP NODE WAITING-REASON" per line, separated by tabs: a
# Pod without an address yet has an empty IP field, which blanks would let awk skip.
pods() {
  kubectl get po -l app=test-app -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\t"}{.status.podIP}{"\t"}{.spec.nodeName}{"\t"}{.status.containerStatuses[0].state.waiting.reason}{"\n"}{end}' 2>/dev/null
}
field() { awk -F '\t' "$@"; }
count() { pods | wc -l; }
running_with() { pods | field -v ip="$1" '$2 == "Running" && $3 == ip' | grep -q .; }
creating() { pods | field '$5 == "ContainerCreating" {print $1}'; }
# The FailedCreatePodSandBox messages of POD that say the pool is used up.
used_up_events() { # POD
  kubectl get events --field-selector "involvedObject.name=$1,reason=FailedCreatePodSandBox" \
    -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' | grep -i 'used up'
}

step "1. Create a ReservedIP: spec.ips 10.6.168.131-10.6.168.132"
echo "~# cat <<EOF | kubectl apply -f -"
kubectl apply -f - <<EOF
apiVersion: $apiversion
kind: $rip_kind
metadata:
  name: test-reservedip
spec:
  ips:
  - 10.6.168.131-10.6.168.132
EOF

step "2. Create an IPPool: 10.6.168.131-10.6.168.133, two of them reserved"
echo "~# cat <<EOF | kubectl apply -f -"
kubectl apply -f - <<EOF
apiVersion: $apiversion
kind: $pool_kind
metadata:
  name: test-ippool
spec:
  subnet: 10.6.0.0/16
  ips:
  - 10.6.168.131-10.6.168.133
EOF

step "3. A Deployment of 2 replicas from test-ippool: one Pod runs with 10.6.168.133, the other finds the pool used up"
echo "~# cat <<EOF | kubectl create -f -"
kubectl create -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: test-app
spec:
  replicas: 2
  selector:
    matchLabels:
      app: test-app
  template:
    metadata:
      annotations:
        ipam.spidernet.io/ippool: |-
            {      
              "ipv4": ["test-ippool"]
            }
        v1.multus-cni.io/default-network: kube-system/macvlan-ens192
      labels:
        app: test-app
    spec:
      containers:
      - name: test-app
        image: nginx
        imagePullPolicy: IfNotPresent
        ports:
        - name: http
          containerPort: 80
          protocol: TCP
EOF
wait_for "a Pod Running with 10.6.168.133" running_with 10.6.168.133
first=$(pods | field '$2 == "Running" {print $1}')
waiting_used_up() { local p; p=$(creating); [ -n "$p" ] && used_up_events "$p" >/dev/null; }
wait_for "the other Pod ContainerCreating, its events saying the pool is used up" waiting_used_up
second=$(creating)
run kubectl get po -owide
echo "~# kubectl describe po $second | grep FailedCreatePodSandBox   # (its latest event)"
used_up_events "$second" | tail -n1
[ "$(pods | field '{print $4}' | sort -u | wc -l)" -eq 2 ] && echo "(checked: the two Pods are on different nodes)" \
  || echo "(the two Pods are on the same node: the scheduler's choice; the seed's ran on node1 and node2)"
used_up_events "$second" | grep -q test-ippool || fail "the event does not name test-ippool"
echo "(checked: $first Running with 10.6.168.133; $second ContainerCreating: test-ippool used up)"

step "4. Reserve the address the running Pod holds; delete that Pod: its replacement finds no address either"
run kubectl patch "$rip_resource" test-reservedip --patch '{"spec":{"ips":["10.6.168.131-10.6.168.133"]}}' --type=merge
run kubectl delete po "$first"
both_creating() {
  [ "$(count)" -eq 2 ] && [ "$(creating | wc -l)" -eq 2 ] && ! pods | field -v p="$first" '$1 == p' | grep -q .
}
wait_for "both Pods ContainerCreating" both_creating
third=$(creating | grep -vx "$second")
wait_for "$third's events saying the pool is used up" used_up_events "$third"
run kubectl get po -owide
echo "(checked: $third (the replacement) and $second both ContainerCreating: test-ippool used up)"

step "5. Delete the ReservedIP: both Pods get an address and run"
run kubectl delete "$rip_short" test-reservedip
both_running() {
  [ "$(count)" -eq 2 ] && [ "$(pods | field '$2 == "Running" && $3 != ""' | wc -l)" -eq 2 ]
}
wait_for "both Pods Running" both_running
run kubectl get po -owide
ips=$(pods | field '{print $3}' | sort | paste -sd' ')
# The seed's two Pods got 10.6.168.133 and 10.6.168.131: Spiderpool's pick among the three
# free addresses. ipam-cni picks by each node's round-robin cursor (docs/kubernetes.md,
# IPAMCursor), so the pair may differ; what the seed shows, and what is checked, is that both
# run, with two different addresses of the pool, once nothing reserves them.
case $ips in
  "10.6.168.131 10.6.168.132" | "10.6.168.131 10.6.168.133" | "10.6.168.132 10.6.168.133") ;;
  *) fail "the Pods have $ips: not two different addresses of 10.6.168.131-10.6.168.133" ;;
esac
echo "(checked: both Running, with ${ips/ / and } of the pool; the seed's run of Spiderpool got 10.6.168.133 and 10.6.168.131)"

step "The cluster's objects go again"
run kubectl delete deployment test-app
gone() { [ "$(count)" -eq 0 ]; }
wait_for "the Deployment's Pods gone" gone
if [ "$api" = ipam ]; then
  released() { ! testenv/exec.sh "$dir" ipamctl get allocations | grep -q '10\.6\.168\.'; }
  wait_for "the Pods' addresses released" released
  echo "(checked: ipamctl get allocations shows none of test-ippool's addresses)"
fi
run kubectl delete "$pool_resource" test-ippool
echo
echo "walkthrough: OK: the seed's walk-through on two real nodes, each state the seed shows checked."
