#!/usr/bin/env bash
# The seed document's walk-through (shared seed: reserved-ip, steps 1-5), on this project:
# no root, no cluster, the default redb store in a temporary data directory.
#
#   examples/walkthrough.sh
#
# Pods are played by calls of the real CNI plugin binary, exactly as a runtime (or macvlan,
# which hands its IPAM section to the IPAM plugin) calls it: environment CNI_COMMAND,
# CNI_CONTAINERID, ... and the network configuration on stdin. Objects are managed with
# ipamctl. Every step checks that what happens is what the seed document says happens, and
# the script exits non-zero (keeping the data directory) the moment something differs.
#
# It builds what it needs (cargo build --release -p ipam-cni -p ipamctl --bins). To use other
# builds, set IPAMCTL and IPAM_CNI to the two binaries.
#
#   examples/walkthrough.sh --kubernetes KUBECONFIG
#
# runs the same steps on a cluster's Kubernetes store instead (the CRDs of deploy/crds/ and
# the namespace of the allocation objects, IPAM_NAMESPACE or `ipam-rs`, must exist). The
# seed's objects keep their names, as in the seed document, and are deleted at the end.
#
#   examples/walkthrough.sh --cluster [--api spiderpool|ipam] [DIR]
#
# runs the seed's own kubectl commands on a real two-node cluster (testenv/start.sh
# --cluster), its Pods' addresses from ipam-cni as the kubelet asks: walkthrough-cluster.sh.

set -euo pipefail

# On a real cluster of kubelets and containerd: a script of its own.
if [[ "${1:-}" == "--cluster" ]]; then
    exec "$(dirname "${BASH_SOURCE[0]}")/walkthrough-cluster.sh" "$@"
fi

kubeconfig=""
if [[ "${1:-}" == "--kubernetes" ]]; then
    kubeconfig=${2:?"--kubernetes needs the path of a kubeconfig"}
    namespace=${IPAM_NAMESPACE:-ipam-rs}
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--kubernetes KUBECONFIG | --cluster [--api spiderpool|ipam] [DIR]]" >&2
    exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# Relative paths in what is printed, as a person would type them.
cd "$root"
seed=examples/seed

if [[ -z "${IPAMCTL:-}" || -z "${IPAM_CNI:-}" ]]; then
    echo "+ cargo build --release -p ipam-cni -p ipamctl --bins" >&2
    # Parallelism as the caller's environment says (CARGO_BUILD_JOBS), as for any cargo build.
    cargo build --release -p ipam-cni -p ipamctl --bins
    target=${CARGO_TARGET_DIR:-$root/target}
    IPAMCTL=$target/release/ipamctl
    IPAM_CNI=$target/release/ipam-cni
fi
for bin in "$IPAMCTL" "$IPAM_CNI"; do
    [[ -x "$bin" ]] || { echo "walkthrough: $bin is missing or not executable" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ipam-walkthrough.XXXXXX")
data=$work/store          # the store's data directory (created by the first command)
cni_log=$work/cni.stderr  # what the plugin says on stderr during one call
finish() {
    local status=$?
    if [[ $status -eq 0 ]]; then
        rm -rf "$work"
    elif [[ -n "$kubeconfig" ]]; then
        echo "walkthrough: FAILED (exit $status); removing the seed's objects from the cluster" >&2
        "$IPAMCTL" "${where[@]}" delete ippool test-ippool --force >/dev/null 2>&1 || true
        "$IPAMCTL" "${where[@]}" delete reservedip test-reservedip >/dev/null 2>&1 || true
    else
        echo "walkthrough: FAILED (exit $status); data directory kept: $data" >&2
    fi
}
trap finish EXIT

# The network the Pods attach to (the seed's macvlan network), its IPAM section naming the
# seed's pool, as the annotation ipam.spidernet.io/ippool: '{"ipv4": ["test-ippool"]}' does.
if [[ -z "$kubeconfig" ]]; then
    store='"dataDir":"'"$data"'"'
    where=(--data-dir "$data")
else
    store='"store":{"kubernetes":{"kubeconfig":"'"$kubeconfig"'","namespace":"'"$namespace"'","nodeName":"walkthrough-node"}}'
    where=(--kubeconfig "$kubeconfig" --namespace "$namespace")
fi
netconf='{"cniVersion":"1.0.0","name":"macvlan-net","type":"macvlan","master":"ens192",
"ipam":{"type":"ipam-cni",'"$store"',"ippools":{"ipv4":["test-ippool"]}}}'

step() { printf '\n=== %s\n' "$*"; }
fail() { echo "walkthrough: UNEXPECTED: $*" >&2; exit 1; }

# ipamctl on the walk-through's data directory, echoed like the seed's "~# kubectl ..." lines.
ctl() {
    echo "~# ipamctl $*"
    "$IPAMCTL" "${where[@]}" "$@"
}

# The pool's four counts, "TOTAL RESERVED ALLOCATED AVAILABLE", read from -o json.
counts() {
    local json
    json=$("$IPAMCTL" "${where[@]}" get ippool test-ippool -o json | tr -d ' \n')
    local out="" field
    for field in totalIPCount reservedIPCount allocatedIPCount availableIPCount; do
        out+="$(sed -n "s/.*\"$field\":\([0-9]*\).*/\1/p" <<<"$json") "
    done
    echo "${out% }"
}

expect_counts() {
    local got
    got=$(counts)
    [[ "$got" == "$1" ]] || fail "pool counts (total reserved allocated available) are '$got', expected '$1'"
    echo "   (checked: TOTAL RESERVED ALLOCATED AVAILABLE = $1)"
}

# Pod bookkeeping, for a "kubectl get po -owide"-like view.
declare -A pod_ip=() pod_ctr=()
pods=()

# cni COMMAND POD: one CNI call for the Pod's sandbox; sets $cni_out and $cni_status.
cni() {
    local command=$1 pod=$2
    local ctr=${pod_ctr[$pod]}
    echo "~# CNI_COMMAND=$command CNI_CONTAINERID=$ctr CNI_IFNAME=eth0 ipam-cni < netconf   # pod $pod"
    set +e
    cni_out=$(CNI_COMMAND=$command CNI_CONTAINERID=$ctr CNI_IFNAME=eth0 \
        CNI_NETNS=/var/run/netns/$ctr CNI_PATH=/opt/cni/bin \
        CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=$pod" \
        "$IPAM_CNI" <<<"$netconf" 2>"$cni_log")
    cni_status=$?
    set -e
    if [[ -n "$cni_out" ]]; then
        sed 's/^/   /' <<<"$cni_out"
    fi
    if [[ -s "$cni_log" ]]; then
        sed 's/^/   (stderr) /' "$cni_log"
    fi
    echo "   (exit status $cni_status)"
}

# The first address of a CNI result, without its prefix length.
result_address() {
    tr -d ' \n' <<<"$cni_out" | sed -n 's/.*"ips":\[{[^]]*"address":"\([^"/]*\)\/.*/\1/p'
}

# The code of a CNI error.
error_code() {
    tr -d ' \n' <<<"$cni_out" | sed -n 's/.*"code":\([0-9]*\).*/\1/p'
}

# add_ok POD [ADDRESS]: ADD must succeed (with ADDRESS when given); the Pod runs.
add_ok() {
    local pod=$1 want=${2:-}
    cni ADD "$pod"
    [[ $cni_status -eq 0 ]] || fail "ADD for $pod failed"
    local got
    got=$(result_address)
    [[ -n "$got" ]] || fail "ADD for $pod returned no address"
    [[ -z "$want" || "$got" == "$want" ]] || fail "ADD for $pod returned $got, expected $want"
    pod_ip[$pod]=$got
}

# add_used_up POD: ADD must fail with code 100 ("used up"); the Pod stays ContainerCreating.
add_used_up() {
    local pod=$1
    cni ADD "$pod"
    [[ $cni_status -ne 0 ]] || fail "ADD for $pod succeeded; the pool should be used up"
    [[ "$(error_code)" == 100 ]] || fail "ADD for $pod failed with code '$(error_code)', expected 100"
    grep -qi "used up" <<<"$cni_out" || fail "the error for $pod does not say 'used up'"
    pod_ip[$pod]=""
}

new_pod() {
    local pod=$1
    pods+=("$pod")
    pod_ctr[$pod]="ctr-${pod##*-}"
    pod_ip[$pod]=""
}

delete_pod() {
    local pod=$1
    echo "~# kubectl delete po $pod   # the runtime tears the sandbox down:"
    cni DEL "$pod"
    [[ $cni_status -eq 0 ]] || fail "DEL for $pod failed"
    echo "pod \"$pod\" deleted"
    local kept=() p
    for p in "${pods[@]}"; do [[ "$p" == "$pod" ]] || kept+=("$p"); done
    pods=("${kept[@]}")
}

show_pods() {
    echo "~# kubectl get po -owide   # as the walk-through's Pods stand"
    printf '%-27s%-20s%s\n' NAME STATUS IP
    local p
    for p in "${pods[@]}"; do
        if [[ -n "${pod_ip[$p]}" ]]; then
            printf '%-27s%-20s%s\n' "$p" Running "${pod_ip[$p]}"
        else
            printf '%-27s%-20s%s\n' "$p" ContainerCreating "<none>"
        fi
    done
}

step "1. Create a ReservedIP: spec.ips 10.6.168.131-10.6.168.132"
ctl apply -f "$seed/reservedip.yaml"
ctl get reservedips

step "2. Create an IPPool: spec.ips 10.6.168.131-10.6.168.133 (3 addresses, 2 reserved: 1 available)"
ctl apply -f "$seed/ippool.yaml"
ctl get ippools
expect_counts "3 2 0 1"

step "3. A Deployment of 2 replicas using test-ippool: one Pod runs, the other finds the pool used up"
new_pod test-app-67dd9f645-dv8xz
new_pod test-app-67dd9f645-lpjgs
add_ok test-app-67dd9f645-dv8xz 10.6.168.133
add_used_up test-app-67dd9f645-lpjgs
show_pods
ctl get allocations
expect_counts "3 2 1 0"

step "4. Reserve the address a running Pod holds: it keeps it; once it is recreated, no address"
echo "# kubectl patch spiderreservedip test-reservedip --type=merge --patch '{\"spec\":{\"ips\":[\"10.6.168.131-10.6.168.133\"]}}'"
ctl apply -f examples/reservedip-widened.yaml
ctl get ippools
expect_counts "3 3 1 0"
ctl explain 10.6.168.133
echo "# The running Pod keeps its address: a repeated ADD by the same owner returns it."
add_ok test-app-67dd9f645-dv8xz 10.6.168.133
expect_counts "3 3 1 0"
delete_pod test-app-67dd9f645-dv8xz
expect_counts "3 3 0 0"
echo "# Released, the reserved address cannot be had again, not even by the same sandbox:"
add_used_up test-app-67dd9f645-dv8xz
new_pod test-app-67dd9f645-fvx4m
add_used_up test-app-67dd9f645-fvx4m
echo "# The other replica's sandbox is retried, in vain:"
add_used_up test-app-67dd9f645-lpjgs
show_pods

step "5. Delete the ReservedIP: its addresses are allocatable again at once, and both Pods run"
ctl delete reservedip test-reservedip
ctl get ippools
expect_counts "3 0 0 3"
add_ok test-app-67dd9f645-fvx4m
add_ok test-app-67dd9f645-lpjgs
[[ "${pod_ip[test-app-67dd9f645-fvx4m]}" != "${pod_ip[test-app-67dd9f645-lpjgs]}" ]] ||
    fail "both Pods got ${pod_ip[test-app-67dd9f645-lpjgs]}"
show_pods
ctl get allocations
expect_counts "3 0 2 1"

if [[ -n "$kubeconfig" ]]; then
    step "The cluster's objects go again: the Pods are deleted, then the pool"
    delete_pod test-app-67dd9f645-fvx4m
    delete_pod test-app-67dd9f645-lpjgs
    ctl delete ippool test-ippool
fi

echo
echo "walkthrough: OK: every step behaved as the seed document says."
