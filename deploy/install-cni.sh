#!/bin/sh
# install-cni.sh: the container of the ipam-cni DaemonSet (deploy/daemonset.yaml), as Calico's
# install-cni. On the node it runs on:
#
#   1. copies the ipam-cni binary of its image into the host's CNI binary directory
#      (atomically: a runtime may be running the old one);
#   2. writes a kubeconfig for the plugin, from the Pod's service-account token and CA and the
#      API server's address, into the host's CNI configuration directory (mode 0600,
#      atomically), for network configurations that say
#      "store": {"kubernetes": {"kubeconfig": "/etc/cni/net.d/ipam-cni.kubeconfig"}};
#   3. stays, and writes the kubeconfig again whenever the kubelet rotates the token or the CA,
#      so the file on the host never holds an expired token. SIGTERM ends it.
#
# Environment (defaults are the DaemonSet's):
#   IPAM_CNI_BINARY       the binary to install          (/usr/local/bin/ipam-cni)
#   CNI_BIN_DIR           the host's /opt/cni/bin, mounted (/host/opt/cni/bin)
#   CNI_NET_DIR           the host's /etc/cni/net.d, mounted (/host/etc/cni/net.d)
#   KUBECONFIG_NAME       the kubeconfig's file name     (ipam-cni.kubeconfig)
#   SERVICEACCOUNT_DIR    token and ca.crt               (/var/run/secrets/kubernetes.io/serviceaccount)
#   KUBERNETES_API_SERVER the API server as the host reaches it, e.g. https://10.0.0.1:6443;
#                         default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
#                         (the kubernetes Service, which the host reaches through kube-proxy)
#   REFRESH_SECONDS       how often to look for a new token (10)
#
# POSIX sh and coreutils only (base64, cat, cp, chmod, mkdir, mv, sleep).
set -eu

binary=${IPAM_CNI_BINARY:-/usr/local/bin/ipam-cni}
bin_dir=${CNI_BIN_DIR:-/host/opt/cni/bin}
net_dir=${CNI_NET_DIR:-/host/etc/cni/net.d}
name=${KUBECONFIG_NAME:-ipam-cni.kubeconfig}
sa_dir=${SERVICEACCOUNT_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}
refresh=${REFRESH_SECONDS:-10}

say() { echo "install-cni: $*" >&2; }
die() { say "$*"; exit 1; }

server=${KUBERNETES_API_SERVER:-}
if [ -z "$server" ]; then
  host=${KUBERNETES_SERVICE_HOST:-}
  port=${KUBERNETES_SERVICE_PORT:-443}
  [ -n "$host" ] || die "neither KUBERNETES_API_SERVER nor KUBERNETES_SERVICE_HOST is set"
  case $host in *:*) host="[$host]" ;; esac # IPv6
  server="https://$host:$port"
fi
[ -r "$binary" ] || die "no binary at $binary"
[ -r "$sa_dir/token" ] || die "no service-account token at $sa_dir/token"
[ -r "$sa_dir/ca.crt" ] || die "no CA at $sa_dir/ca.crt"

# 1. The binary: a new file renamed over the old one, so a running plugin keeps its own.
mkdir -p "$bin_dir" "$net_dir"
cp "$binary" "$bin_dir/.ipam-cni.installing"
chmod 0755 "$bin_dir/.ipam-cni.installing"
mv -f "$bin_dir/.ipam-cni.installing" "$bin_dir/ipam-cni"
say "installed $bin_dir/ipam-cni"

# 2. The kubeconfig, written whole under a temporary name and renamed into place: the plugin
# reads it on every call and must never see half of it.
write_kubeconfig() {
  token=$(cat "$sa_dir/token")
  ca=$(base64 <"$sa_dir/ca.crt" | tr -d '\n')
  tmp="$net_dir/.$name.writing"
  (
    umask 077
    cat >"$tmp" <<EOF
# Written by the ipam-cni DaemonSet (install-cni.sh) on this node; rewritten when the token
# rotates. The identity is the ServiceAccount ipam-rs/ipam-cni (deploy/rbac.yaml).
apiVersion: v1
kind: Config
clusters:
- name: ipam-cni
  cluster:
    server: "$server"
    certificate-authority-data: "$ca"
users:
- name: ipam-cni
  user:
    token: "$token"
contexts:
- name: ipam-cni
  context:
    cluster: ipam-cni
    user: ipam-cni
current-context: ipam-cni
EOF
  )
  mv -f "$tmp" "$net_dir/$name"
}

# 3. Stay, and follow the kubelet's rotations. `sleep & wait` lets SIGTERM end it at once.
trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true; say "stopping"; exit 0' TERM INT
sleeper=
written=
while :; do
  now=$(cat "$sa_dir/token" "$sa_dir/ca.crt")
  if [ "$now" != "$written" ]; then
    write_kubeconfig
    written=$now
    say "wrote $net_dir/$name for $server"
  fi
  sleep "$refresh" &
  sleeper=$!
  wait "$sleeper" || true
done
