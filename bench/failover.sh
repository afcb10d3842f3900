#!/usr/bin/env bash
# Failover gap benchmark: ucarp vs keepalived (VRRPv3) vs tandem, side by side in one run.
#
# Topology (network namespaces, unique per run, removed by a trap):
#
#     client 192.0.2.10 ── switch (bridge br0) ── fw1 192.0.2.2   (preferred)
#                                              └─ fw2 192.0.2.3
#     VIP 192.0.2.100/24, vhid / VRID 7, advert interval 1 s
#
# Per run and implementation: start both nodes, wait until fw1 holds the VIP and the client
# pings it, start `ping -D -i 0.01` from the client, set fw1's eth0 down (host side), and
# measure the gap = first reply after the link went down minus last reply before it (from
# ping's own timestamps). Each run restarts the daemons from scratch.
#
# Usage: sudo bench/failover.sh [-n RUNS] [--only ucarp,keepalived,tandem,tandem-vrrp] [--write]
#                               [--tandem PATH] [--keep] [--interval-ms MS]
#   -n RUNS     runs per implementation (default 5)
#   --only L    comma-separated subset (tandem-vrrp: tandem with protocol = "vrrp")
#   --interval-ms MS
#               VRRP advert interval for keepalived and tandem-vrrp (default 1000); with it,
#               both VRRP implementations run at priorities 254 (fw1) and 154 (fw2), which is
#               what tandem derives from advskew 0 and 100, and the client pings every 2 ms
#               when MS < 100 (bench/vrrp.sh runs it for 1000, 100, 50 and 10 ms)
#   --write     replace the marked section of bench/README.md with the results
#   --tandem P  tandem binary (default: target/release/tandem of this repo)
#   --keep      keep the temp dir with logs and ping outputs
# Needs: iproute2, iputils-ping, ucarp, keepalived, iputils-arping (for the ucarp up-script).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=5
ONLY="ucarp,keepalived,tandem"
WRITE=0
KEEP=0
TANDEM="$ROOT/target/release/tandem"
INTERVAL_MS=1000
VRRP_MODE=0

while [ $# -gt 0 ]; do
    case "$1" in
        -n|--runs) RUNS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --write) WRITE=1; shift ;;
        --tandem) TANDEM=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --interval-ms) INTERVAL_MS=$2; VRRP_MODE=1; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$RUNS" in ''|*[!0-9]*|0) echo "-n needs a positive integer" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "failover.sh must run as root (network namespaces)" >&2; exit 1; }

VIP=192.0.2.100
PLEN=24
VHID=7
FW2_SKEW=100      # CARP advskew of fw2 (fw1: 0)
FW1_PRIO=200      # VRRP priority of fw1
FW2_PRIO=100      # VRRP priority of fw2
ADVBASE=1
case "$INTERVAL_MS" in ''|*[!0-9]*) echo "--interval-ms needs a number of ms" >&2; exit 2 ;; esac
if [ "$VRRP_MODE" = 1 ]; then FW1_PRIO=254; FW2_PRIO=154; fi
ADVERT_INT=$(awk -v m="$INTERVAL_MS" 'BEGIN { printf "%g", m / 1000 }')
PING_INTERVAL=0.01
[ "$INTERVAL_MS" -lt 100 ] && PING_INTERVAL=0.002

RUN=0
P="fb$$"          # namespace prefix, unique per run of this script
NS_SW="$P-sw" NS_C="$P-client" NS_1="$P-fw1" NS_2="$P-fw2"
TMP=$(mktemp -d /tmp/failover.XXXXXX)

log() { echo "[$(date +%T)] $*" >&2; }

cleanup() {
    set +e
    for ns in "$NS_C" "$NS_1" "$NS_2" "$NS_SW"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    done
    for ns in "$NS_C" "$NS_1" "$NS_2" "$NS_SW"; do ip netns del "$ns" 2>/dev/null; done
    if [ "$KEEP" = 1 ]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

setup_topology() {
    local ns i=0
    for ns in "$NS_SW" "$NS_C" "$NS_1" "$NS_2"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip -n "$NS_SW" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$NS_SW" link set br0 up
    for ns in "$NS_C" "$NS_1" "$NS_2"; do
        ip -n "$ns" link add eth0 type veth peer name "p$i" netns "$NS_SW"
        ip -n "$NS_SW" link set "p$i" master br0
        ip -n "$NS_SW" link set "p$i" up
        ip -n "$ns" link set eth0 up
        i=$((i + 1))
    done
    ip -n "$NS_C" addr add 192.0.2.10/24 dev eth0
    ip -n "$NS_1" addr add 192.0.2.2/24 dev eth0
    ip -n "$NS_2" addr add 192.0.2.3/24 dev eth0
}

# Puts the topology back to its start state between runs.
reset_topology() {
    local ns
    for ns in "$NS_1" "$NS_2"; do
        for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
        wait_for 5 ns_empty "$ns" || log "processes still alive in $ns: $(ip netns pids "$ns" | xargs)"
        ip -n "$ns" link set eth0 up
        ip -n "$ns" addr del "$VIP/$PLEN" dev eth0 2>/dev/null || true
    done
    ip -n "$NS_C" neigh flush dev eth0 2>/dev/null || true
    rm -f "$TMP"/*.pid   # keepalived refuses to start while a stale pid file names a live pid
}

ns_empty() { [ -z "$(ip netns pids "$1")" ]; }

# Not `ip ... | grep -q`: under pipefail, grep -q exiting first makes ip die of SIGPIPE and the
# pipeline fail even though the address is there.
has_vip() { [[ "$(ip -n "$1" -o addr show 2>/dev/null)" == *" $VIP/"* ]]; }

# wait_for SECONDS CMD...: poll every 50 ms
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    while ! "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

fw1_is_master() {
    local mac
    has_vip "$NS_1" && ! has_vip "$NS_2" && in_ns "$NS_C" ping -n -q -c 1 -W 1 "$VIP" >/dev/null 2>&1 || return 1
    # the client must be talking to fw1 (its own MAC, or the CARP virtual MAC 00:00:5e:00:01:VHID
    # that only the master uses), not to fw2 through a stale neighbour entry
    mac=$(ip -n "$NS_C" neigh show "$VIP" | awk '{print $5}')
    [ "$mac" = "$(ip -n "$NS_1" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)" ] ||
        [ "$mac" = "$(printf '00:00:5e:00:01:%02x' "$VHID")" ]
}

# ---- implementations: start_<impl> NODE(1|2) ----

start_ucarp() {
    local n=$1 ns src skew
    if [ "$n" = 1 ]; then ns=$NS_1 src=192.0.2.2 skew=0; else ns=$NS_2 src=192.0.2.3 skew=$FW2_SKEW; fi
    in_ns "$ns" ucarp -i eth0 -s "$src" -v "$VHID" -p s3cret -a "$VIP" -b "$ADVBASE" -k "$skew" -P -n \
        --upscript="$TMP/vip-up.sh" --downscript="$TMP/vip-down.sh" >"$TMP/ucarp-fw$n-run$RUN.log" 2>&1 &
    disown
}

start_keepalived() {
    local n=$1 ns prio
    if [ "$n" = 1 ]; then ns=$NS_1 prio=$FW1_PRIO; else ns=$NS_2 prio=$FW2_PRIO; fi
    cat >"$TMP/keepalived-fw$n.conf" <<EOF
global_defs {
    router_id fw$n
    vrrp_version 3
    script_user root
    enable_script_security
}
vrrp_instance VI_$VHID {
    state BACKUP
    interface eth0
    virtual_router_id $VHID
    priority $prio
    advert_int $ADVERT_INT
    virtual_ipaddress {
        $VIP/$PLEN dev eth0
    }
}
EOF
    in_ns "$ns" keepalived -P -n -l -D -G -f "$TMP/keepalived-fw$n.conf" \
        -p "$TMP/keepalived-fw$n.pid" -r "$TMP/keepalived-fw$n.vrrp.pid" -c "$TMP/keepalived-fw$n.chk.pid" \
        >"$TMP/keepalived-fw$n-run$RUN.log" 2>&1 &
    disown
}

start_tandem() {
    local n=$1 ns skew
    if [ "$n" = 1 ]; then ns=$NS_1 skew=0; else ns=$NS_2 skew=$FW2_SKEW; fi
    mkdir -p "$TMP/tandem-fw$n"
    cat >"$TMP/tandem-fw$n.toml" <<EOF
[node]
name = "fw$n"
advskew = $skew
preempt = true
control_socket = "$TMP/tandem-fw$n/control.sock"

[interfaces]
lan = "eth0"

[carp]
passphrase = "s3cret"
advbase = $ADVBASE

[[vips]]
vhid = $VHID
interface = "lan"
addresses = ["$VIP/$PLEN"]
EOF
    in_ns "$ns" "$TANDEM" run --config "$TMP/tandem-fw$n.toml" >"$TMP/tandem-fw$n-run$RUN.log" 2>&1 &
    disown
}

start_tandem-vrrp() {
    local n=$1 ns skew
    if [ "$n" = 1 ]; then ns=$NS_1 skew=0; else ns=$NS_2 skew=$FW2_SKEW; fi
    mkdir -p "$TMP/tandem-vrrp-fw$n"
    cat >"$TMP/tandem-vrrp-fw$n.toml" <<EOF
[node]
name = "fw$n"
advskew = $skew
preempt = true
control_socket = "$TMP/tandem-vrrp-fw$n/control.sock"

[interfaces]
lan = "eth0"

[carp]
passphrase = "unused-by-vrrp"

[[vips]]
vhid = $VHID
interface = "lan"
protocol = "vrrp"
interval_ms = $INTERVAL_MS
addresses = ["$VIP/$PLEN"]
EOF
    in_ns "$ns" "$TANDEM" run --config "$TMP/tandem-vrrp-fw$n.toml" >"$TMP/tandem-vrrp-fw$n-run$RUN.log" 2>&1 &
    disown
}

bound_ms() {
    case "$1" in
        ucarp|tandem) echo $(( 3 * ADVBASE * 1000 + FW2_SKEW * 1000 / 256 )) ;;
        # tandem-vrrp's fw2 has advskew 100: priority 154, as keepalived's fw2 in VRRP mode
        keepalived|tandem-vrrp) echo $(( 3 * INTERVAL_MS + (256 - FW2_PRIO) * INTERVAL_MS / 256 )) ;;
    esac
}

bound_text() {
    case "$1" in
        ucarp|tandem) echo "3×advbase + advskew/256 = 3×$ADVBASE + $FW2_SKEW/256" ;;
        keepalived|tandem-vrrp) echo "3×interval + (256−prio)/256×interval = (3 + $((256 - FW2_PRIO))/256) × $INTERVAL_MS ms" ;;
    esac
}

# One run: prints the gap in ms on stdout, or fails.
one_run() {
    local impl=$1 run=$2 out="$TMP/$impl-run$run.ping" t_down pid gap
    reset_topology
    RUN=$run
    "start_$impl" 1
    "start_$impl" 2
    if ! wait_for 20 fw1_is_master; then
        log "$impl run $run: fw1 never became master with the client reaching it (logs in $TMP)"
        return 1
    fi
    sleep 1.5   # let the backup settle into BACKUP with a fresh master-down timer phase
    # not through the in_ns function: a backgrounded function is a subshell, and killing it
    # would leave ping running; `ip netns exec` execs ping in place, so $! is ping itself
    ip netns exec "$NS_C" ping -n -D -i "$PING_INTERVAL" -W 1 "$VIP" >"$out" 2>&1 &
    pid=$!
    # a random phase (0.5 to 1.5 s) so the link does not always go down at the same point of
    # the advert cycle: gaps then sample the whole range [bound - interval, bound] + latency
    sleep "0.$(printf %03d $((RANDOM % 1000)))"
    sleep 0.5
    t_down=$(date +%s.%N)
    ip -n "$NS_1" link set eth0 down
    t_done=$(date +%s.%N)
    echo "$t_down $t_done" >"$TMP/$impl-run$run.tdown"
    # wait for a reply sent after the link was down (at most 30 s)
    if ! wait_for 30 awk -v t="$t_done" -F'[][]' '/bytes from/ && $2+0 > t { f=1 } END { exit !f }' "$out"; then
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
        log "$impl run $run: no reply within 30 s after fw1 went down"
        return 1
    fi
    sleep 0.2
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    # the longest silence between consecutive replies, from the last reply before the link
    # went down to the first reply after it was down
    gap=$(awk -v t="$t_down" -v t2="$t_done" -F'[][]' '/bytes from/ {
            ts = $2 + 0
            if (ts <= t) { prev = ts; next }
            if (!prev) next
            if (ts - prev > max) max = ts - prev
            prev = ts
            if (ts > t2) { done = 1; exit }
          } END { if (done) printf "%d\n", max * 1000 + 0.5; else exit 1 }' "$out")
    if ! has_vip "$NS_2"; then
        log "$impl run $run: warning: fw2 does not hold the VIP after failover"
    fi
    echo "$gap"
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%d\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ---- main ----

for tool in ip ping awk; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done

cat >"$TMP/vip-up.sh" <<EOF
#!/bin/sh
# ucarp up-script: \$1 = interface, \$2 = VIP
ip addr add "\$2/$PLEN" dev "\$1"
command -v arping >/dev/null && arping -q -U -c 1 -I "\$1" "\$2" >/dev/null 2>&1 &
exit 0
EOF
cat >"$TMP/vip-down.sh" <<EOF
#!/bin/sh
ip addr del "\$2/$PLEN" dev "\$1" 2>/dev/null
exit 0
EOF
chmod +x "$TMP/vip-up.sh" "$TMP/vip-down.sh"

setup_topology
declare -A GAPS STATUS
IMPLS=(ucarp keepalived tandem tandem-vrrp)
for impl in "${IMPLS[@]}"; do
    case ",$ONLY," in *",$impl,"*) ;; *) STATUS[$impl]="not selected"; continue ;; esac
    case "$impl" in
        ucarp) command -v ucarp >/dev/null || { STATUS[$impl]="skipped: ucarp not installed"; continue; }
               command -v arping >/dev/null || log "arping not installed (apt-get install iputils-arping): the ucarp up-script sends no extra GARP" ;;
        keepalived) command -v keepalived >/dev/null || { STATUS[$impl]="skipped: keepalived not installed"; continue; } ;;
        tandem|tandem-vrrp) [ -x "$TANDEM" ] || { STATUS[$impl]="skipped: ${TANDEM#"$ROOT"/} not found (cargo build --release -p tandem)"; log "${STATUS[$impl]}"; continue; } ;;
    esac
    gaps=""
    for run in $(seq 1 "$RUNS"); do
        if g=$(one_run "$impl" "$run"); then
            log "$impl run $run/$RUNS: gap ${g} ms"
            gaps="$gaps $g"
        else
            log "$impl run $run/$RUNS: failed"
        fi
    done
    reset_topology
    GAPS[$impl]="${gaps# }"
    [ -n "$gaps" ] && STATUS[$impl]="ok" || STATUS[$impl]="failed (all runs)"
done

# ---- report ----
tandem_median=""
if [ -n "${GAPS[tandem]:-}" ]; then tandem_median=$(tr ' ' '\n' <<<"${GAPS[tandem]}" | median); fi

table() {
    echo "| implementation | runs | median gap (ms) | min | max | protocol bound (ms) | median / tandem |"
    echo "|---|---|---|---|---|---|---|"
    local impl g med min max ratio
    for impl in "${IMPLS[@]}"; do
        g=${GAPS[$impl]:-}
        if [ -z "$g" ]; then
            echo "| $impl | 0 | — | — | — | $(bound_ms "$impl") | ${STATUS[$impl]} |"
            continue
        fi
        med=$(tr ' ' '\n' <<<"$g" | median)
        min=$(tr ' ' '\n' <<<"$g" | sort -n | head -1)
        max=$(tr ' ' '\n' <<<"$g" | sort -n | tail -1)
        if [ -n "$tandem_median" ] && [ "$tandem_median" -gt 0 ]; then
            ratio=$(awk -v a="$med" -v b="$tandem_median" 'BEGIN { printf "%.2f", a / b }')
        else
            ratio="n/a"
        fi
        echo "| $impl | $(wc -w <<<"$g") | $med | $min | $max | $(bound_ms "$impl") | $ratio |"
    done
}

versions() {
    local v
    v=$(ucarp --help 2>&1 | grep -m1 '^ucarp' | awk '{print $1, $2}') || true
    echo -n "${v:-ucarp ?}, "
    v=$(keepalived --version 2>&1 | head -1 | awk '{print $1, $2}') || true
    echo -n "${v:-keepalived ?}, "
    if [ -x "$TANDEM" ]; then "$TANDEM" --version 2>/dev/null | head -1 || echo "tandem (built)"; else echo "tandem not built"; fi
}

REPORT=$(
    echo "Measured $(date -u +%Y-%m-%d) on Linux $(uname -r), $(nproc) CPUs; $RUNS runs each; $(versions)."
    echo
    table
    echo
    echo "Gap = the longest silence between consecutive ICMP echo replies from the last reply before fw1's eth0 went down to the first reply after (client pings the VIP every $(awk -v i="$PING_INTERVAL" 'BEGIN { print i * 1000 }') ms; the link goes down at a random point of the advert cycle). VRRP advert interval $INTERVAL_MS ms."
    echo "Bounds: ucarp/tandem $(bound_text ucarp) s; keepalived/tandem-vrrp $(bound_text keepalived). Raw gaps (ms):"
    for impl in "${IMPLS[@]}"; do echo "- $impl: ${GAPS[$impl]:-${STATUS[$impl]}}"; done
)
echo "$REPORT"

if [ "$WRITE" = 1 ]; then
    README="$HERE/README.md"
    BEGIN="<!-- failover:begin (generated by bench/failover.sh --write; do not edit by hand) -->"
    END="<!-- failover:end -->"
    [ -f "$README" ] || { echo "# Benchmarks" >"$README"; }
    if ! grep -qF "<!-- failover:begin" "$README"; then
        printf '\n%s\n%s\n' "$BEGIN" "$END" >>"$README"
    fi
    printf '%s\n' "$REPORT" >"$TMP/report.md"
    awk -v b="$BEGIN" -v e="$END" -v f="$TMP/report.md" '
        index($0, "<!-- failover:begin") == 1 { print b; while ((getline l < f) > 0) print l; skip = 1; next }
        index($0, "<!-- failover:end") == 1 { skip = 0 }
        !skip { print }' "$README" >"$TMP/README.new"
    cat "$TMP/README.new" >"$README"
    log "updated $README"
fi
