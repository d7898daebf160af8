# shellcheck shell=bash disable=SC2034  # variables are for the scripts that source this
# Shared by the cluster's scripts (cluster-start.sh, stop.sh, exec.sh, node.sh, tests/,
# bench/): where a cluster's pieces are, and how to run something inside it. Sourced after
# lib.sh. testenv/README.md ("The cluster") explains the layout.

# The cluster's network (inside its own network namespace; nothing here is routed anywhere):
CLUSTER_LINK=ipamrs0                 # a bridge without ports holding the control plane's and nodes' IPs
CLUSTER_CIDR_PREFIX=10.250.0         # /24: .1 the API server, .1N node N
APISERVER_IP=10.250.0.1
SERVICE_CIDR=10.96.0.0/16            # start.sh's --service-cluster-ip-range
KUBERNETES_SERVICE_IP=10.96.0.1
# The directories a node has at their usual paths, each bound from DIR/nodes/NAME/root/...
# inside that node's mount namespace (so the DaemonSet's hostPath volumes, the kubelet's
# /var/log/pods and the CNI plugins' defaults are the node's own, as on separate machines).
# /var/log/ipam-cni holds the plugin's log: not in /var/log/pods, whose files the kubelet
# deletes when it cleans up after Pods.
# /run/ipam-rs holds the node agent's socket (the DaemonSet's agent container).
NODE_PATHS=(/etc/cni/net.d /opt/cni/bin /var/lib/cni /var/lib/kubelet /var/lib/containerd
            /run/containerd /var/log/pods /var/log/containers /var/log/ipam-cni /run/ipam-rs)

node_ip() { echo "$CLUSTER_CIDR_PREFIX.$((10 + ${1#node}))"; }   # node1 -> 10.250.0.11

# Reads DIR/cluster.env (written by cluster-start.sh): NETNS NODES API ID.
load_cluster() { # DIR
  [ -f "$1/cluster.env" ] || die "$1 holds no cluster (no $1/cluster.env): start.sh --cluster $1 first"
  # shellcheck source=/dev/null
  . "$1/cluster.env"
  CLUSTER_DIR=$1
}

node_dir() { echo "$CLUSTER_DIR/nodes/$1"; }
node_mntns() { echo "$CLUSTER_DIR/ns/$1"; }

# Runs a command in the cluster's network namespace (where the API server listens on
# 127.0.0.1 and 10.250.0.1). The in-tree cloud SDKs must not look for instance metadata
# (there is no route out anyway).
in_cluster() {
  nsenter --net="/run/netns/$NETNS" -- env AWS_EC2_METADATA_DISABLED=true "$@"
}
# The same, also in NODE's mount namespace (its containerd socket, its /etc/cni/net.d ...).
in_node() { # NODE CMD...
  local node=$1; shift
  nsenter --net="/run/netns/$NETNS" --mount="$(node_mntns "$node")" -- env AWS_EC2_METADATA_DISABLED=true "$@"
}

kubectl_admin() { in_cluster "$TESTENV_DIR/kubectl.sh" --kubeconfig "$CLUSTER_DIR/kubeconfig" "$@"; }

# Starts a daemon inside NODE's namespaces (or the cluster's alone, NODE=-), in a session of
# its own, stdin closed, output appended to LOG. PIDFILE gets the daemon's own pid: the
# process writes it itself just before it execs, so no wrapper's pid ends up there.
launch() { # NODE PIDFILE LOG CMD...
  local node=$1 pidfile=$2 log=$3; shift 3
  rm -f "$pidfile"
  local enter=(in_cluster)
  [ "$node" = - ] || enter=(in_node "$node")
  "${enter[@]}" setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$log" 2>&1 8>&- 9>&- &
  local i
  for i in $(seq 1 100); do [ -s "$pidfile" ] && return 0; sleep 0.1; done
  die "$pidfile: not written within 10 s"
}

# Polls CMD until it succeeds, for at most SECONDS; fails naming WHAT. Never assumes a speed:
# every deadline here is generous, and polling returns as soon as the state is reached.
wait_until() { # SECONDS WHAT CMD...
  local seconds=$1 deadline=$(($(date +%s) + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$what: not after $seconds s"
    sleep 1
  done
}

# A node's pid files; node.sh stops and starts its kubelet alone.
node_pidfile() { echo "$(node_dir "$1")/$2.pid"; }   # NODE containerd|kubelet|kube-proxy

# Starts NODE's kubelet (its files written by cluster-start.sh), talking to the node's own
# containerd; node.sh starts it again after a stop or a kill.
start_kubelet() { # NODE
  local node=$1 ndir
  ndir=$(node_dir "$node")
  echo "=== kubelet starting $(date -u +%FT%TZ)" >>"$ndir/logs/kubelet.log"
  launch "$node" "$ndir/kubelet.pid" "$ndir/logs/kubelet.log" "$KUBE_BIN/kubelet" \
    --config="$ndir/kubelet.yaml" \
    --kubeconfig="$ndir/kubelet.kubeconfig" \
    --container-runtime=remote \
    --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
    --hostname-override="$node" --node-ip="$(node_ip "$node")" \
    --v=1
}
