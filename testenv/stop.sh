#!/usr/bin/env bash
# Stops an instance started by start.sh DIR.
#
#   testenv/stop.sh DIR                   apiserver and etcd; etcd's data and the port claims
#                                         go, logs and keys stay (DIR itself is the caller's)
#   testenv/stop.sh --apiserver-only DIR  the apiserver alone (SIGTERM), keeping etcd, data,
#                                         ports: an outage that start.sh --apiserver-only ends
#   options: --kill   SIGKILL at once instead of SIGTERM: a crash rather than a shutdown
#
#   testenv/stop.sh DIR   (DIR of start.sh --cluster) removes everything the cluster made:
#                         processes (its daemons, containerd's shims, the Pods), mounts and
#                         mount namespaces, the network namespace with its links and iptables
#                         rules, cgroups, state directories; logs, certificates and images stay
#
# Idempotent: stopping what is not running succeeds. Only processes whose command line names
# DIR are signalled, so a stale pid file cannot hit an unrelated process.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"

apiserver_only=false kill_now=false
while [ $# -gt 0 ]; do
  case $1 in
    --apiserver-only) apiserver_only=true ;;
    --kill) kill_now=true ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
  shift
done
[ $# -eq 1 ] || die "usage: ${0##*/} [--apiserver-only] [--kill] DIR"
[ -d "$1" ] || exit 0
dir=$(instance_dir "$1")

if [ -f "$dir/cluster.env" ] && ! $apiserver_only; then
  "$TESTENV_DIR/cluster-stop.sh" "$dir"
fi

signal=TERM
$kill_now && signal=KILL
stop() { stop_pidfile "$dir/$1.pid" "$dir" "$1" "$signal"; }

stop apiserver
$apiserver_only && exit 0
stop etcd
rm -rf "$dir/etcd"
# Drop this instance's port claims (files in $TESTENV_PORTS naming DIR).
if [ -f "$dir/env" ]; then
  sed -n 's/^[A-Z_]*_PORT=//p' "$dir/env" | while read -r p; do
    if [ "$(cat "$TESTENV_PORTS/$p" 2>/dev/null)" = "$dir" ]; then rm -f "$TESTENV_PORTS/$p"; fi
  done
  rm -f "$dir/env"
fi
exit 0
