#!/usr/bin/env bash
# Runs Debian's kubectl (package kubernetes-client, 1.20.2: the apiserver's own version):
#
#   testenv/kubectl.sh --kubeconfig DIR/kubeconfig get --raw /readyz
#
# Which kubectl: the installed kubernetes-client if there is one; else, as root, install it,
# unless /usr/bin/kubectl already belongs to another package (e.g. Google Cloud SDK's
# `kubectl`, v1.32 on some of these machines: dpkg refuses to overwrite it, and 1.32 is far
# outside the one-minor-version skew kubectl supports against 1.20). In that case the .deb is
# only unpacked into the cache, next to the apiserver, and run from there.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"

debian_kubectl() {
  if dpkg-query -W -f '${Status}' kubernetes-client 2>/dev/null | grep -q 'ok installed'; then
    echo /usr/bin/kubectl
    return
  fi
  if [ "$(id -u)" = 0 ] && ! dpkg-query -S /usr/bin/kubectl >/dev/null 2>&1; then
    apt_install kubernetes-client
    echo /usr/bin/kubectl
    return
  fi
  local version dest
  version=$(apt-cache policy kubernetes-client 2>/dev/null | sed -n 's/^ *Candidate: //p')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    version=$(apt-cache policy kubernetes-client 2>/dev/null | sed -n 's/^ *Candidate: //p')
  fi
  case $version in ''|'(none)') die "apt knows no kubernetes-client package" ;; esac
  dest=$TESTENV_CACHE/kubernetes-client_${version//[^A-Za-z0-9.+~-]/_}
  if [ ! -x "$dest/usr/bin/kubectl" ]; then
    mkdir -p "$TESTENV_CACHE"
    local tmp
    tmp=$(mktemp -d "$TESTENV_CACHE/.kubectl.XXXXXX")
    (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "kubernetes-client=$version" \
       >/dev/null 2>&1 && dpkg-deb -x kubernetes-client_*.deb root) \
      || { rm -rf "$tmp"; die "could not fetch kubernetes-client $version"; }
    # Published by rename: concurrent callers either see the whole tree or unpack their own.
    mv -T "$tmp/root" "$dest" 2>/dev/null || true
    rm -rf "$tmp"
  fi
  echo "$dest/usr/bin/kubectl"
}

exec "$(debian_kubectl)" "$@"
