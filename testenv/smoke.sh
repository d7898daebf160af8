#!/usr/bin/env bash
# End-to-end check of the test environment, and of the API facts the Kubernetes store relies
# on. Starts an instance in a temporary DIR, exercises it with Debian's kubectl and curl,
# restarts the apiserver as the outage tests do, stops it, and prints the figures it measured.
#
#   testenv/smoke.sh          (builds the apiserver first if it is not cached: minutes)
#
# Exit status 0 only if every check passed.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"
need_commands curl:curl

dir=$(mktemp -d "${TMPDIR:-/tmp}/ipam-testenv-smoke.XXXXXX")
failures=0
# Stops whatever is left; the logs stay in DIR if anything failed.
cleanup() {
  local rc=$?
  "$TESTENV_DIR/stop.sh" "$dir" || true
  if [ $rc -eq 0 ] && [ $failures -eq 0 ]; then rm -rf "$dir"; else echo "logs kept in $dir" >&2; fi
}
trap cleanup EXIT

check() { # DESCRIPTION EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected $2, got $3"; failures=$((failures + 1)); fi
}
now() { date +%s%3N; }
secs() { local ms=$(($(now) - $1)); echo "$((ms / 1000)).$((ms % 1000 / 100))"; }
rss_mb() { echo $(($(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$(cat "$1")/status") / 1024)); }
# The "reason" of the Status in the last response (the apiserver pretty-prints for curl).
reason() { sed -n 's/^ *"reason": *"\([A-Za-z]*\)".*/\1/p' "$dir/body" | head -n1; }

# Cached binary first, so the start time below is the start alone.
"$TESTENV_DIR/build-apiserver.sh" >/dev/null

t=$(now)
kubeconfig=$("$TESTENV_DIR/start.sh" "$dir" | tail -n1)
start_secs=$(secs "$t")
# shellcheck source=/dev/null
. "$dir/env"
k() { "$TESTENV_DIR/kubectl.sh" --kubeconfig "$kubeconfig" "$@"; }
# HTTP status of a request as admin; the body is left in $dir/body. A PATCH's content type
# names its kind: merge-patch+json, apply-patch+yaml, json-patch+json.
api() { # METHOD PATH [curl args...]
  local method=$1 path=$2 type=application/json
  shift 2
  [ "$method" = PATCH ] && type=application/merge-patch+json
  case $* in *Content-Type:*) type= ;; esac
  curl -sk -o "$dir/body" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $ADMIN_TOKEN" \
    ${type:+-H "Content-Type: $type"} "$@" "$APISERVER_URL$path"
}

check "kubectl get --raw /readyz" ok "$(k get --raw /readyz)"
check "server version" v1.20.2 "$(k version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n1)"
check "apiserver listens on loopback only" "127.0.0.1:$APISERVER_PORT" \
  "$(ss -Hltnp | grep "pid=$(cat "$dir/apiserver.pid")," | awk '{print $4}' | paste -sd' ')"

# A cluster-scoped CRD with a status subresource, as the store's own will be.
k apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: probes.smoke.testenv.example.com
spec:
  group: smoke.testenv.example.com
  scope: Cluster
  names: {plural: probes, singular: probe, kind: Probe}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
EOF
# apiextensions.k8s.io/v1 requires a schema for every version.
check "a v1 CRD without a schema" 422 "$(api POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions -d \
  '{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"bares.smoke.testenv.example.com"},"spec":{"group":"smoke.testenv.example.com","scope":"Cluster","names":{"plural":"bares","kind":"Bare"},"versions":[{"name":"v1","served":true,"storage":true}]}}')"
t=$(now)
k wait --for condition=established --timeout=60s crd/probes.smoke.testenv.example.com >/dev/null
established_secs=$(secs "$t")
P=/apis/smoke.testenv.example.com/v1/probes

k create -f - >/dev/null <<'EOF'
apiVersion: smoke.testenv.example.com/v1
kind: Probe
metadata: {name: one}
spec: {cidr: 10.0.0.0/24}
EOF
check "kubectl get probe one" 10.0.0.0/24 "$(k get probe one -o 'jsonpath={.spec.cidr}')"
rv1=$(k get probe one -o 'jsonpath={.metadata.resourceVersion}')

# Optimistic concurrency: a PUT carrying the current resourceVersion succeeds, one carrying
# an older resourceVersion gets 409 Conflict.
body() { # RV CIDR
  printf '{"apiVersion":"smoke.testenv.example.com/v1","kind":"Probe","metadata":{"name":"one","resourceVersion":"%s"},"spec":{"cidr":"%s"}}' "$1" "$2"
}
check "PUT with the current resourceVersion" 200 "$(api PUT "$P/one" -d "$(body "$rv1" 10.0.1.0/24)")"
check "PUT with a stale resourceVersion" 409 "$(api PUT "$P/one" -d "$(body "$rv1" 10.0.2.0/24)")"
check "  its reason" Conflict "$(reason)"
check "kubectl replace with a stale resourceVersion" 1 \
  "$(body "$rv1" 10.0.3.0/24 | k replace -f - >/dev/null 2>"$dir/err"; echo $?)"
check "  its message" 1 "$(grep -c 'the object has been modified' "$dir/err")"
check "POST of an existing name" 409 "$(api POST "$P" -d "$(body "" 10.0.4.0/24)")"
check "  its reason" AlreadyExists "$(reason)"
# Unlike built-in kinds, custom resources refuse an unconditional update.
check "PUT without a resourceVersion" 422 "$(api PUT "$P/one" -d "$(body "" 10.0.5.0/24)")"
check "  its reason" Invalid "$(reason)"
rv=$(k get probe one -o 'jsonpath={.metadata.resourceVersion}')
check "PUT with the current resourceVersion, again" 200 "$(api PUT "$P/one" -d "$(body "$rv" 10.0.5.0/24)")"

# The status subresource: the main resource ignores .status, /status ignores .spec.
rv=$(k get probe one -o 'jsonpath={.metadata.resourceVersion}')
st() { printf '{"apiVersion":"smoke.testenv.example.com/v1","kind":"Probe","metadata":{"name":"one","resourceVersion":"%s"},"spec":{"cidr":"%s"},"status":{"used":%s}}' "$@"; }
check "PUT /status" 200 "$(api PUT "$P/one/status" -d "$(st "$rv" 10.9.9.0/24 7)")"
check "  sets .status" 7 "$(k get probe one -o 'jsonpath={.status.used}')"
check "  leaves .spec" 10.0.5.0/24 "$(k get probe one -o 'jsonpath={.spec.cidr}')"
rv=$(k get probe one -o 'jsonpath={.metadata.resourceVersion}')
check "PUT on the main resource" 200 "$(api PUT "$P/one" -d "$(st "$rv" 10.0.6.0/24 99)")"
check "  leaves .status" 7 "$(k get probe one -o 'jsonpath={.status.used}')"

# generation counts changes of .spec only (the status subresource keeps .status out of it).
gen=$(k get probe one -o 'jsonpath={.metadata.generation}')
rv=$(k get probe one -o 'jsonpath={.metadata.resourceVersion}')
check "PUT /status again" 200 "$(api PUT "$P/one/status" -d "$(st "$rv" 10.0.6.0/24 8)")"
check "  keeps metadata.generation" "$gen" "$(k get probe one -o 'jsonpath={.metadata.generation}')"
check "JSON merge patch" 200 "$(api PATCH "$P/one" -d '{"spec":{"cidr":"10.0.7.0/24"}}')"
check "  bumps metadata.generation" $((gen + 1)) "$(k get probe one -o 'jsonpath={.metadata.generation}')"
check "server-side apply (PATCH apply-patch+yaml, fieldManager)" 201 \
  "$(api PATCH "$P/applied?fieldManager=smoke" -H 'Content-Type: application/apply-patch+yaml' \
       -d '{"apiVersion":"smoke.testenv.example.com/v1","kind":"Probe","metadata":{"name":"applied"},"spec":{"cidr":"10.1.0.0/24"}}')"
# Names of custom objects must be DNS subdomains: an IPv4 address is one, an IPv6 one is not.
named() { printf '{"apiVersion":"smoke.testenv.example.com/v1","kind":"Probe","metadata":{"name":"%s"},"spec":{}}' "$1"; }
check "name 10.6.168.133" 201 "$(api POST "$P" -d "$(named 10.6.168.133)")"
check "name fd00::1" 422 "$(api POST "$P" -d "$(named fd00::1)")"
check "name fd00--1" 201 "$(api POST "$P" -d "$(named fd00--1)")"
check "name with upper case" 422 "$(api POST "$P" -d "$(named Pool-A)")"
# Paged lists and watches, as kube-rs's list and watcher use them.
check "list with limit=1 gives a continue token" yes \
  "$(api GET "$P?limit=1" >/dev/null; grep -q '"continue":"[^"]' "$dir/body" && echo yes || echo no)"
rv=$(k get probes -o 'jsonpath={.metadata.resourceVersion}')
( sleep 1; api PATCH "$P/one" -d '{"spec":{"cidr":"10.0.8.0/24"}}' >/dev/null ) &
curl -sk --max-time 4 -H "Authorization: Bearer $ADMIN_TOKEN" \
  "$APISERVER_URL$P?watch=1&resourceVersion=$rv&allowWatchBookmarks=true" >"$dir/watch" || true
wait
check "watch from a list's resourceVersion sees the next change" 1 "$(grep -c '"type":"MODIFIED".*10.0.8.0/24' "$dir/watch")"
# A watch from before the watch cache's window: HTTP 200, then one ERROR event, 410 Expired.
curl -sk --max-time 4 -H "Authorization: Bearer $ADMIN_TOKEN" "$APISERVER_URL$P?watch=1&resourceVersion=1" >"$dir/watch" || true
check "watch from resourceVersion 1: an ERROR event, 410 Expired" 1 \
  "$(grep -c '"type":"ERROR".*"reason":"Expired","code":410' "$dir/watch")"

# Size limits: etcd refuses a request over its --max-request-bytes (1.5 MiB), which the
# apiserver reports as 500; the apiserver itself refuses a body over 3 MiB with 413.
big() { # NAME BYTES-OF-PAYLOAD
  printf '{"apiVersion":"smoke.testenv.example.com/v1","kind":"Probe","metadata":{"name":"%s"},"spec":{"blob":"' "$1"
  head -c "$2" /dev/zero | tr '\0' a
  printf '"}}'
}
big small $((1024 * 1024)) >"$dir/1m.json"
big large $((1536 * 1024)) >"$dir/1.5m.json"
big huge $((3 * 1024 * 1024)) >"$dir/3m.json"
check "POST of a 1 MiB object" 201 "$(api POST "$P" --data-binary "@$dir/1m.json")"
check "POST of a 1.5 MiB object (over etcd's limit)" 500 "$(api POST "$P" --data-binary "@$dir/1.5m.json")"
check "  its message" 1 "$(grep -c 'request is too large' "$dir/body")"
check "  its reason: none (unknown)" "" "$(reason)"
check "POST of a 3 MiB object (over the apiserver's limit)" 413 "$(api POST "$P" --data-binary "@$dir/3m.json")"

# RBAC: an authenticated user without grants.
check "request as nobody" 403 "$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $NOBODY_TOKEN" "$APISERVER_URL$P")"

etcd_rss=$(rss_mb "$dir/etcd.pid")
apiserver_rss=$(rss_mb "$dir/apiserver.pid")

# An outage as the store's tests make one: apiserver down, etcd and data kept.
"$TESTENV_DIR/stop.sh" --apiserver-only "$dir"
check "apiserver down: connection refused (curl exit 7)" 7 "$(curl -sk -o /dev/null "$APISERVER_URL/readyz"; echo $?)"
t=$(now)
"$TESTENV_DIR/start.sh" --apiserver-only "$dir" >/dev/null
restart_secs=$(secs "$t")
check "after the restart: same port, object kept" 10.0.8.0/24 "$(k get probe one -o 'jsonpath={.spec.cidr}')"
"$TESTENV_DIR/stop.sh" --apiserver-only --kill "$dir"
"$TESTENV_DIR/start.sh" --apiserver-only "$dir" >/dev/null
check "after SIGKILL and a restart: object kept" 8 "$(k get probe one -o 'jsonpath={.status.used}')"

epid=$(cat "$dir/etcd.pid") apid=$(cat "$dir/apiserver.pid")
"$TESTENV_DIR/stop.sh" "$dir"
check "stop.sh: both processes gone" "gone gone" \
  "$(for p in "$epid" "$apid"; do if [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status"; then echo -n "running "; else echo -n "gone "; fi; done | sed 's/ $//')"

echo "start ${start_secs} s (fresh etcd + apiserver to /readyz), apiserver restart ${restart_secs} s, CRD established ${established_secs} s"
echo "RSS after the checks: etcd ${etcd_rss} MiB, kube-apiserver ${apiserver_rss} MiB"
if [ $failures -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
