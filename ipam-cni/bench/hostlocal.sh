#!/usr/bin/env bash
# Side-by-side timing of ipam-cni and Debian's host-local on the same /16 range.
#
# For each scenario (an empty pool; 4,096 addresses held) and each of RUNS paired runs, it
# times CYCLES ADD+DEL cycles of each plugin, invoked as a runtime does (a fresh process per
# call, env + stdin), and prints the per-run times, the ratio ours/host-local per run, and the
# median ratio. The order of the two plugins alternates between runs so that neither always
# runs on a warmer cache.
#
#   cargo build --release -p ipam-cni
#   apt-get install -y containernetworking-plugins
#   ipam-cni/bench/hostlocal.sh            # RUNS=9 CYCLES=20 HELD=4096 by default
#
# Both plugins write to a temporary directory (TMPDIR); no network is touched: IPAM plugins
# only record addresses.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
OURS=${OURS:-$here/../../target/release/ipam-cni}
HOSTLOCAL=${HOSTLOCAL:-/usr/lib/cni/host-local}
RUNS=${RUNS:-9}
CYCLES=${CYCLES:-20}
HELD=${HELD:-4096}
SUBNET=198.18.0.0/16 # RFC 2544's benchmarking range

for bin in "$OURS" "$HOSTLOCAL"; do
    [[ -x $bin ]] || { echo "missing $bin" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

conf() { # plugin-type data-dir
    printf '{"cniVersion":"1.0.0","name":"benchnet","type":"bridge","ipam":{"type":"%s","dataDir":"%s","ranges":[[{"subnet":"%s"}]]}}' \
        "$1" "$2" "$SUBNET"
}

invoke() { # binary conf command container-id
    printf '%s' "$2" | env -i PATH="$PATH" CNI_COMMAND="$3" CNI_CONTAINERID="$4" CNI_IFNAME=eth0 \
        CNI_NETNS=/var/run/netns/bench CNI_PATH=/usr/lib/cni "$1" >/dev/null
}

now_ns() { date +%s%N; }

# Times CYCLES ADD+DEL cycles; prints milliseconds.
cycles() { # binary conf
    local start end i
    start=$(now_ns)
    for ((i = 0; i < CYCLES; i++)); do
        invoke "$1" "$2" ADD "bench-$i"
        invoke "$1" "$2" DEL "bench-$i"
    done
    end=$(now_ns)
    echo $(((end - start) / 1000))
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

scenario() { # name held
    local name=$1 held=$2 ours_dir=$work/$1-ours hl_dir=$work/$1-hl
    mkdir -p "$ours_dir" "$hl_dir"
    local ours_conf hl_conf
    ours_conf=$(conf ipam-cni "$ours_dir")
    hl_conf=$(conf host-local "$hl_dir")
    if ((held > 0)); then
        echo "filling both with $held held addresses..." >&2
        for ((i = 0; i < held; i++)); do
            invoke "$OURS" "$ours_conf" ADD "fill-$i"
            invoke "$HOSTLOCAL" "$hl_conf" ADD "fill-$i"
        done
    fi
    echo "## $name ($held held, $CYCLES ADD+DEL cycles per run)"
    echo
    echo "| run | ipam-cni ms | host-local ms | ratio |"
    echo "|---|---|---|---|"
    local ratios=() r ours hl
    for ((r = 1; r <= RUNS; r++)); do
        if ((r % 2)); then
            ours=$(cycles "$OURS" "$ours_conf")
            hl=$(cycles "$HOSTLOCAL" "$hl_conf")
        else
            hl=$(cycles "$HOSTLOCAL" "$hl_conf")
            ours=$(cycles "$OURS" "$ours_conf")
        fi
        ratio=$(awk -v a="$ours" -v b="$hl" 'BEGIN {printf "%.3f", a / b}')
        ratios+=("$ratio")
        printf '| %d | %.1f | %.1f | %s |\n' "$r" "$(awk -v u="$ours" 'BEGIN{print u/1000}')" \
            "$(awk -v u="$hl" 'BEGIN{print u/1000}')" "$ratio"
    done
    echo
    echo "median ratio ipam-cni / host-local: **$(printf '%s\n' "${ratios[@]}" | median)**"
    echo
}

echo "# ipam-cni vs host-local, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); data dir on $(df -T "$work" | awk 'NR==2 {print $2}')"
echo
scenario empty 0
scenario held "$HELD"
