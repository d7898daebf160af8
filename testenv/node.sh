#!/usr/bin/env bash
# One node's kubelet, for fault tests:
#
#   testenv/node.sh DIR stop NODE    SIGTERM, and wait until it has exited
#   testenv/node.sh DIR kill NODE    SIGKILL (a crash), and wait until it has exited
#   testenv/node.sh DIR start NODE   start it again, same flags, same state; returns once its
#                                    health endpoint answers
#
# containerd, kube-proxy and the Pods stay as they are: a kubelet restart must keep the Pods
# running and their addresses.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"
. "$TESTENV_DIR/cluster-lib.sh"
[ $# -eq 3 ] || die "usage: node.sh DIR stop|start|kill NODE"
dir=$(instance_dir "$1")
load_cluster "$dir"
action=$2 node=$3
[[ $node =~ ^node[0-9]+$ ]] && [ "${node#node}" -ge 1 ] && [ "${node#node}" -le "$NODES" ] \
  || die "NODE: '$node' is not a node of $dir (node1..node$NODES)"
pidfile=$(node_pidfile "$node" kubelet)
case $action in
  stop) stop_pidfile "$pidfile" "$dir" "$node kubelet" TERM ;;
  kill) stop_pidfile "$pidfile" "$dir" "$node kubelet" KILL ;;
  start)
    if pid_is_ours "$pidfile" "$dir"; then die "$node's kubelet is running (pid $(cat "$pidfile"))"; fi
    start_kubelet "$node"
    wait_until "${IPAM_TESTENV_READY_TIMEOUT:-300}" "$node's kubelet /healthz" \
      in_cluster curl -sf --max-time 5 "http://$(node_ip "$node"):10248/healthz"
    ;;
  *) die "ACTION: '$action' is not one of stop, start, kill" ;;
esac
