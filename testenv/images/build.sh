#!/usr/bin/env bash
# Builds the cluster's container images without docker or a registry, as docker-archive
# tarballs (mkimage.py) that start.sh imports into each node's containerd with
# `ctr -n k8s.io images import`. Nothing is ever pulled: the names are the ones Pods use.
#
#   testenv/images/build.sh OUTDIR IPAM_CNI IPAMCTL IPAM_CONTROLLER IPAM_AGENT
#
#   pause.tar     localhost/ipam-rs/pause:1.0       the sandbox image (pause.c, gcc -static)
#   busybox.tar   localhost/ipam-rs/busybox:1.35    Debian's busybox-static, one link per applet
#   nginx.tar     docker.io/library/nginx:latest    Debian's nginx package and the libraries it
#                                                   links (the seed's Deployment says image: nginx)
#   ipam-cni.tar  localhost/ipam-rs/ipam-cni:TAG    deploy/Dockerfile's content: ipam-cni, ipamctl,
#                                                   ipam-controller, ipam-agent, install-cni.sh
#                                                   (+ busybox for its sh)
# OUTDIR/ipam-cni.ref holds the last one's name; TAG is the first 12 hex digits of the sha256
# of its five files, so a new build is a new tag (a DaemonSet rolling update).
#
# Deterministic: the same inputs give the same image IDs (mkimage.py). Needs gcc, libc6-dev
# (static libc), busybox-static, python3; fetches nginx's .debs with apt-get download into
# the testenv cache once.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
usage="usage: build.sh OUTDIR IPAM_CNI IPAMCTL IPAM_CONTROLLER IPAM_AGENT"
out=${1:?$usage}
ipam_cni=${2:?$usage}
ipamctl=${3:?$usage}
ipam_controller=${4:?$usage}
ipam_agent=${5:?$usage}
project=$(dirname "$(dirname "$here")")
cache=${IPAM_TESTENV_CACHE:-/var/cache/ipam-rs-testenv}
mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mk() { python3 "$here/mkimage.py" "$@" >/dev/null; }

# /etc/passwd and /etc/group for every image: root, nobody (nginx's workers), www-data.
printf 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$work/passwd"
printf 'root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n' >"$work/group"
base=(etc/passwd="$work/passwd" etc/group="$work/group" tmp/ root/ proc/ sys/ dev/ run/ var/tmp/)
# busybox's applets as symbolic links, for the images that need a shell.
busybox=(bin/busybox=/bin/busybox)
for app in $(/bin/busybox --list); do
  [ "$app" = busybox ] || busybox+=("bin/$app@/bin/busybox")
done
# The shared libraries a dynamically linked binary needs, at the paths ldd resolves them to
# (the files themselves, symbolic links followed), and the dynamic loader.
libs_of() { # BINARY
  ldd "$1" | awk '$2 == "=>" && $3 ~ "^/" {print $3} $1 ~ "^/" {print $1}' | sort -u \
    | while read -r lib; do echo "${lib#/}=$(readlink -f "$lib")"; done
}

# 1. pause
gcc -static -O2 -o "$work/pause" "$here/pause.c"
strip "$work/pause"
mk "$out/pause.tar" localhost/ipam-rs/pause:1.0 --entrypoint '["/pause"]' pause="$work/pause"

# 2. busybox
mk "$out/busybox.tar" localhost/ipam-rs/busybox:1.35 --cmd '["sh"]' "${base[@]}" "${busybox[@]}"

# 3. nginx, from Debian's packages (the binary from nginx, mime.types from nginx-common), with
#    a configuration of ours: foreground, logs to the container's output, port 80.
debs=$cache/debs
mkdir -p "$debs"
if ! ls "$debs"/nginx_*.deb "$debs"/nginx-common_*.deb >/dev/null 2>&1; then
  (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root nginx nginx-common >/dev/null 2>&1) \
    || { apt-get update -qq >/dev/null 2>&1 || true; (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root nginx nginx-common >/dev/null); }
fi
mkdir -p "$work/nginx"
for deb in "$debs"/nginx_*.deb "$debs"/nginx-common_*.deb; do dpkg-deb -x "$deb" "$work/nginx"; done
cat >"$work/nginx.conf" <<'CONF'
worker_processes 1;
error_log stderr notice;
pid /run/nginx.pid;
events { worker_connections 64; }
http {
  include /etc/nginx/mime.types;
  access_log /dev/stdout;
  server {
    listen 80 default_server;
    root /usr/share/nginx/html;
    index index.html;
  }
}
CONF
echo '<h1>nginx (Debian package) on ipam-rs testenv</h1>' >"$work/index.html"
mapfile -t nginx_libs < <(libs_of "$work/nginx/usr/sbin/nginx")
mk "$out/nginx.tar" docker.io/library/nginx:latest --cmd '["nginx", "-g", "daemon off;"]' \
  "${base[@]}" "${nginx_libs[@]}" usr/sbin/nginx="$work/nginx/usr/sbin/nginx" \
  etc/nginx/nginx.conf="$work/nginx.conf" etc/nginx/mime.types="$work/nginx/etc/nginx/mime.types" \
  usr/share/nginx/html/index.html="$work/index.html" var/log/nginx/ var/lib/nginx/

# 4. The project's image (deploy/Dockerfile: the four binaries and install-cni.sh in
#    /usr/local/bin, CMD install-cni.sh). The installer is POSIX sh: busybox gives it sh and
#    its coreutils. ipamctl, ipam-controller and ipam-agent link glibc here (the machine has
#    no musl target): their libraries come along, so `kubectl exec ... ipamctl`, the
#    controller's Deployment and the DaemonSet's agent run; ipam-cni runs on the node, not in
#    here.
tag=$(cat "$ipam_cni" "$ipamctl" "$ipam_controller" "$ipam_agent" "$project/deploy/install-cni.sh" | sha256sum | cut -c1-12)
ref=localhost/ipam-rs/ipam-cni:$tag
mapfile -t ctl_libs < <({ libs_of "$ipamctl"; libs_of "$ipam_controller"; libs_of "$ipam_agent"; } | sort -u)
mk "$out/ipam-cni.tar" "$ref" --cmd '["/usr/local/bin/install-cni.sh"]' "${base[@]}" "${busybox[@]}" "${ctl_libs[@]}" \
  usr/local/bin/ipam-cni="$ipam_cni" usr/local/bin/ipamctl="$ipamctl" \
  usr/local/bin/ipam-controller="$ipam_controller" usr/local/bin/ipam-agent="$ipam_agent" \
  usr/local/bin/install-cni.sh="$project/deploy/install-cni.sh"
echo "$ref" >"$out/ipam-cni.ref"
