#!/usr/bin/env bash
# Side-by-side timing of ipam-cni (alone, and answered by ipam-agent) and Debian's host-local
# on the same /16 range: RUNS runs of CYCLES ADD+DEL cycles each, on an empty pool and with
# HELD addresses held; prints Markdown with per-run times and the median ratios to
# host-local. AGENT= (empty) leaves the agent's column out.
#
#   apt-get install -y containernetworking-plugins
#   ipam-cni/bench/hostlocal.sh > ipam-cni/bench/RESULTS.md     # RUNS=9 CYCLES=20 HELD=4096
#
# The timing loop is a small Rust program (ipam-cni/examples/hostlocal_bench.rs) that spawns
# each plugin directly, as a runtime does: timed from a shell loop, the shell's own fork and
# exec per call (about 1 ms here) would be most of what is measured, for both plugins.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-target}
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --quiet --release -p ipam-cni --bin ipam-cni --example hostlocal_bench
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --quiet --release -p ipam-agent --bin ipam-agent
HOSTLOCAL=${HOSTLOCAL:-/usr/lib/cni/host-local}
[[ -x $HOSTLOCAL ]] || { echo "missing $HOSTLOCAL (apt-get install containernetworking-plugins)" >&2; exit 1; }
echo "<!-- $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(uname -sr); temp dir on $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}'); host-local from $(dpkg-query -W -f '${Package} ${Version}' containernetworking-plugins 2>/dev/null || echo unknown) -->"
AGENT=${AGENT-$target/release/ipam-agent} exec "$target/release/examples/hostlocal_bench" "$target/release/ipam-cni" "$HOSTLOCAL"
