# shellcheck shell=bash
# Sourced by build-apiserver.sh and build-node.sh: how every Kubernetes binary of testenv is
# built, once per machine, from Debian bookworm's `kubernetes` source package (1.20.5+really
# 1.20.2, the whole upstream tree with vendor/) with Debian's Go 1.19.
#
#   kube_build BINARY...   builds those of kube-apiserver, kubelet, kube-controller-manager,
#                          kube-scheduler, kube-proxy that are not cached yet; prints
#                          each one's path (in the order asked)
#
# Where they go: ${IPAM_TESTENV_CACHE:-/var/cache/ipam-rs-testenv}/<key>/<binary>, outside
# the repository (never committed). <key> is the first 16 hex digits of the sha256 of this
# file's code, comments and blank lines left out: an edit to how the binaries are built
# (version, patch, flags) builds into a new directory, while the scripts that call this, and
# the comments here, can change without costing a rebuild.
#
# One work tree per key: the sources and one Go build cache (GOCACHE), shared by all five
# binaries, so a later call for the others reuses what an earlier one compiled (the node
# binaries after the apiserver: minutes instead of a quarter of an hour). It is deleted once
# all five are built; until then it is kept (about 2 GB).
#
# Safe to run concurrently: a build holds flock on <key>/lock and publishes each binary by
# rename, so a second caller waits for the first and then reuses its output; a caller whose
# binaries are all there takes no lock at all. Quiet: the log is <key>/build.log, whose tail is
# printed when a step fails. Go runs under `nice -n 10`: the machines are shared, and the
# compile takes minutes.

KUBE_SRC_PKG=kubernetes
KUBE_SRC_SUITE=bookworm
# The orig tarball and its sha256 as Debian's .dsc lists it: only upstream sources are built
# (Debian's debian/patches concern kubectl's printing).
KUBE_ORIG_TARBALL=kubernetes_1.20.5+really1.20.2.orig.tar.gz
KUBE_ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
KUBE_VERSION=v1.20.2
KUBE_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
# Pinned toolchain, not whatever `go` is on PATH: the reflect2 patch below matches Go 1.19's
# runtime map iterator, and a cache key must mean one toolchain.
KUBE_GO_PKG=golang-1.19-go
KUBE_GO=/usr/lib/go-1.19/bin/go
KUBE_BINARIES=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy)

kube_build_say() { echo "${0##*/}: $*" >&2; }

# The cache directory of this recipe.
kube_build_dir() {
  local key
  key=$(grep -v -E '^[[:space:]]*(#|$)' "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
  echo "${IPAM_TESTENV_CACHE:-/var/cache/ipam-rs-testenv}/$key"
}

kube_build() { # BINARY...
  local out bin b missing=()
  out=$(kube_build_dir)
  for b in "$@"; do
    case " ${KUBE_BINARIES[*]} " in *" $b "*) ;; *) kube_build_say "unknown binary '$b' (one of: ${KUBE_BINARIES[*]})"; return 1 ;; esac
  done
  # Fast path, no lock: a binary only ever appears by rename once complete.
  for b in "$@"; do [ -x "$out/$b" ] || missing+=("$b"); done
  if [ ${#missing[@]} -gt 0 ]; then
    mkdir -p "$out"
    # The build runs in a subshell holding the lock: its cd, exports and traps stay there.
    # (Not `( ... ) || return`: bash ignores set -e inside a tested command.)
    ( kube_build_locked "$out" "$@" )
  fi
  for b in "$@"; do echo "$out/$b"; done
}

kube_build_locked() { # OUT BINARY...
  local out=$1; shift
  exec 9>"$out/lock"
  if ! flock -n 9; then
    kube_build_say "another build in $out is running; waiting for it"
    flock 9
  fi
  local b missing=()
  for b in "$@"; do [ -x "$out/$b" ] || missing+=("$b"); done
  [ ${#missing[@]} -gt 0 ] || return 0

  local work=$out/work log=$out/build.log start
  echo "=== $(date -u +%FT%TZ) building ${missing[*]}" >>"$log"
  # On failure show the log's tail; the work tree stays for a look (and is reused next time).
  trap 'rc=$?; [ $rc -eq 0 ] || { kube_build_say "FAILED (exit $rc); last lines of $log:"; tail -n 40 "$log" >&2; }' EXIT
  set -e
  step() { # WHAT CMD...: quietly, output appended to the log
    kube_build_say "$1"
    shift
    echo "=== $(date -u +%T) $*" >>"$log"
    "$@" >>"$log" 2>&1
  }
  apt_install() {
    if [ "$(id -u)" != 0 ]; then
      kube_build_say "missing $*; install it (as root: apt-get install $*) or run this script as root"
      return 1
    fi
    # DPkg::Lock::Timeout: several of these scripts may install at the same time.
    local opts=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=600)
    DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" || {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@"
    }
  }
  local need=()
  [ -x "$KUBE_GO" ] || need+=("$KUBE_GO_PKG")
  command -v patch >/dev/null || need+=(patch)
  if [ ${#need[@]} -gt 0 ]; then step "installing ${need[*]}" apt_install "${need[@]}"; fi

  kube_build_say "building ${missing[*]} $KUBE_VERSION into $out (minutes: testenv/README.md; log: $log)"
  start=$(date +%s)
  local src=$work/kubernetes-1.20.2
  if [ ! -f "$work/.unpacked" ]; then
    rm -rf "$work"
    mkdir -p "$work"/apt/lists/partial "$work"/apt/cache/archives/partial "$work"/apt/sources.list.d
    cd "$work"
    # 1. The source, through apt with a private configuration holding one deb-src entry, so
    #    the machine's own sources.list (which usually has no deb-src) is left alone. Same
    #    mirror as the machine's Debian entry when one is configured, else deb.debian.org.
    local mirror
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
               2>/dev/null \
             | awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }
                    /^deb / { for (i = 2; i <= NF; i++) if ($i ~ "^https?://") { print $i; break } }' \
             | grep -E '^https?://[^ ]*/debian/?$' | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "deb-src ${mirror%/} $KUBE_SRC_SUITE main" >apt/sources.list.d/src.list
    local apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/apt/sources.list.d"
                    -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
                    -o APT::Sandbox::User=root)
    step "fetching the $KUBE_SRC_PKG source package from ${mirror%/} $KUBE_SRC_SUITE" \
      sh -c 'apt-get "$@" update -qq && apt-get "$@" source --download-only '"$KUBE_SRC_PKG" sh "${apt_opts[@]}"
    echo "$KUBE_ORIG_SHA256  $KUBE_ORIG_TARBALL" | step "checking $KUBE_ORIG_TARBALL" sha256sum -c -
    step "unpacking" tar xzf "$KUBE_ORIG_TARBALL"
    rm -f "$KUBE_ORIG_TARBALL"
    # 2. Go >= 1.18 changed reflect.mapiterinit to fill a caller-allocated iterator. The
    #    vendored github.com/modern-go/reflect2 v1.0.1 still calls the old 2-argument form
    #    through go:linkname, which compiles but corrupts memory: the apiserver dies with
    #    SIGSEGV in mapiterinit on the first custom resource it encodes. This is reflect2
    #    v1.0.2's fix.
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
    # 3. Kubernetes 1.20 builds in GOPATH mode (its hack/ scripts do the same), with the tree
    #    at $GOPATH/src/k8s.io/kubernetes.
    mkdir -p gopath/src/k8s.io
    ln -sfn "$src" gopath/src/k8s.io/kubernetes
    touch "$work/.unpacked"
  fi

  # CGO_ENABLED=0 for all five: static binaries, no C toolchain needed (the kubelet's cgo
  # parts are optional). Nothing from the caller's Go setup: a stray GOOS or GOROOT would
  # build something else.
  export GOPATH=$work/gopath GOCACHE=$work/gocache GO111MODULE=off CGO_ENABLED=0 GOFLAGS='' GOENV=off
  unset GOROOT GOBIN GOOS GOARCH GOAMD64 GOEXPERIMENT
  cd "$work/gopath/src/k8s.io/kubernetes"
  go() { nice -n 10 "$KUBE_GO" "$@"; }

  # 4. The tarball lacks one generated file the apiserver needs (the others do not import
  #    it): pkg/generated/openapi/zz_generated.openapi.go (upstream's `make` generates it).
  #    Run openapi-gen as build/root/Makefile.generated_files does for its KUBE target: every
  #    package of the tree (staging seen as vendor/k8s.io, third-party vendor/ excluded) with
  #    a `// +k8s:` tag file containing +k8s:openapi-gen=, except code-generator and
  #    sample-apiserver.
  case " ${missing[*]} " in
    *" kube-apiserver "*)
      if [ ! -f pkg/generated/openapi/zz_generated.openapi.go ]; then
        step "building openapi-gen" go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
        local openapi_pkgs
        openapi_pkgs=$(
          find . \( -path ./vendor -o -path './_*' -o -path './.*' \) -prune -o -type f -name '*.go' -print \
            | sed -e 's|^\./||' -e 's|^staging/src/|vendor/|' \
            | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
            | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' \
            | xargs -n1 dirname | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
        step "generating pkg/generated/openapi" nice -n 10 "$work/openapi-gen" -i "$openapi_pkgs" \
          -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
          -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$work/api-violations.report"
      fi ;;
  esac

  # 5. The binaries, in one `go build` (it compiles their shared packages once, two at a time
  #    on two cores), stamped as hack/lib/version.sh would (clients read /version); the commit
  #    is upstream's v1.20.2 tag, as Debian's kubectl of the same source reports it.
  local ldflags="-s -w" pkg pkgs=()
  for pkg in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version \
             k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
    ldflags+=" -X $pkg.gitTreeState=archive -X $pkg.gitCommit=$KUBE_COMMIT"
  done
  for b in "${missing[@]}"; do pkgs+=("./cmd/$b"); done
  rm -rf "$work/bin" && mkdir -p "$work/bin"
  step "compiling ${missing[*]} (the long step)" go build -o "$work/bin/" -ldflags "$ldflags" "${pkgs[@]}"
  for b in "${missing[@]}"; do
    local version
    version=$("$work/bin/$b" --version 2>&1)
    [ "$version" = "Kubernetes $KUBE_VERSION" ] \
      || { kube_build_say "$b --version says '$version', not Kubernetes $KUBE_VERSION"; return 1; }
    mv -f "$work/bin/$b" "$out/$b"
  done
  kube_build_say "built ${missing[*]} in $(($(date +%s) - start)) s"
  echo "=== built ${missing[*]} in $(($(date +%s) - start)) s" >>"$log"

  # Once every binary of the recipe is there, the sources and the Go cache have no more use.
  for b in "${KUBE_BINARIES[@]}"; do [ -x "$out/$b" ] || return 0; done
  cd "$out"
  rm -rf "$work"
}
