#!/usr/bin/env bash
# The cluster part of `testenv/stop.sh DIR`, run by it first: removes what cluster-start.sh
# made. Goes on past failures, so that a half-started cluster goes too; idempotent. Signals
# only processes of this cluster: those of its pid files, those inside its network namespace
# (daemons, containerd's shims, the host-network Pods) and those in its nodes' cgroups (the
# Pods), all by pid.
set -uo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"
. "$TESTENV_DIR/cluster-lib.sh"
dir=$(instance_dir "${1:?usage: cluster-stop.sh DIR}")
load_cluster "$dir"

pod_pids() { # every process in a cgroup of this cluster's nodes
  find /sys/fs/cgroup/pids/ -maxdepth 1 -name "$NETNS-node*" -exec find {} -name cgroup.procs \; 2>/dev/null \
    | xargs -r cat 2>/dev/null
}
netns_pids() { # every process inside the cluster's network namespace
  local ns pid
  ns=$(stat -L -c %i "/run/netns/$NETNS" 2>/dev/null) || return 0
  for pid in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$pid/ns/net" 2>/dev/null)" = "$ns" ] && echo "${pid#/proc/}"
  done
}
signal_all() { # SIGNAL
  local pids
  pids=$( { pod_pids; netns_pids; } | sort -u | grep -v -x "$$")
  # shellcheck disable=SC2086 # a list of pids
  [ -z "$pids" ] || kill "-$1" $pids 2>/dev/null
  return 0
}
gone() { [ -z "$( { pod_pids; netns_pids; } | grep -v -x "$$")" ]; }

# 1. The kubelets and proxies first (a kubelet would start again what goes next), then the
#    controllers, the Pods, containerd; the rest of the namespace (shims, etcd, the API
#    server, anything left by exec.sh) with SIGTERM, then SIGKILL after 10 s. The store's data
#    goes with etcd, so no CNI DEL is owed to anyone.
for i in $(seq 1 "$NODES"); do
  for d in kubelet kube-proxy; do stop_pidfile "$(node_pidfile "node$i" $d)" "$dir" "node$i $d"; done
done
stop_pidfile "$dir/controller-manager.pid" "$dir" controller-manager
stop_pidfile "$dir/scheduler.pid" "$dir" scheduler
pod_pids | xargs -r kill -KILL 2>/dev/null
for i in $(seq 1 "$NODES"); do stop_pidfile "$(node_pidfile "node$i" containerd)" "$dir" "node$i containerd"; done
signal_all TERM
for _ in $(seq 1 50); do gone && break; sleep 0.2; done
gone || { say "SIGKILL to what is left in $NETNS"; signal_all KILL; sleep 1; }

# 2. The nodes' mount namespaces: with their processes gone, unmounting the files that keep
#    them ends them, and every mount made inside (overlays, tmpfs volumes, the Pods' network
#    namespace files) with them. Then the network namespace: its links, addresses, routes and
#    iptables rules go with it.
for f in "$dir"/ns/node*; do
  [ -e "$f" ] || continue
  umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null
  rm -f "$f"
done
if mountpoint -q "$dir/ns"; then umount "$dir/ns" || umount -l "$dir/ns"; fi
if [ -e "/run/netns/$NETNS" ]; then ip netns delete "$NETNS" || say "ip netns delete $NETNS failed"; fi

# 3. The nodes' cgroups, leaves first (rmdir removes only empty groups).
for h in /sys/fs/cgroup/*/; do
  for g in "$h$NETNS"-node*; do
    [ -d "$g" ] && find "$g" -depth -type d -exec rmdir {} + 2>/dev/null
  done
done

# 4. State: the nodes' directories (never while anything is mounted below DIR), and the
#    mount points made on the host for the nodes' paths, if empty and no other cluster runs.
if grep -qF " $dir/" /proc/self/mountinfo; then
  say "mounts below $dir remain; not removing $dir/nodes:"; grep -F " $dir/" /proc/self/mountinfo >&2
else
  rm -rf "$dir/nodes"
fi
# Not while another cluster runs: a directory that is a mount point in another mount
# namespace can still be removed, and the kernel then takes the mounts on it away from that
# namespace (seen here: another cluster's containerd lost its /var/lib/containerd, and its
# Pods could not start: "blob not found").
others=$(ls /run/netns 2>/dev/null | grep '^ipamrs-' | grep -vx "$NETNS" || true)
if [ -f "$dir/host-dirs" ] && [ -n "$others" ]; then
  say "another cluster runs ($(echo $others)): the host's mount points stay (empty directories)"
elif [ -f "$dir/host-dirs" ]; then
  sort -r "$dir/host-dirs" | while read -r d; do rmdir "$d" 2>/dev/null; done
fi
rm -f "$dir/host-dirs"
rm -f "$dir/cluster.env"
say "cluster of $dir removed"
exit 0
