#!/usr/bin/env bash
# Builds the kube-apiserver the Kubernetes store's tests run against, once per machine.
#
#   testenv/build-apiserver.sh            -> prints the binary's path as its last stdout line
#
# Why build at all: Debian packages no kube-apiserver, and the only network these machines have
# is the package registries. Debian bookworm's `kubernetes` source package (1.20.5+really1.20.2)
# ships the whole upstream tree with vendor/, so it builds offline with Debian's Go 1.19.
#
# Where it goes: ${IPAM_TESTENV_CACHE:-/var/cache/ipam-rs-testenv}/<key>/kube-apiserver, outside
# the repository (110 MB, never committed). <key> is the first 16 hex digits of this script's
# sha256: any edit here (version, patch, flags) builds into a new directory, and an unchanged
# script reuses the binary built by an earlier run, CI job or checkout.
#
# Safe to run concurrently: the build holds flock on <key>/lock and publishes the binary by
# rename, so a second caller waits for the first build and then reuses it. The build is quiet;
# its log is <key>/build.log, whose tail is printed if a step fails.
#
# Needs a writable cache directory, and root when a prerequisite is missing (it runs apt-get
# install golang-1.19-go). Build time, disk and memory it takes: testenv/README.md. The sources
# and Go's build cache are deleted once the binary is in place; on failure they are kept.
set -euo pipefail

# The source package, and the orig tarball's sha256 as Debian's .dsc lists it: the apiserver
# is built from upstream sources only (Debian's debian/patches concern kubectl's printing).
SRC_PKG=kubernetes
SRC_SUITE=bookworm
ORIG_TARBALL=kubernetes_1.20.5+really1.20.2.orig.tar.gz
ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
KUBE_VERSION=v1.20.2
# Pinned toolchain, not whatever `go` is on PATH: the reflect2 patch below matches Go 1.19's
# runtime map iterator, and the cache key must mean one toolchain.
GO_PKG=golang-1.19-go
GO=/usr/lib/go-1.19/bin/go

self=$(readlink -f "${BASH_SOURCE[0]}")
key=$(sha256sum "$self" | cut -c1-16)
cache=${IPAM_TESTENV_CACHE:-/var/cache/ipam-rs-testenv}
out=$cache/$key
bin=$out/kube-apiserver

say() { echo "build-apiserver: $*" >&2; }

# Fast path, no lock: the binary only ever appears by rename once complete.
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

mkdir -p "$out"
exec 9>"$out/lock"
if ! flock -n 9; then
  say "another build of $bin is running; waiting for it"
  flock 9
fi
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

work=$out/work
log=$out/build.log
: >"$log"
# Every step's output goes to the log; on failure show its tail and keep the work tree.
on_exit() {
  local rc=$?
  [ $rc -eq 0 ] || { say "FAILED (exit $rc); last lines of $log:"; tail -n 40 "$log" >&2; }
}
trap on_exit EXIT

# Run a step quietly, its output appended to the log.
step() {
  say "$1"
  shift
  echo "=== $(date -u +%T) $*" >>"$log"
  "$@" >>"$log" 2>&1
}

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    say "missing $*; install it (as root: apt-get install $*) or run this script as root"
    exit 1
  fi
  # DPkg::Lock::Timeout: several of these scripts may install at the same time.
  local opts=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=600)
  DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >>"$log" 2>&1 || {
    apt-get update -qq >>"$log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >>"$log" 2>&1
  }
}

need=()
[ -x "$GO" ] || need+=("$GO_PKG")
command -v patch >/dev/null || need+=(patch)
if [ ${#need[@]} -gt 0 ]; then step "installing ${need[*]}" apt_install "${need[@]}"; fi

say "building kube-apiserver $KUBE_VERSION into $out (about 5 min on 2 cores; log: $log)"
start=$(date +%s)
rm -rf "$work"
mkdir -p "$work"/apt/lists/partial "$work"/apt/cache/archives/partial "$work"/apt/sources.list.d
cd "$work"

# 1. The source, through apt with a private configuration holding one deb-src entry, so the
#    machine's own sources.list (which usually has no deb-src) is left alone. Same mirror as the
#    machine's bookworm entry when one is configured, else deb.debian.org.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
           2>/dev/null \
         | awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }
                /^deb / { for (i = 2; i <= NF; i++) if ($i ~ "^https?://") { print $i; break } }' \
         | grep -E '^https?://[^ ]*/debian/?$' | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
echo "deb-src ${mirror%/} $SRC_SUITE main" >apt/sources.list.d/src.list
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/apt/sources.list.d"
          -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
          -o APT::Sandbox::User=root)
step "fetching the $SRC_PKG source package from ${mirror%/} $SRC_SUITE" \
  sh -c 'apt-get "$@" update -qq && apt-get "$@" source --download-only '"$SRC_PKG" sh "${apt_opts[@]}"
echo "$ORIG_SHA256  $ORIG_TARBALL" | step "checking $ORIG_TARBALL" sha256sum -c -
step "unpacking" tar xzf "$ORIG_TARBALL"
src=$work/kubernetes-1.20.2

# 2. Go >= 1.18 changed reflect.mapiterinit to fill a caller-allocated iterator. The vendored
#    github.com/modern-go/reflect2 v1.0.1 still calls the old 2-argument form through
#    go:linkname, which compiles but corrupts memory: the apiserver dies with SIGSEGV in
#    mapiterinit on the first custom resource it encodes. This is reflect2 v1.0.2's fix.
step "patching vendored reflect2 for Go 1.19" patch -d "$src" -p1 --forward <<'DIFF'
--- a/vendor/github.com/modern-go/reflect2/unsafe_link.go
+++ b/vendor/github.com/modern-go/reflect2/unsafe_link.go
@@ -25,11 +25,9 @@
 //go:noescape
 func mapaccess(rtype unsafe.Pointer, m unsafe.Pointer, key unsafe.Pointer) (val unsafe.Pointer)
 
-// m escapes into the return value, but the caller of mapiterinit
-// doesn't let the return value escape.
 //go:noescape
 //go:linkname mapiterinit reflect.mapiterinit
-func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) *hiter
+func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)
 
 //go:noescape
 //go:linkname mapiternext reflect.mapiternext
@@ -42,9 +40,21 @@
 // If you modify hiter, also change cmd/internal/gc/reflect.go to indicate
 // the layout of this structure.
 type hiter struct {
-	key   unsafe.Pointer // Must be in first position.  Write nil to indicate iteration end (see cmd/internal/gc/range.go).
-	value unsafe.Pointer // Must be in second position (see cmd/internal/gc/range.go).
-	// rest fields are ignored
+	key         unsafe.Pointer
+	value       unsafe.Pointer
+	t           unsafe.Pointer
+	h           unsafe.Pointer
+	buckets     unsafe.Pointer
+	bptr        unsafe.Pointer
+	overflow    *[]unsafe.Pointer
+	oldoverflow *[]unsafe.Pointer
+	startBucket uintptr
+	offset      uint8
+	wrapped     bool
+	B           uint8
+	i           uint8
+	bucket      uintptr
+	checkBucket uintptr
 }
 
 // add returns p+x.
--- a/vendor/github.com/modern-go/reflect2/unsafe_map.go
+++ b/vendor/github.com/modern-go/reflect2/unsafe_map.go
@@ -108,8 +108,10 @@
 }
 
 func (type2 *UnsafeMapType) UnsafeIterate(obj unsafe.Pointer) MapIterator {
+	var it hiter
+	mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), &it)
 	return &UnsafeMapIterator{
-		hiter:      mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj)),
+		hiter:      &it,
 		pKeyRType:  type2.pKeyRType,
 		pElemRType: type2.pElemRType,
 	}
DIFF

# 3. Kubernetes 1.20 builds in GOPATH mode (its hack/ scripts do the same), with the tree at
#    $GOPATH/src/k8s.io/kubernetes. nice: the machine is shared and this takes minutes.
mkdir -p gopath/src/k8s.io
ln -s "$src" gopath/src/k8s.io/kubernetes
export GOPATH=$work/gopath GOCACHE=$work/gocache GO111MODULE=off CGO_ENABLED=0 GOFLAGS='' GOENV=off
# Nothing from the caller's Go setup: a stray GOOS or GOROOT would build something else.
unset GOROOT GOBIN GOOS GOARCH GOAMD64 GOEXPERIMENT
cd gopath/src/k8s.io/kubernetes
go() { nice -n 10 "$GO" "$@"; }

# 4. The tarball lacks one generated file the apiserver needs: pkg/generated/openapi/
#    zz_generated.openapi.go (upstream's `make` generates it). Run openapi-gen as
#    build/root/Makefile.generated_files does for its KUBE target: every package of the tree
#    (staging seen as vendor/k8s.io, third-party vendor/ excluded) with a `// +k8s:` tag
#    file containing +k8s:openapi-gen=, except code-generator and sample-apiserver.
step "building openapi-gen" go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
openapi_pkgs=$(
  find . \( -path ./vendor -o -path './_*' -o -path './.*' \) -prune -o -type f -name '*.go' -print \
    | sed -e 's|^\./||' -e 's|^staging/src/|vendor/|' \
    | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
    | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' \
    | xargs -n1 dirname | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
step "generating pkg/generated/openapi" nice -n 10 "$work/openapi-gen" -i "$openapi_pkgs" \
  -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
  -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$work/api-violations.report"

# 5. The binary, stamped as hack/lib/version.sh would (clients read /version); the commit is
#    upstream's v1.20.2 tag, as Debian's kubectl of the same source reports it.
ldflags="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version \
           k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
  ldflags+=" -X $pkg.gitTreeState=archive -X $pkg.gitCommit=faecb196815e248d3ecfb03c680a4507229c2a56"
done
step "compiling kube-apiserver (the long step)" \
  go build -o "$out/kube-apiserver.tmp" -ldflags "$ldflags" ./cmd/kube-apiserver
step "checking the binary" "$out/kube-apiserver.tmp" --version
grep -q "^Kubernetes $KUBE_VERSION\$" "$log"

mv -f "$out/kube-apiserver.tmp" "$bin"
cd "$out"
rm -rf "$work"
say "built in $(($(date +%s) - start)) s"
echo "$bin"
