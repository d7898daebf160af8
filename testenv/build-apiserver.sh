#!/usr/bin/env bash
# Builds the kube-apiserver the Kubernetes store's tests run against, once per machine.
#
#   testenv/build-apiserver.sh            -> prints the binary's path as its last stdout line
#
# Why build at all: Debian packages no kube-apiserver, and the only network these machines have
# is the package registries. Debian bookworm's `kubernetes` source package (1.20.5+really1.20.2)
# ships the whole upstream tree with vendor/, so it builds offline with Debian's Go 1.19.
#
# How, where and with which cache key: kube-build.sh, shared with build-node.sh (the cluster's
# binaries), so that all are built by one recipe, from one source tree, with one Go cache. The
# binary is ${IPAM_TESTENV_CACHE:-/var/cache/ipam-rs-testenv}/<key>/kube-apiserver.
#
# Safe to run concurrently (flock; publish by rename). Needs a writable cache directory, and
# root when a prerequisite is missing (it runs apt-get install golang-1.19-go). Build time, disk
# and memory it takes: testenv/README.md.
set -euo pipefail
# shellcheck source=kube-build.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/kube-build.sh"
kube_build kube-apiserver
