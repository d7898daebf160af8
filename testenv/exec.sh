#!/usr/bin/env bash
# Runs a command inside the network namespace of the cluster of DIR (start.sh --cluster),
# where its API server listens, with that cluster's admin kubeconfig as KUBECONFIG and
# Debian's kubectl 1.20 first on PATH as `kubectl`:
#
#   testenv/exec.sh DIR kubectl get nodes -o wide
#   testenv/exec.sh DIR ipamctl get allocations         (the cluster's ipamctl binary)
#   testenv/exec.sh --node node1 DIR ctr -n k8s.io containers ls   (also in node1's mounts)
#
# The exit status is the command's.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"
. "$TESTENV_DIR/cluster-lib.sh"
node=
if [ "${1:-}" = --node ]; then node=${2:?--node needs a node name}; shift 2; fi
[ $# -ge 2 ] || die "usage: exec.sh [--node NODE] DIR CMD..."
dir=$(instance_dir "$1"); shift
load_cluster "$dir"
if [ -n "$node" ]; then
  [[ $node =~ ^node[0-9]+$ ]] && [ "${node#node}" -ge 1 ] && [ "${node#node}" -le "$NODES" ] \
    || die "--node: '$node' is not a node of $dir (node1..node$NODES)"
fi
# kubectl and ipamctl as commands of their own names, for scripts and people alike.
bin=$dir/bin
if [ ! -x "$bin/kubectl" ]; then
  mkdir -p "$bin"
  printf '#!/bin/sh\nexec %q "$@"\n' "$TESTENV_DIR/kubectl.sh" >"$bin/kubectl"
  printf '#!/bin/sh\nexec %q --kubeconfig %q "$@"\n' "$IPAMCTL" "$dir/kubeconfig" >"$bin/ipamctl"
  chmod +x "$bin/kubectl" "$bin/ipamctl"
fi
export KUBECONFIG=$dir/kubeconfig PATH=$bin:$PATH
if [ -n "$node" ]; then exec_in=(in_node "$node"); else exec_in=(in_cluster); fi
"${exec_in[@]}" "$@"
