#!/usr/bin/env bash
# Starts a throwaway Kubernetes API server for the Kubernetes store's tests: Debian's etcd and
# the kube-apiserver v1.20.2 that build-apiserver.sh caches, both on 127.0.0.1.
#
#   testenv/start.sh DIR                    fresh etcd + apiserver; prints DIR/kubeconfig
#   testenv/start.sh --cluster [--nodes N] [--api ipam|spiderpool] DIR
#                                           a whole cluster of N nodes (default 2) in a
#                                           network namespace of its own: cluster-start.sh
#   testenv/start.sh --apiserver-only DIR   start the apiserver again (same port, same etcd,
#                                           same data) after stop.sh --apiserver-only or a kill
#   options: --no-wait    return once the processes are launched, without waiting for /readyz
#
# Everything an instance owns lives in DIR: etcd's data (DIR/etcd), logs, pid files, keys and
#   DIR/env          shell-sourceable: ETCD_PORT ETCD_PEER_PORT APISERVER_PORT APISERVER_URL
#                    ADMIN_TOKEN NOBODY_TOKEN KUBECONFIG
#   DIR/kubeconfig   cluster-admin (group system:masters) by bearer token; the server is
#                    verified against DIR/ca.crt, which signed its certificate
#   DIR/kubeconfig-nobody  an authenticated user with no RBAC grants: every request gets 403
# so instances in different DIRs run side by side: the ports are picked free at random and
# claimed (see claim_ports), never fixed.
#
# Environment:
#   IPAM_TESTENV_APISERVER       kube-apiserver binary to use instead of build-apiserver.sh's
#   IPAM_TESTENV_APISERVER_ARGS  extra apiserver flags, e.g. --etcd-compaction-interval=10s
#   IPAM_TESTENV_KEY             the serving key: rsa (RSA 2048, kubeadm's default) or ec
#                                (ECDSA P-256, k3s's); TLS handshakes cost the server less
#   IPAM_TESTENV_READY_TIMEOUT   seconds to wait for /readyz (default 180: a loaded 2-core CI
#                                machine can take far longer than the usual 5-10 s)
#   IPAM_TESTENV_CACHE           where build-apiserver.sh keeps the binary
#   IPAM_TESTENV_APISERVER_SANS  more subjectAltName entries for the serving certificate,
#                                e.g. IP:10.250.0.1,IP:10.96.0.1 (the cluster's addresses)
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"

# The cluster mode is a script of its own; this one stays the bare API server.
for arg in "$@"; do
  [ "$arg" = --cluster ] && exec "$TESTENV_DIR/cluster-start.sh" "$@"
done

apiserver_only=false wait=true
while [ $# -gt 0 ]; do
  case $1 in
    --apiserver-only) apiserver_only=true ;;
    --no-wait) wait=false ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
  shift
done
[ $# -eq 1 ] || die "usage: ${0##*/} [--apiserver-only] [--no-wait] DIR"
dir=$(instance_dir "$1" create)
timeout=${IPAM_TESTENV_READY_TIMEOUT:-180}
t0=$(date +%s%3N)

need_commands curl:curl openssl:openssl ss:iproute2 flock:util-linux etcd:etcd-server

# A start that fails stops what it started (logs stay), so no test leaks half an instance.
cleanup_on=none
on_exit() {
  local rc=$?
  [ $rc -eq 0 ] && return
  case $cleanup_on in
    all) "$TESTENV_DIR/stop.sh" "$dir" || true ;;
    apiserver) "$TESTENV_DIR/stop.sh" --apiserver-only "$dir" || true ;;
  esac
}
trap on_exit EXIT

# Tail of a log, for when a process dies or never gets ready.
show_log() { say "last lines of $1:"; tail -n 25 "$1" >&2; }

# Waits until URL answers "ok" (with the admin token), or the process in PIDFILE dies. (Not
# pid_is_ours here: until the fork has exec'd, the command line is still this script's.)
wait_ok() { # URL PIDFILE LOG WHAT
  local deadline=$(($(date +%s) + timeout)) body
  while :; do
    body=$(curl -sk --max-time 5 -H "Authorization: Bearer ${ADMIN_TOKEN:-}" "$1" 2>/dev/null) || true
    case $body in ok|*'"health":"true"'*) return 0 ;; esac
    exited "$(cat "$2")" && { show_log "$3"; die "$4 exited before it was ready"; }
    [ "$(date +%s)" -lt "$deadline" ] || { show_log "$3"; die "$4 not ready after ${timeout} s"; }
    sleep 0.2
  done
}

# True if some TCP socket of this machine uses local port P (listening, connected, TIME_WAIT).
port_in_use() { [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }

# Picks N free ports and claims them for DIR, printing them. A claim is a file
# $TESTENV_PORTS/<port> naming its DIR; it holds while that DIR's env still lists the port,
# so the port of an apiserver that a test stopped (to simulate an outage) is not handed to
# another instance before --apiserver-only takes it back. stop.sh drops the claims; claims of
# deleted DIRs are stale and reused. Ports come from below the kernel's ephemeral range, so an
# outgoing connection never takes one in the meantime. Called with the claims lock held.
claim_ports() { # N
  local lo hi first last n=0 p owner tries=0
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
  if [ "$lo" -gt 20001 ]; then first=20000 last=$((lo - 1)); else first=$((hi + 1)) last=65535; fi
  while [ $n -lt "$1" ]; do
    tries=$((tries + 1))
    [ $tries -lt 1000 ] || die "no free port in $first-$last"
    p=$(shuf -i "$first-$last" -n 1)
    if [ -e "$TESTENV_PORTS/$p" ]; then
      owner=$(cat "$TESTENV_PORTS/$p" 2>/dev/null || true)
      [ "$owner" != "$dir" ] && grep -qs "_PORT=$p\$" "$owner/env" && continue
    fi
    port_in_use "$p" && continue
    echo "$dir" >"$TESTENV_PORTS/$p"
    echo "$p"
    n=$((n + 1))
  done
}

# The apiserver's command line is saved in DIR/apiserver.args at the first start, so a
# restart is the same server (same flags, port and keys) over the same etcd data.
launch_apiserver() {
  local args=()
  mapfile -t args <"$dir/apiserver.args"
  pid_is_ours "$dir/etcd.pid" "$dir" || die "etcd of $dir is not running: start.sh $dir first"
  # Connections of a killed apiserver linger in TIME_WAIT; those do not block a listener (Go
  # sets SO_REUSEADDR), only a socket listening there does. A test that killed the apiserver
  # itself may call this while the dying process still holds that socket: give it 5 s.
  for _ in $(seq 1 50); do
    [ -n "$(ss -Hltn "( sport = :$APISERVER_PORT )")" ] || break
    sleep 0.1
  done
  [ -z "$(ss -Hltn "( sport = :$APISERVER_PORT )")" ] \
    || die "port $APISERVER_PORT is taken by another process: $(ss -Hltnp "( sport = :$APISERVER_PORT )")"
  echo "=== kube-apiserver starting $(date -u +%FT%TZ)" >>"$dir/apiserver.log"
  # stdin/stdout/stderr and the lock fd redirected: a caller reading this script's output
  # (e.g. Rust's Command::output) must see EOF when the script ends, not when the server does.
  "${args[@]}" </dev/null >>"$dir/apiserver.log" 2>&1 8>&- &
  echo $! >"$dir/apiserver.pid"
}

finish() {
  if $wait; then
    wait_ok "$APISERVER_URL/readyz" "$dir/apiserver.pid" "$dir/apiserver.log" kube-apiserver
    local ms=$(($(date +%s%3N) - t0))
    say "ready in $((ms / 1000)).$((ms % 1000 / 100)) s: $APISERVER_URL"
  fi
  echo "$dir/kubeconfig"
}

if $apiserver_only; then
  if [ ! -f "$dir/env" ] || [ ! -f "$dir/apiserver.args" ]; then
    die "$dir holds no instance: start.sh $dir first"
  fi
  # shellcheck source=/dev/null
  . "$dir/env"
  # Just killed by the caller? Then it is about to be gone.
  for _ in $(seq 1 20); do
    pid_is_ours "$dir/apiserver.pid" "$dir" || break
    exited "$(cat "$dir/apiserver.pid")" && break
    sleep 0.1
  done
  if pid_is_ours "$dir/apiserver.pid" "$dir" && ! exited "$(cat "$dir/apiserver.pid")"; then
    die "the apiserver of $dir is running (pid $(cat "$dir/apiserver.pid")): stop.sh --apiserver-only $dir first"
  fi
  cleanup_on=apiserver
  launch_apiserver
  finish
  exit 0
fi

if pid_is_ours "$dir/etcd.pid" "$dir" || pid_is_ours "$dir/apiserver.pid" "$dir"; then
  die "$dir already has a running instance: stop.sh $dir first"
fi

apiserver=${IPAM_TESTENV_APISERVER:-}
if [ -z "$apiserver" ]; then
  # Instant when cached; otherwise builds (minutes), sharing one build with concurrent callers.
  apiserver=$("$TESTENV_DIR/build-apiserver.sh" | tail -n1)
fi
[ -x "$apiserver" ] || die "no kube-apiserver at $apiserver"

mkdir -p "$TESTENV_PORTS"
cleanup_on=all
exec 8>"$TESTENV_PORTS/.lock"
flock 8
claimed=$(claim_ports 3)
mapfile -t ports <<<"$claimed"
ETCD_PORT=${ports[0]} ETCD_PEER_PORT=${ports[1]} APISERVER_PORT=${ports[2]}
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
ADMIN_TOKEN=$(openssl rand -hex 16)
NOBODY_TOKEN=$(openssl rand -hex 16)
KUBECONFIG=$dir/kubeconfig
cat >"$dir/env" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
APISERVER_URL=$APISERVER_URL
ADMIN_TOKEN=$ADMIN_TOKEN
NOBODY_TOKEN=$NOBODY_TOKEN
KUBECONFIG=$KUBECONFIG
EOF
exec 8>&-   # the env file now holds the claims

# A fresh, empty cluster each time; logs of a previous run are replaced.
rm -rf "$dir/etcd"
: >"$dir/apiserver.log"

# Static token authentication: a token file, no client certificates to mint. The admin is in
# system:masters, which RBAC lets do anything; "nobody" is authenticated but granted nothing.
( umask 077
  printf '%s,admin,admin,system:masters\n%s,nobody,nobody\n' "$ADMIN_TOKEN" "$NOBODY_TOKEN" >"$dir/tokens.csv"
  # The apiserver refuses to start without a service-account signing key (1.20).
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  # A CA and the serving certificate it signs, as a real cluster has: clients verify the
  # server (no insecure-skip-tls-verify) against the CA the kubeconfigs carry.
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=ipam-testenv-ca \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  case ${IPAM_TESTENV_KEY:-rsa} in
    rsa) key=(-newkey rsa:2048) ;;
    ec) key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    *) die "IPAM_TESTENV_KEY: ${IPAM_TESTENV_KEY}: rsa or ec" ;;
  esac
  openssl req "${key[@]}" -nodes -subj /CN=kube-apiserver \
    -keyout "$dir/apiserver.key" -out "$dir/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc%s\nextendedKeyUsage=serverAuth\n' \
    "${IPAM_TESTENV_APISERVER_SANS:+,$IPAM_TESTENV_APISERVER_SANS}" >"$dir/apiserver.ext"
  openssl x509 -req -in "$dir/apiserver.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 3650 -extfile "$dir/apiserver.ext" -out "$dir/apiserver.crt" 2>/dev/null
  ca_data=$(base64 -w0 <"$dir/ca.crt")
  for who in admin nobody; do
    f=$dir/kubeconfig; token=$ADMIN_TOKEN
    [ $who = nobody ] && f=$dir/kubeconfig-nobody token=$NOBODY_TOKEN
    cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ipam-testenv
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $ca_data
users:
- name: $who
  user:
    token: $token
contexts:
- name: ipam-testenv
  context:
    cluster: ipam-testenv
    user: $who
current-context: ipam-testenv
EOF
  done )

# etcd: one member; every URL explicit, since its defaults (2379, 2380, localhost) would
# collide between instances.
etcd --name ipam-testenv --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "ipam-testenv=http://127.0.0.1:$ETCD_PEER_PORT" \
  --logger zap --log-outputs stderr \
  </dev/null >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"

# The apiserver, HTTPS only (1.20 has no insecure port by default), on loopback:
# - RBAC with the token file above (system:masters for the admin);
# - --endpoint-reconciler-type=none: no Endpoints for the in-cluster "kubernetes" Service,
#   which would want a routable advertise address;
# - the service-account flags 1.20 requires, and a service IP range it insists on.
# etcd's default request limit (--max-request-bytes 1.5 MiB) is kept: it is what a real
# cluster enforces on each object.
# shellcheck disable=SC2206 # IPAM_TESTENV_APISERVER_ARGS is a list of flags, split on spaces
args=("$apiserver"
  --etcd-servers="http://127.0.0.1:$ETCD_PORT"
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT"
  --tls-cert-file="$dir/apiserver.crt" --tls-private-key-file="$dir/apiserver.key"
  --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC
  --service-account-issuer=https://kubernetes.default.svc.cluster.local
  --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key"
  --service-cluster-ip-range=10.96.0.0/16 --endpoint-reconciler-type=none
  --profiling=false
  ${IPAM_TESTENV_APISERVER_ARGS:-})
printf '%s\n' "${args[@]}" >"$dir/apiserver.args"

# The apiserver gives up if etcd is not there at start, so wait for etcd's /health first.
wait_ok "http://127.0.0.1:$ETCD_PORT/health" "$dir/etcd.pid" "$dir/etcd.log" etcd
launch_apiserver
finish
