# shellcheck shell=bash disable=SC2034  # variables are for the scripts that source this
# Shared by start.sh, stop.sh, kubectl.sh, smoke.sh and the cluster's scripts (sourced, not
# run). The builds of the Kubernetes binaries use kube-build.sh instead: its cache key is the
# hash of that one file's code, so nothing here can change it.

TESTENV_DIR=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
TESTENV_CACHE=${IPAM_TESTENV_CACHE:-/var/cache/ipam-rs-testenv}
# Port claims of every instance on this machine, whatever its DIR (see claim_ports in start.sh).
TESTENV_PORTS=${IPAM_TESTENV_PORTS:-/tmp/ipam-rs-testenv-ports}

say() { echo "${0##*/}: $*" >&2; }
die() { say "$*"; exit 1; }

# apt-get install, quietly; apt-get update first only if the install fails (fresh machine).
apt_install() { # PACKAGE...
  [ "$(id -u)" = 0 ] || die "missing $*: run as root or apt-get install $*"
  say "installing $*"
  # The lock timeout lets several instances start at once on a fresh machine.
  local opts=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=600) out
  if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" 2>&1); then
    apt-get update -qq >/dev/null 2>&1 || true
    out=$(DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" 2>&1) \
      || { echo "$out" >&2; die "apt-get install $* failed"; }
  fi
}

# Installs the packages whose command is missing: COMMAND:PACKAGE ...
need_commands() {
  local want=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || want+=("${pair#*:}")
  done
  [ ${#want[@]} -eq 0 ] || apt_install "${want[@]}"
}

# True if PIDFILE names a live process that is really ours: pids get reused, so the process's
# command line must mention a path in this instance's DIR (each process we start has one as an
# argument: etcd's --data-dir, the apiserver's --tls-cert-file).
pid_is_ours() { # PIDFILE DIR
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -e " $2/" -e "=$2/"
}

# Signals the process (SIGTERM unless told otherwise; SIGKILL if still there after 10 s) and
# waits until it has exited, so that its ports are free when this returns. The pid is checked
# once, before signalling: a dying process's command line reads empty while it still holds its
# sockets. The pid file goes either way.
stop_pidfile() { # PIDFILE DIR NAME [SIGNAL]
  if pid_is_ours "$1" "$2"; then
    local pid gone=false
    pid=$(cat "$1")
    kill "-${4:-TERM}" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      exited "$pid" && { gone=true; break; }
      sleep 0.1
    done
    if ! $gone; then
      say "$3 (pid $pid) still there 10 s after SIG${4:-TERM}; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do exited "$pid" && break; sleep 0.1; done
    fi
  fi
  rm -f "$1"
}

# Gone, or a zombie (dead, sockets closed, waiting for its parent to reap it). The parent may
# reap it between two looks, hence the last one.
exited() {
  [ -d "/proc/$1" ] || return 0
  grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null && return 0
  [ ! -d "/proc/$1" ]
}

# Absolute path of an instance directory; with "create", made if missing.
instance_dir() { # DIR [create]
  [ -n "${1:-}" ] || die "usage: ${0##*/} [options] DIR"
  [ "${2:-}" = create ] && mkdir -p "$1"
  [ -d "$1" ] || die "$1: no such directory"
  readlink -f "$1"
}
