#!/usr/bin/env bash
# `testenv/start.sh --cluster [--nodes N] [--api ipam|spiderpool] DIR`: a whole Kubernetes
# v1.20.2 cluster on this machine, offline, every process of it inside a network namespace of
# its own. testenv/README.md ("The cluster") says what runs where and why each flag.
#
#   etcd + kube-apiserver   start.sh's own (bare mode), in the namespace, with the flags a
#                           cluster needs on top (IPAM_TESTENV_APISERVER_ARGS)
#   controller-manager, scheduler
#   node1..nodeN            each: containerd, kubelet and kube-proxy, in a mount namespace
#                           of its own where /etc/cni/net.d, /opt/cni/bin, /var/lib/kubelet ...
#                           are that node's directories
#   the project             deploy/crds/ (or deploy/spiderpool-compat/ with --api spiderpool),
#                           deploy/rbac.yaml, deploy/daemonset.yaml and deploy/controller.yaml
#                           with the image built here (the controller's grace 1m, not 3m)
#
# Returns once every node is Ready and the DaemonSet has put ipam-cni and its kubeconfig on
# every node; prints DIR/kubeconfig (the admin's) as its last line. A failed start stops what
# it started (logs stay in DIR).
#
# Environment: IPAM_CNI, IPAMCTL, IPAM_CONTROLLER, IPAM_AGENT (the project's binaries; default: built with cargo into
# CARGO_TARGET_DIR or target/), IPAM_TESTENV_READY_TIMEOUT (seconds per wait, default 300).
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"
. "$TESTENV_DIR/cluster-lib.sh"
project=$(dirname "$TESTENV_DIR")

nodes=2 api=ipam
while [ $# -gt 0 ]; do
  case $1 in
    --cluster) ;;
    --nodes)
      [ $# -ge 2 ] || die "--nodes needs a number"
      nodes=$2; shift
      [[ $nodes =~ ^[1-9][0-9]?$ ]] && [ "$nodes" -le 50 ] || die "--nodes: '$nodes' is not a number of nodes from 1 to 50"
      ;;
    --api)
      [ $# -ge 2 ] || die "--api needs ipam or spiderpool"
      api=$2; shift
      case $api in ipam|spiderpool) ;; *) die "--api: '$api' is not one of ipam, spiderpool" ;; esac
      ;;
    -*) die "unknown option $1 (start.sh --cluster [--nodes N] [--api ipam|spiderpool] DIR)" ;;
    *) break ;;
  esac
  shift
done
[ $# -eq 1 ] || die "usage: start.sh --cluster [--nodes N] [--api ipam|spiderpool] DIR"
[ "$(id -u)" = 0 ] || die "the cluster needs root (network and mount namespaces, cgroups, containerd)"
dir=$(instance_dir "$1" create)
[ ! -f "$dir/cluster.env" ] || die "$dir already holds a cluster: stop.sh $dir first"
timeout=${IPAM_TESTENV_READY_TIMEOUT:-300}
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0)) s"; }

# The API's manifests: ours, or the Spiderpool-compatible ones (issue 15, point 5).
case $api in
  ipam) crds=$project/deploy/crds ;;
  spiderpool)
    crds=$project/deploy/spiderpool-compat
    [ -d "$crds" ] || die "--api spiderpool: $crds does not exist in this checkout (the Spiderpool-compatible API is not installed here)"
    ;;
esac

# 0. Prerequisites: Debian's packages (installed if missing) and the built binaries.
need_commands containerd:containerd runc:runc iptables:iptables conntrack:conntrack \
  etcd:etcd-server curl:curl openssl:openssl gcc:gcc python3:python3 nsenter:util-linux \
  ip:iproute2 ss:iproute2
[ -x /bin/busybox ] && /bin/busybox --list | grep -qx httpd || apt_install busybox-static
[ -x /usr/lib/cni/macvlan ] || apt_install containernetworking-plugins
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || apt_install libc6-dev
kube=$("$TESTENV_DIR/build-node.sh" | tail -n1)
for b in kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy; do
  [ -x "$kube/$b" ] || die "no $kube/$b after build-node.sh"
done
if [ -z "${IPAM_CNI:-}" ] || [ -z "${IPAMCTL:-}" ] || [ -z "${IPAM_CONTROLLER:-}" ] || [ -z "${IPAM_AGENT:-}" ]; then
  say "building the project's binaries (cargo build --release -p ipam-cni -p ipamctl -p ipam-controller -p ipam-agent --bins)"
  (cd "$project" && cargo build --release -q -p ipam-cni -p ipamctl -p ipam-controller -p ipam-agent --bins)
  IPAM_CNI=${CARGO_TARGET_DIR:-$project/target}/release/ipam-cni
  IPAMCTL=${CARGO_TARGET_DIR:-$project/target}/release/ipamctl
  IPAM_CONTROLLER=${CARGO_TARGET_DIR:-$project/target}/release/ipam-controller
  IPAM_AGENT=${CARGO_TARGET_DIR:-$project/target}/release/ipam-agent
fi
[ -x "$IPAM_CNI" ] || die "IPAM_CNI: no executable at $IPAM_CNI"
[ -x "$IPAMCTL" ] || die "IPAMCTL: no executable at $IPAMCTL"
[ -x "$IPAM_CONTROLLER" ] || die "IPAM_CONTROLLER: no executable at $IPAM_CONTROLLER"
[ -x "$IPAM_AGENT" ] || die "IPAM_AGENT: no executable at $IPAM_AGENT"
IPAM_CNI=$(readlink -f "$IPAM_CNI") IPAMCTL=$(readlink -f "$IPAMCTL")
IPAM_CONTROLLER=$(readlink -f "$IPAM_CONTROLLER") IPAM_AGENT=$(readlink -f "$IPAM_AGENT")
# A kubectl that matches the server (Debian's 1.20; fetched once).
"$TESTENV_DIR/kubectl.sh" version --client >/dev/null 2>&1 || die "kubectl.sh: no working kubectl"
say "binaries ready ($(elapsed))"

# From here on, a failure removes what was made.
on_exit() {
  local rc=$?
  [ $rc -eq 0 ] && return
  say "start failed (exit $rc); stopping what was started (logs stay in $dir/logs)"
  "$TESTENV_DIR/stop.sh" "$dir" >&2 || true
}
trap on_exit EXIT

# 1. The network namespace: lo, and one link with the API server's and the nodes' IPs (a
#    bridge without ports: these kernels may lack the dummy link type; a bridge is always there).
#    The only routes are those of its own subnets and of the Service range (kube-proxy turns
#    10.96.0.1 into the API server's address); nothing leads out of the namespace.
NETNS=ipamrs-$(printf %s "$dir" | sha256sum | cut -c1-8)
ID=${NETNS#ipamrs-}
mkdir -p "$dir/logs" "$dir/nodes" "$dir/ns"
cat >"$dir/cluster.env" <<EOF
NETNS=$NETNS
ID=$ID
NODES=$nodes
API=$api
KUBE_BIN=$kube
IPAM_CNI=$IPAM_CNI
IPAMCTL=$IPAMCTL
IPAM_CONTROLLER=$IPAM_CONTROLLER
IPAM_AGENT=$IPAM_AGENT
EOF
load_cluster "$dir"
[ ! -e "/run/netns/$NETNS" ] || die "network namespace $NETNS exists already (a cluster of $dir left behind?): stop.sh $dir"
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up
ip -n "$NETNS" link add "$CLUSTER_LINK" type bridge
ip -n "$NETNS" addr add "$APISERVER_IP/24" dev "$CLUSTER_LINK"
for i in $(seq 1 "$nodes"); do
  ip -n "$NETNS" addr add "$(node_ip "node$i")/24" dev "$CLUSTER_LINK"
  # The master of node i's Pod interfaces (macvlan, as the seed's network): a bridge without
  # ports, so the Pods' frames go nowhere (and the node, as with macvlan on any host, cannot
  # reach its own Pods: nothing here probes them over the network).
  ip -n "$NETNS" link add "pods$i" type bridge
  ip -n "$NETNS" link set "pods$i" up
done
ip -n "$NETNS" link set "$CLUSTER_LINK" up
ip -n "$NETNS" route add "$SERVICE_CIDR" dev "$CLUSTER_LINK"
say "network namespace $NETNS: $(ip -n "$NETNS" -br addr | awk '{printf "%s %s; ", $1, $3}')"

# 2. Certificates: a client CA of our own that the API server trusts (--client-ca-file),
#    and one identity per component, as kubeadm makes them:
#      nodeN                CN=system:node:nodeN, O=system:nodes (Node authorizer, NodeRestriction)
#      kube-proxy           CN=system:kube-proxy  (bound to system:node-proxier by default)
#      scheduler            CN=system:kube-scheduler
#      controller-manager   CN=system:kube-controller-manager
#      apiserver-kubelet    CN=kube-apiserver-kubelet-client, O=system:masters (logs, exec)
pki=$dir/pki
mkdir -p "$pki"
( cd "$pki"; umask 077
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=ipam-testenv-client-ca \
    -keyout ca.key -out ca.crt 2>/dev/null
  cert() { # NAME SUBJECT
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  }
  for i in $(seq 1 "$nodes"); do cert "node$i" "/O=system:nodes/CN=system:node:node$i"; done
  cert kube-proxy /CN=system:kube-proxy
  cert scheduler /CN=system:kube-scheduler
  cert controller-manager /CN=system:kube-controller-manager
  cert apiserver-kubelet /O=system:masters/CN=kube-apiserver-kubelet-client )

# 3. etcd and the API server: start.sh's bare mode, run inside the namespace, with
#    - our client CA, the Node authorizer (appended to start.sh's RBAC: RBAC,Node) and the
#      NodeRestriction admission plugin;
#    - all addresses of the namespace, advertising 10.250.0.1 with the endpoint reconciler on,
#      so the `kubernetes` Service has an endpoint kube-proxy can send 10.96.0.1:443 to;
#    - a client certificate for calls to kubelets, which it dials at their InternalIP only
#      (never a name to resolve);
#    - privileged containers allowed (the DaemonSet mounts host paths; nothing here is);
#    - admission webhooks (the controller's) dialled at their Service's endpoint addresses,
#      not its cluster IP (--enable-aggregator-routing): the API server shares the namespace
#      with the nodes, so it reaches their addresses (the controller runs on the host
#      network) without depending on kube-proxy's rules being written yet.
#    The serving certificate also names 10.250.0.1 and 10.96.0.1 (IPAM_TESTENV_APISERVER_SANS).
apiserver_args="--client-ca-file=$pki/ca.crt --authorization-mode=Node \
--enable-admission-plugins=NodeRestriction --bind-address=0.0.0.0 --advertise-address=$APISERVER_IP \
--endpoint-reconciler-type=lease --kubelet-client-certificate=$pki/apiserver-kubelet.crt \
--kubelet-client-key=$pki/apiserver-kubelet.key --kubelet-preferred-address-types=InternalIP \
--allow-privileged=true --enable-aggregator-routing=true"
IPAM_TESTENV_APISERVER=$kube/kube-apiserver IPAM_TESTENV_APISERVER_ARGS=$apiserver_args \
  IPAM_TESTENV_APISERVER_SANS="IP:$APISERVER_IP,IP:$KUBERNETES_SERVICE_IP" \
  IPAM_TESTENV_READY_TIMEOUT=$timeout \
  in_cluster "$TESTENV_DIR/start.sh" "$dir" >"$dir/logs/start-apiserver.out" 2>&1 \
  || { cat "$dir/logs/start-apiserver.out" >&2; die "the API server did not start"; }
# shellcheck source=/dev/null
. "$dir/env"
server=https://$APISERVER_IP:$APISERVER_PORT
say "API server ready at $server ($(elapsed))"

# Kubeconfigs with our client certificates; the server is verified against start.sh's CA.
mkkubeconfig() { # FILE CERT USER
  ( umask 077
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: $server
    certificate-authority: $dir/ca.crt
users:
- name: $3
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: testenv
  context: {cluster: testenv, user: $3}
current-context: testenv
EOF
  )
}
mkdir -p "$dir/etc"
mkkubeconfig "$dir/etc/scheduler.kubeconfig" scheduler system:kube-scheduler
mkkubeconfig "$dir/etc/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
mkkubeconfig "$dir/etc/kube-proxy.kubeconfig" kube-proxy system:kube-proxy

# 4. The controller-manager (tokens, Deployments, ReplicaSets, DaemonSets, node lifecycle,
#    garbage collection ...), each controller under its own ServiceAccount
#    (--use-service-account-credentials, as kubeadm runs it); without the controllers that
#    need a cloud or Pod CIDRs (nodeipam, route, service, cloud-node-lifecycle). Its secure
#    port is off: nothing scrapes it.
launch - "$dir/controller-manager.pid" "$dir/logs/controller-manager.log" "$kube/kube-controller-manager" \
  --kubeconfig="$dir/etc/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$dir/etc/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$dir/etc/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=0 --port=0 \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$dir/sa.key" --root-ca-file="$dir/ca.crt" \
  --leader-elect=false --controllers='*,-nodeipam,-cloud-node-lifecycle,-route,-service' \
  --v=1
launch - "$dir/scheduler.pid" "$dir/logs/scheduler.log" "$kube/kube-scheduler" \
  --kubeconfig="$dir/etc/scheduler.kubeconfig" \
  --authentication-kubeconfig="$dir/etc/scheduler.kubeconfig" \
  --authorization-kubeconfig="$dir/etc/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=0 --port=0 --leader-elect=false \
  --v=1
say "controller-manager and scheduler started"

# 5. The images, built here from local files only, and the project's manifests' image name.
"$TESTENV_DIR/images/build.sh" "$dir/images" "$IPAM_CNI" "$IPAMCTL" "$IPAM_CONTROLLER" "$IPAM_AGENT" >"$dir/logs/images.out" 2>&1 \
  || { cat "$dir/logs/images.out" >&2; die "building the images failed"; }
image=$(cat "$dir/images/ipam-cni.ref")
say "images built ($image) ($(elapsed))"

# The nodes' shared files: a resolv.conf pointing at each Pod's own loopback (no DNS query
# can leave), and an empty one for the kubelet to read.
printf 'nameserver 127.0.0.1\noptions ndots:1\n' >"$dir/etc/resolv.conf"

# 6. The nodes.
start_node() { # NAME
  local node=$1 ndir ip i=${1#node}
  ndir=$(node_dir "$node") ip=$(node_ip "$node")
  mkdir -p "$ndir/root" "$ndir/logs"
  # The node's mount namespace, kept by a bind mount on DIR/ns/NODE (DIR/ns is made a private
  # mount first: a namespace file cannot be bound into a shared mount). Its mounts go when
  # the last process of the node exits and stop.sh unmounts the file.
  if ! mountpoint -q "$dir/ns"; then mount --bind "$dir/ns" "$dir/ns"; mount --make-private "$dir/ns"; fi
  touch "$(node_mntns "$node")"
  unshare --mount="$(node_mntns "$node")" --propagation private true
  local p
  for p in "${NODE_PATHS[@]}"; do
    mkdir -p "$ndir/root$p"
    # A mount point on the host where there is none (recorded, for stop.sh to remove).
    local d=$p
    while [ ! -d "$d" ]; do echo "$d" >>"$dir/host-dirs"; d=$(dirname "$d"); done
    mkdir -p "$p"
    nsenter --mount="$(node_mntns "$node")" mount --bind "$ndir/root$p" "$p"
  done
  # The node's cgroup parent in every hierarchy (kubelet's cgroupRoot), so that one node's
  # kubelet never sees, limits or removes another's Pods.
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h" ] && mkdir -p "$h$NETNS-$node"
  done

  # containerd: CRI, cgroupfs, local images only, state at the usual paths of the node.
  cat >"$ndir/containerd.toml" <<EOF
# containerd 1.6 (Debian 12) for $node of the testenv cluster $dir.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  # Built and imported by start.sh: nothing is ever pulled.
  sandbox_image = "localhost/ipam-rs/pause:1.0"
  stream_server_address = "$ip"
  stream_server_port = "0"
  enable_selinux = false
  # The Pods' network namespaces under the node's state directory, not the host's /run/netns.
  netns_mounts_under_state_dir = true
  # No CAP_SYS_RESOURCE on these machines: an oom_score_adj below containerd's own is refused.
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
EOF
  launch "$node" "$ndir/containerd.pid" "$ndir/logs/containerd.log" containerd --config "$ndir/containerd.toml"
  wait_until "$timeout" "$node: containerd's socket" in_node "$node" ctr version
  local img
  for img in pause busybox nginx ipam-cni; do
    in_node "$node" ctr -n k8s.io images import "$dir/images/$img.tar" >>"$ndir/logs/images.out" 2>&1 \
      || { tail -n 5 "$ndir/logs/images.out" >&2; die "$node: importing $img.tar failed"; }
  done

  # CNI: the base plugins a node's OS ships (Debian's), and the network configuration: the
  # seed's macvlan network, its IPAM ipam-cni on the Kubernetes store with the kubeconfig the
  # DaemonSet writes. ipam-cni itself comes from the DaemonSet.
  for p in macvlan loopback host-local bridge; do
    install -m 0755 "/usr/lib/cni/$p" "$ndir/root/opt/cni/bin/$p"
  done
  local store='"kubeconfig": "/etc/cni/net.d/ipam-cni.kubeconfig", "nodeName": "'"$node"'"'
  # Item 5's option of the Kubernetes store that selects Spiderpool's API (its final name is
  # the Spiderpool-compatible store's; this is where it goes).
  [ "$API" = spiderpool ] && store+=', "api": "spiderpool"'
  cat >"$ndir/root/etc/cni/net.d/10-macvlan.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "macvlan-net",
  "plugins": [
    {
      "type": "macvlan",
      "master": "pods$i",
      "mode": "bridge",
      "ipam": {
        "type": "ipam-cni",
        "ippools": { "ipv4": ["default-pool"] },
        "store": { "kubernetes": { $store } },
        "log": { "level": "info", "file": "/var/log/ipam-cni/ipam-cni.log" }
      }
    }
  ]
}
EOF

  # The kubelet: cgroupfs under the node's own cgroup root, its server and health port on
  # the node's IP, clients checked against our CA (x509) and the API server (webhook).
  cat >"$ndir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /$NETNS-$node
failSwapOn: false
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: $ip
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
# No cluster DNS: Pods get a resolv.conf naming their own loopback.
resolvConf: $dir/etc/resolv.conf
clusterDomain: cluster.local
# Images are imported, never pulled, and never collected. No eviction for disk space: the
# kubelet counts the space left to non-root users, and a CI disk whose blocks are mostly
# reserved for root reads as full (below 1 %) while root, which runs everything here, has
# plenty; the node's disk-pressure taint then kept every Pod without that toleration
# unscheduled. "0%" disables a signal.
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
maxPods: 110
nodeStatusUpdateFrequency: 10s
EOF
  mkkubeconfig "$ndir/kubelet.kubeconfig" "$node" "system:node:$node"
  start_kubelet "$node"

  # kube-proxy, iptables mode: the nodes share the namespace's tables, and write the same
  # rules for ClusterIP Services; every listener on the node's IP. Conntrack limits are left
  # as they are (the kernel's, not the namespace's, to change).
  cat >"$ndir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/etc/kube-proxy.kubeconfig}
hostnameOverride: $node
bindAddress: $ip
healthzBindAddress: $ip:10256
metricsBindAddress: $ip:10249
mode: iptables
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  launch "$node" "$ndir/kube-proxy.pid" "$ndir/logs/kube-proxy.log" "$kube/kube-proxy" \
    --config="$ndir/kube-proxy.yaml" --v=1
}
for i in $(seq 1 "$nodes"); do start_node "node$i"; done
say "$nodes nodes started ($(elapsed))"

# 7. The project, from deploy/ as a user installs it (docs/kubernetes.md), with the image built
#    here: CRDs, RBAC, the DaemonSet.
k() { kubectl_admin "$@"; }
k apply -f "$crds/" >"$dir/logs/install.out"
k wait --for=condition=Established --timeout="${timeout}s" crd --all >>"$dir/logs/install.out"
# The manifests as a user edits them before applying: the image built here, and the
# controller's flags and environment for this cluster. Applied once, so the Deployment's
# first revision is its last (a `set image` and a patch after it made three ReplicaSets,
# whose replicas, one per node and without surge, had to wait for each other).
# The cluster's tests wait for leaks to be released: the shortest grace the controller takes.
controller_args='--leak-grace=1m --interval=5s'
agent_api=
if [ "$API" = spiderpool ]; then controller_args+=' --api=spiderpool' agent_api=--api=spiderpool; fi
# One replica per node (deploy/controller.yaml): a one-node cluster runs one.
replicas=$(( nodes >= 2 ? 2 : 1 ))
mkdir -p "$dir/deploy"
python3 - "$project/deploy" "$dir/deploy" "$image" "$controller_args" "$replicas" "$agent_api" <<'PY'
import re, sys
src, out, image, args, replicas, agent_api = sys.argv[1:]
placeholder = "registry.example.invalid/ipam-rs/ipam-cni:0.1.0"
def render(name, edits):
    text = open(f"{src}/{name}").read()
    assert placeholder in text, f"deploy/{name}: no image {placeholder}"
    text = text.replace(placeholder, image)
    for pattern, replacement in edits:
        text, n = re.subn(pattern, replacement, text, count=1, flags=re.M)
        assert n == 1, f"deploy/{name}: no line {pattern!r}"
    open(f"{out}/{name}", "w").write(text)
# Both are Kubernetes clients that run for the cluster's life: AWS_EC2_METADATA_DISABLED as
# every daemon of the cluster has it (isolation.sh checks).
aws = r'\1env:\n\1  - {name: AWS_EC2_METADATA_DISABLED, value: "true"}'
agent = [(r'^(          )env:\n(            - name: NODE_NAME)$', aws + r'\n\2')]
if agent_api:
    agent.append((r'^(          args: \["--store=kubernetes",)', rf'\1 "{agent_api}",'))
render("daemonset.yaml", agent)
quoted = ", ".join(f'"{a}"' for a in args.split())
render("controller.yaml", [
    (r"^  replicas: 2$", f"  replicas: {replicas}"),
    (r'^(          )args: \[.*\]$', rf"\1args: [{quoted}]"),
    (r"^(          )env:$", aws),
])
PY
k apply -f "$project/deploy/rbac.yaml" -f "$dir/deploy/daemonset.yaml" -f "$dir/deploy/controller.yaml" \
  >>"$dir/logs/install.out"
say "project installed from deploy/ ($(elapsed))"

# 8. Wait: every node Ready, the DaemonSet rolled out (its readiness probe: binary and
#    kubeconfig on the node), the controller's replicas running.
nodes_ready() {
  local ready
  ready=$(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '=True$')
  [ "$ready" -eq "$nodes" ]
}
wait_until "$timeout" "$nodes nodes Ready" nodes_ready
say "$nodes nodes Ready ($(elapsed))"
# What a rollout that did not finish left: CI keeps only what is printed, so the Pods, their
# events and their logs are printed as well as kept.
rollout_failed() { # NAME SELECTOR
  { k get nodes -o custom-columns='NODE:.metadata.name,TAINTS:.spec.taints[*].key,CONDITIONS:.status.conditions[?(@.status=="True")].type'
    df -h "$dir"
    k -n ipam-rs get all -o wide
    k -n ipam-rs describe pods -l "$2"
    k -n ipam-rs logs -l "$2" --all-containers --tail=50 --prefix
    for i in $(seq 1 "$nodes"); do
      echo "--- node$i: the kubelet's last lines about $1"
      grep -a "$1" "$(node_dir "node$i")/logs/kubelet.log" | tail -n 15
    done; } >"$dir/logs/$1.out" 2>&1 || true
  tail -n 200 "$dir/logs/$1.out" >&2
  die "$1 did not roll out (its Pods and logs: $dir/logs/$1.out)"
}
k -n ipam-rs rollout status daemonset/ipam-cni --timeout="${timeout}s" >>"$dir/logs/install.out" \
  || rollout_failed ipam-cni app.kubernetes.io/name=ipam-cni
for i in $(seq 1 "$nodes"); do
  wait_until "$timeout" "node$i: ipam-cni and its kubeconfig" \
    test -x "$(node_dir "node$i")/root/opt/cni/bin/ipam-cni" -a -s "$(node_dir "node$i")/root/etc/cni/net.d/ipam-cni.kubeconfig"
done
k -n ipam-rs rollout status deployment/ipam-controller --timeout="${timeout}s" >>"$dir/logs/install.out" \
  || rollout_failed ipam-controller app.kubernetes.io/name=ipam-controller
# The pool the nodes' network names for Pods without an annotation. Written once the
# controller's replicas are Ready: the admission webhook they serve has failurePolicy Fail,
# so pool writes wait for it (docs/kubernetes.md, "The admission webhook"); a Ready replica
# has written the CA into the caBundle before it served.
if [ "$API" = spiderpool ]; then pool_api=spiderpool.spidernet.io/v2beta1 pool_kind=SpiderIPPool
else pool_api=ipam.rs/v1alpha1 pool_kind=IPPool; fi
default_pool() {
  k apply -f - >>"$dir/logs/install.out" 2>&1 <<EOF
apiVersion: $pool_api
kind: $pool_kind
metadata:
  name: default-pool
spec:
  subnet: 10.244.0.0/16
  ips:
  - 10.244.0.10-10.244.3.250
EOF
}
wait_until "$timeout" "the pool default-pool admitted by the webhook" default_pool
say "cluster of $nodes nodes up in $(elapsed): testenv/exec.sh $dir kubectl get nodes"
trap - EXIT
echo "$dir/kubeconfig"
