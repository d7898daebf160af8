#!/usr/bin/env bash
# Checks that a cluster of start.sh --cluster is sealed off from every network but its own:
#
#   testenv/tests/isolation.sh DIR
#
# 1. every process of the cluster (its daemons and all their descendants: containerd's
#    shims, the Pods) runs in the cluster's network namespace or in a Pod's, none in the
#    host's, and the cluster's daemons and the project's controller and agents run with
#    AWS_EC2_METADATA_DISABLED=true;
# 2. the cluster's namespace holds only lo, its dummy link and the Pods' macvlan masters;
#    no namespace of the cluster has a default route, or a route but to its own subnets and
#    the Service range;
# 3. no socket of those namespaces is connected to an address outside them: each peer is an
#    address of one of the cluster's namespaces, or of the Service range (kube-proxy maps it
#    onto them).
# Run from the host's network namespace. Exit status 0 only if every check holds.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
. "$here/../lib.sh"
. "$TESTENV_DIR/cluster-lib.sh"
dir=$(instance_dir "${1:?usage: isolation.sh DIR}")
load_cluster "$dir"
bad=0
problem() { echo "    isolation: $*" >&2; bad=$((bad + 1)); }

host_ns=$(stat -L -c %i /proc/self/ns/net)
cluster_ns=$(stat -L -c %i "/run/netns/$NETNS")
[ "$host_ns" != "$cluster_ns" ] || die "run this from the host's network namespace, not inside the cluster's"

# 1. The cluster's processes: the daemons of its pid files and every descendant of theirs
#    (a Pod's processes descend from its shim, which descends from containerd), and anything
#    in the nodes' cgroups.
mapfile -t roots < <(cat "$dir"/*.pid "$dir"/nodes/*/*.pid 2>/dev/null)
declare -A children=()
while read -r pid ppid; do children[$ppid]+=" $pid"; done < <(ps -e -o pid=,ppid=)
declare -A seen=()
queue=("${roots[@]}")
while [ ${#queue[@]} -gt 0 ]; do
  p=${queue[0]}; queue=("${queue[@]:1}")
  [ -n "$p" ] && [ -z "${seen[$p]:-}" ] && [ -d "/proc/$p" ] || continue
  seen[$p]=1
  # shellcheck disable=SC2206 # a list of pids
  queue+=(${children[$p]:-})
done
for f in $(find /sys/fs/cgroup/pids/ -maxdepth 1 -name "$NETNS-node*" -exec find {} -name cgroup.procs \; 2>/dev/null); do
  for p in $(cat "$f"); do seen[$p]=1; done
done
declare -A ns_pid=()   # a pid in each namespace of the cluster
n_procs=0
for p in "${!seen[@]}"; do
  ns=$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null) || continue   # exited meanwhile
  n_procs=$((n_procs + 1))
  if [ "$ns" = "$host_ns" ]; then
    problem "pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-100)) is in the host's network namespace"
  fi
  ns_pid[$ns]=$p
done
for f in "$dir"/*.pid "$dir"/nodes/*/*.pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f")
  [ -r "/proc/$p/environ" ] || continue
  tr '\0' '\n' <"/proc/$p/environ" | grep -qx AWS_EC2_METADATA_DISABLED=true \
    || problem "${f#"$dir"/} (pid $p) runs without AWS_EC2_METADATA_DISABLED=true"
done
# The project's controller and node agents (Pods of deploy/controller.yaml and
# deploy/daemonset.yaml, Kubernetes clients for the cluster's life) as well.
declare -A n_project=([ipam-controller]=0 [ipam-agent]=0)
for p in "${!seen[@]}"; do
  # A process may exit meanwhile: then it is skipped.
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
  name=${cmd%% *} name=${name#/usr/local/bin/}
  [ -n "${n_project[$name]+set}" ] && [ "${cmd%% *}" = "/usr/local/bin/$name" ] || continue
  environment=$(tr '\0' '\n' 2>/dev/null <"/proc/$p/environ") || continue
  n_project[$name]=$((n_project[$name] + 1))
  grep -qx AWS_EC2_METADATA_DISABLED=true <<<"$environment" \
    || problem "$name (pid $p) runs without AWS_EC2_METADATA_DISABLED=true"
done
for name in "${!n_project[@]}"; do
  [ "${n_project[$name]}" -gt 0 ] || problem "no $name process among the cluster's"
done
[ ${#roots[@]} -gt 0 ] || problem "no pid files in $dir: is the cluster running?"
[ -n "${ns_pid[$cluster_ns]:-}" ] || problem "no process of the cluster in its namespace $NETNS"

# 2. and 3., namespace by namespace.
in_ns() { local pid=$1; shift; nsenter --net="/proc/$pid/ns/net" -- "$@"; }
allowed=()   # CIDRs of the cluster's own addresses
for ns in "${!ns_pid[@]}"; do
  while read -r a; do allowed+=("$a"); done < <(in_ns "${ns_pid[$ns]}" ip -o addr show | awk '{print $4}')
done
allowed+=("$SERVICE_CIDR")
n_sockets=0
for ns in "${!ns_pid[@]}"; do
  pid=${ns_pid[$ns]}
  name="Pod namespace (pid $pid)"
  [ "$ns" = "$cluster_ns" ] && name="cluster namespace $NETNS"
  if [ "$ns" = "$cluster_ns" ]; then
    for link in $(in_ns "$pid" ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
      case $link in lo|"$CLUSTER_LINK"|pods[0-9]*) ;; *) problem "$name has a link $link" ;; esac
    done
  fi
  while read -r route; do
    [ -n "$route" ] || continue
    dst=${route%% *}
    case $dst in
      default) problem "$name has a default route: $route" ;;
      "$SERVICE_CIDR") ;;
      *) [[ $route == *"proto kernel"* ]] || problem "$name has a route that is not one of its own subnets: $route" ;;
    esac
  done < <(in_ns "$pid" ip route show; in_ns "$pid" ip -6 route show | grep -v -e '^fe80::' -e '^multicast' -e '^ff00::' || true)
  # Every socket that is not listening, TCP and UDP, IPv4 and IPv6: its peer.
  while read -r peer; do
    n_sockets=$((n_sockets + 1))
    addr=${peer%:*}; addr=${addr#[}; addr=${addr%]}; addr=${addr#::ffff:}; addr=${addr%%%*}
    case $addr in '*'|0.0.0.0|::) continue ;; esac
    python3 - "$addr" "${allowed[@]}" <<'PY' || problem "$name: a socket is connected to $peer, outside the cluster"
import ipaddress, sys
addr = ipaddress.ip_address(sys.argv[1])
sys.exit(0 if any(addr in ipaddress.ip_network(c, strict=False) for c in sys.argv[2:]) else 1)
PY
  done < <(in_ns "$pid" ss -Htuna | awk '$2 != "LISTEN" && $2 != "UNCONN" {print $6}')
done
echo "    isolation: $n_procs processes in ${#ns_pid[@]} network namespaces (the cluster's and its Pods'), none in the host's; $n_sockets sockets, every peer inside the cluster"
[ $bad -eq 0 ]
