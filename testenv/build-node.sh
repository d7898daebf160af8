#!/usr/bin/env bash
# Builds what `start.sh --cluster` runs besides Debian's packages, once per machine: kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy, and the kube-apiserver if it is not
# cached yet, all five in one pass (one `go build`, one Go cache).
#
#   testenv/build-node.sh        -> prints the directory holding the five binaries, last
#
# The recipe, the cache and its key are kube-build.sh's, shared with build-apiserver.sh: same
# source package, patch, Go and flags. CGO_ENABLED=0 builds all of them. Measured times:
# testenv/README.md.
set -euo pipefail
# shellcheck source=kube-build.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/kube-build.sh"
kube_build "${KUBE_BINARIES[@]}" >/dev/null
kube_build_dir
