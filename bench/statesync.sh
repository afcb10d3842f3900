#!/usr/bin/env bash
# State sync benchmark: tandem vs conntrackd (conntrack-tools, FTFW over UDP), side by side in one run.
#
# Topology (network namespaces, unique per run of this script, removed by a trap), made afresh
# for every measurement:
#
#     fw1 sync0 203.0.113.1/24 ── veth ── fw2 sync0 203.0.113.2/24   (the sync link)
#     fw1 lan0  192.0.2.2/24   ── veth ── fw2 lan0  192.0.2.3/24     (tandem's one VIP 192.0.2.1)
#
# Both namespaces have a `notrack` rule for all their own traffic, so the kernel tables hold
# only the benchmark's entries (no entry for the sync datagrams or CARP adverts), and
# net.netfilter.nf_conntrack_events=1. The entries come from `ctbench fill` (bench/tools/src/bin/
# ctbench.rs): N (default 100 000) established TCP and assured UDP entries 198.51.100.x:p →
# 192.0.2.y:port, timeout 3600 s, written into fw1's kernel with one batched ctnetlink write.
# `ctbench wait N` in fw2 polls net.netfilter.nf_conntrack_count every 10 ms; a run ends when
# fw2's kernel holds all N, and `ctbench verify` then checks every entry is there as written.
#
# Scenarios (each run of each tool starts from new namespaces and new daemons):
#   bulk: fw2 restarts. Both daemons start on empty tables and sync, fw2's daemon stops, fw1's
#         table is filled (fw1's daemon learns it from the kernel's events), fw2's daemon starts
#         again. Time = from fw2's daemon start until fw2's kernel holds N.
#   live: both daemons run and are in sync with empty tables; N entries are written into fw1's
#         kernel in one burst. Time = from the start of that write until fw2's kernel holds N.
#   sustained: both daemons run and are in sync with empty tables; `ctbench sustained` creates
#         RATE entries per second (default 50 000) in fw1's kernel for SECS seconds (default 3),
#         one batch per millisecond; `ctbench listen` in fw2 stamps each entry's NEW event there.
#         Lag = from the end of the batch that created an entry on fw1 to its NEW event on fw2
#         (CLOCK_MONOTONIC is one clock for both namespaces): p50, p99, max, and how many came.
#         Not for conntrackd's external cache mode (nothing reaches fw2's kernel before a commit).
# Memory: fw2's daemon's VmRSS once it holds N (bulk, live), and before the burst (live), so the
# growth per entry; and `stmem` (bench/tools/src/bin/stmem.rs) for 100k and 1M states: the
# engine's table in-process (the host's nf_conntrack_max, 262 144 and host-wide, is left alone,
# so 1M entries cannot be in a kernel table here).
# Tools:
#   tandem               `tandem run` on both nodes ([statesync] over sync0, one VIP on lan0):
#                        bulk sync on start, peer states installed straight into the kernel.
#   conntrackd (cache)   default FTFW: peer states go to conntrackd's external cache; the
#                        script requests a resync (`conntrackd -n`, bulk only), polls the cache
#                        size (`conntrackd -s`, every 20 ms) until it holds N, then commits it
#                        into the kernel (`conntrackd -c`), as a failover script does.
#   conntrackd (direct)  FTFW with `DisableExternalCache on`: peer states are written straight
#                        into the kernel (bulk: `conntrackd -n` as soon as its socket answers).
#
# Usage: sudo bench/statesync.sh [-n RUNS] [-N ENTRIES] [--only LIST] [--scenarios LIST]
#                                [--write] [--keep] [--no-build]
#   -n RUNS      runs per tool and scenario (default 3)
#   -N ENTRIES   conntrack entries (default 100000)
#   --only LIST  comma-separated subset of tandem,conntrackd-cache,conntrackd-direct
#   --scenarios  comma-separated subset of bulk,live,sustained
#   --rate R     sustained: new entries per second on fw1 (default 50000)
#   --secs S     sustained: seconds (default 3)
#   --no-stmem   skip the in-process memory measurement (1M states take minutes)
#   --write      replace the marked statesync section of bench/README.md with the results
#   --keep       keep the temp dir (configs, daemon logs)
#   --no-build   use the binaries in target/release as they are
# Needs: root, iproute2, nftables, conntrack (conntrack-tools), conntrackd (Debian conntrackd).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=3
N=100000
ONLY="tandem,conntrackd-cache,conntrackd-direct"
SCENARIOS="bulk,live,sustained"
RATE=50000
SECS=3
STMEM=1
WRITE=0
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        -n|--runs) RUNS=$2; shift 2 ;;
        -N|--entries) N=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --no-stmem) STMEM=0; shift ;;
        --write) WRITE=1; shift ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,56p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$RUNS" in ''|*[!0-9]*|0) echo "-n needs a positive integer" >&2; exit 2 ;; esac
case "$N" in ''|*[!0-9]*|0) echo "-N needs a positive integer" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "statesync.sh must run as root (network namespaces)" >&2; exit 1; }
for c in ip nft conntrack conntrackd awk; do
    command -v "$c" >/dev/null || { echo "$c not found (apt-get install iproute2 nftables conntrack conntrackd)" >&2; exit 1; }
done

TANDEM="$ROOT/target/release/tandem"
CTBENCH="$ROOT/target/release/ctbench"
STMEM_BIN="$ROOT/target/release/stmem"
if [ "$BUILD" = 1 ]; then
    echo "[statesync.sh] building tandem, ctbench and stmem (release)" >&2
    (cd "$ROOT" && cargo build --release -q -p tandem --bin tandem -p bench-tools --bin ctbench --bin stmem)
fi

P="ssb$$"                     # namespace prefix, unique per run of this script
NS_1="$P-fw1" NS_2="$P-fw2"
TMP=$(mktemp -d /tmp/statesync.XXXXXX)
KEY="statesync benchmark key, shared by both nodes"
PIDS=()
FW2_PID=

log() { echo "[$(date +%T)] $*" >&2; }

teardown() {
    local ns pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for ns in "$NS_1" "$NS_2"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    for ns in "$NS_1" "$NS_2"; do ip netns del "$ns" 2>/dev/null || true; done
}

cleanup() {
    set +e
    teardown
    if [ "$KEEP" = 1 ]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
now_ns() { date +%s%N; }

setup() {
    local ns
    for ns in "$NS_1" "$NS_2"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip -n "$NS_1" link add sync0 type veth peer name sync0 netns "$NS_2"
    ip -n "$NS_1" link add lan0 type veth peer name lan0 netns "$NS_2"
    ip -n "$NS_1" addr add 203.0.113.1/24 dev sync0
    ip -n "$NS_2" addr add 203.0.113.2/24 dev sync0
    ip -n "$NS_1" addr add 192.0.2.2/24 dev lan0
    ip -n "$NS_2" addr add 192.0.2.3/24 dev lan0
    for ns in "$NS_1" "$NS_2"; do
        ip -n "$ns" link set sync0 up
        ip -n "$ns" link set lan0 up
        # Only the benchmark's entries in the tables: nothing the nodes send or receive is tracked.
        in_ns "$ns" nft -f - <<'EOF'
table inet ssb_notrack {
    chain pre { type filter hook prerouting priority raw; notrack; }
    chain out { type filter hook output priority raw; notrack; }
}
EOF
        in_ns "$ns" sysctl -qw net.netfilter.nf_conntrack_events=1
    done
}

# wait_for SECONDS CMD...: polls every 20 ms
wait_for() {
    local deadline=$(( $(now_ns) + $1 * 1000000000 )); shift
    while ! "$@"; do
        [ "$(now_ns)" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}

# ---- tandem ----

tandem_config() {
    local n=$1 peer skew
    if [ "$n" = 1 ]; then peer=203.0.113.2 skew=0; else peer=203.0.113.1 skew=100; fi
    cat >"$TMP/tandem-fw$n.toml" <<EOF
[node]
name = "fw$n"
advskew = $skew
preempt = true
control_socket = "$TMP/tandem-fw$n.sock"

[interfaces]
lan = "lan0"
sync = "sync0"

[carp]
passphrase = "s3cret"
advbase = 1

[statesync]
interface = "sync"
peers = ["$peer"]
key = "$KEY"

[[vips]]
vhid = 1
interface = "lan"
addresses = ["192.0.2.1/24"]
EOF
}

start_tandem() {
    local n=$1 ns
    if [ "$n" = 1 ]; then ns=$NS_1; else ns=$NS_2; fi
    tandem_config "$n"
    ip netns exec "$ns" "$TANDEM" run --config "$TMP/tandem-fw$n.toml" >>"$TMP/tandem-fw$n.log" 2>&1 &
    PIDS+=($!)
    [ "$n" = 2 ] && FW2_PID=$!
    return 0
}

tandem_status() { "$TANDEM" status --json --config "$TMP/tandem-fw$1.toml" 2>/dev/null; }

# tandem_idle NODE STATES: the node's engine holds STATES states and has nothing left to send.
tandem_idle() {
    local s
    s=$(tandem_status "$1") || return 1
    python3 -c '
import json, sys
e = (json.loads(sys.argv[1]).get("state_sync") or {}).get("engine") or {}
sys.exit(0 if e.get("states", -1) >= int(sys.argv[2]) and e.get("queue_depth", 1) == 0 else 1)' "$s" "$2"
}

# tandem_synced NODE STATES: the node's engine is ready, sees its peer, and holds STATES states.
tandem_synced() {
    local s
    s=$(tandem_status "$1") || return 1
    python3 -c '
import json, sys
e = (json.loads(sys.argv[1]).get("state_sync") or {}).get("engine") or {}
ok = e.get("ready") and e.get("states", -1) >= int(sys.argv[2]) and any(p.get("alive") for p in e.get("peers", []))
sys.exit(0 if ok else 1)' "$s" "$2"
}

# Both nodes' status after a run, kept with the logs (--keep).
save_tandem_status() {
    tandem_status 1 >"$TMP/status-fw1.json.log" || true
    tandem_status 2 >"$TMP/status-fw2.json.log" || true
}

# ---- conntrackd ----

# conntrackd_config NODE MODE(cache|direct)
conntrackd_config() {
    local n=$1 mode=$2 me peer
    if [ "$n" = 1 ]; then me=203.0.113.1 peer=203.0.113.2; else me=203.0.113.2 peer=203.0.113.1; fi
    local ext=""
    [ "$mode" = direct ] && ext="DisableExternalCache on"
    # Buffers as tandem's: 8 MiB UDP socket buffers, a 32 MiB netlink event buffer.
    cat >"$TMP/conntrackd-fw$n.conf" <<EOF
Sync {
    Mode FTFW {
        $ext
    }
    UDP {
        IPv4_address $me
        IPv4_Destination_Address $peer
        Port 3780
        Interface sync0
        SndSocketBuffer 8388608
        RcvSocketBuffer 8388608
        Checksum on
    }
}
General {
    Systemd no
    HashSize 131072
    HashLimit 524288
    LogFile $TMP/conntrackd-fw$n.log
    Syslog off
    LockFile $TMP/conntrackd-fw$n.lock
    UNIX {
        Path $TMP/conntrackd-fw$n.ctl
    }
    NetlinkBufferSize 33554432
    NetlinkBufferSizeMaxGrowth 67108864
    Filter From Kernelspace {
        Address Ignore {
            IPv4_address 127.0.0.1
            IPv4_address 203.0.113.0/24
        }
    }
}
EOF
}

start_conntrackd() {
    local n=$1 mode=$2 ns
    if [ "$n" = 1 ]; then ns=$NS_1; else ns=$NS_2; fi
    conntrackd_config "$n" "$mode"
    rm -f "$TMP/conntrackd-fw$n.lock" "$TMP/conntrackd-fw$n.ctl"
    ip netns exec "$ns" conntrackd -C "$TMP/conntrackd-fw$n.conf" >>"$TMP/conntrackd-fw$n.out" 2>&1 &
    PIDS+=($!)
    [ "$n" = 2 ] && FW2_PID=$!
    return 0
}

# ctd NODE ARGS...: the conntrackd client, in the node's namespace (it checks the interface named
# in the config)
ctd() {
    local n=$1 ns; shift
    if [ "$n" = 1 ]; then ns=$NS_1; else ns=$NS_2; fi
    ip netns exec "$ns" conntrackd -C "$TMP/conntrackd-fw$n.conf" "$@"
}
ctd_up() { ctd "$1" -s >/dev/null 2>&1; }

# ctd_cache NODE internal|external: the number of entries in that cache ("current active connections")
ctd_cache() {
    ctd "$1" -s 2>/dev/null | awk -v which="$2:" '
        /^cache / { cur = $2 }
        /current active connections/ && cur == which { print $NF + 0; found = 1; exit }
        END { if (!found) print 0 }'
}
ctd_cache_has() { [ "$(ctd_cache "$1" "$2")" -ge "$3" ]; }

# ---- one measurement: writes "TOTAL_MS [CACHE_MS|-] [FILL_MS]" to $TMP/result ----

# The waiter: polls fw2's table until it holds N; the time it saw them goes to FILE.
start_waiter() {
    ip netns exec "$NS_2" "$CTBENCH" wait "$N" --timeout 120 --poll-ms 10 --trace >"$1" 2>>"$TMP/waiter.err" &
    WAITER=$!
    sleep 0.05
}

# finish_waiter FILE: sets T1 (not in a subshell: the waiter is this shell's child)
finish_waiter() {
    if ! wait "$WAITER"; then
        log "fw2 never held $N entries: $(in_ns "$NS_2" "$CTBENCH" count) ($(tail -1 "$TMP/waiter.err"))"
        return 1
    fi
    T1=$(cat "$1")
}

verify_fw2() {
    local out
    if ! out=$(in_ns "$NS_2" "$CTBENCH" verify "$N" 2>&1); then
        log "fw2's table is wrong: $out"
        return 1
    fi
}

fill_fw1() {
    in_ns "$NS_1" "$CTBENCH" fill "$N" 2>>"$TMP/fill.err"
}

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }

# start_pair TOOL: both daemons on empty tables, running and (tandem) in sync
start_pair() {
    local tool=$1
    case "$tool" in
        tandem)
            start_tandem 1
            start_tandem 2
            wait_for 60 tandem_synced 1 0 || { log "tandem fw1 never ready"; return 1; }
            wait_for 60 tandem_synced 2 0 || { log "tandem fw2 never ready"; return 1; }
            ;;
        conntrackd-*)
            start_conntrackd 1 "${tool#conntrackd-}"
            start_conntrackd 2 "${tool#conntrackd-}"
            wait_for 20 ctd_up 1 || { log "conntrackd fw1 never answered"; return 1; }
            wait_for 20 ctd_up 2 || { log "conntrackd fw2 never answered"; return 1; }
            ;;
    esac
}

stop_fw2() {
    kill "$FW2_PID" 2>/dev/null || true
    wait "$FW2_PID" 2>/dev/null || true
}

# Bulk: fw2 reboots while fw1 carries on. Both daemons start and sync (empty tables), fw2's
# daemon stops, fw1's table is filled (fw1's daemon learns the entries from the kernel's
# events), then fw2's daemon starts again: time from that start until fw2's kernel holds N.
run_bulk() {
    local tool=$1 t0 t1 tc
    setup
    start_pair "$tool" || return 1
    stop_fw2
    fill_fw1 >/dev/null
    case "$tool" in
        tandem)
            wait_for 60 tandem_idle 1 "$N" || { log "tandem fw1 never took in its table: $(tandem_status 1)"; return 1; }
            start_waiter "$TMP/t1"
            t0=$(now_ns)
            start_tandem 2
            finish_waiter "$TMP/t1" || return 1; t1=$T1
            wait_for 30 tandem_synced 2 "$N" || log "tandem fw2 holds the entries but never said it is ready"
            save_tandem_status
            echo "$(ms "$t0" "$t1")" >"$TMP/result"
            ;;
        conntrackd-cache|conntrackd-direct)
            local mode=${tool#conntrackd-}
            wait_for 60 ctd_cache_has 1 internal "$N" || { log "conntrackd fw1 never took in its table"; return 1; }
            start_waiter "$TMP/t1"
            t0=$(now_ns)
            start_conntrackd 2 "$mode"
            wait_for 20 ctd_up 2 || { log "conntrackd fw2 never answered"; return 1; }
            ctd 2 -n >/dev/null
            if [ "$mode" = cache ]; then
                wait_for 120 ctd_cache_has 2 external "$N" || { log "conntrackd fw2's external cache never held $N: $(ctd_cache 2 external)"; return 1; }
                tc=$(now_ns)
                ctd 2 -c >/dev/null
            fi
            finish_waiter "$TMP/t1" || return 1; t1=$T1
            if [ "$mode" = cache ]; then echo "$(ms "$t0" "$t1") $(ms "$t0" "$tc")"; else echo "$(ms "$t0" "$t1")"; fi >"$TMP/result"
            ;;
    esac
    verify_fw2
    save_rss
}

# fw2's daemon's resident memory (VmRSS, KiB) now that it holds the N entries (to FILE,
# default $TMP/rss).
save_rss() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$FW2_PID/status" >"${1:-$TMP/rss}" 2>/dev/null || true
}

# Live: both daemons running and in sync on empty tables; N entries written into fw1's kernel
# in one burst: time from the start of that write until fw2's kernel holds N.
run_live() {
    local tool=$1 t0 t1 tc fill
    setup
    start_pair "$tool" || return 1
    sleep 1
    save_rss "$TMP/rss0"
    start_waiter "$TMP/t1"
    fill=$(fill_fw1)
    t0=${fill% *}
    if [ "$tool" = conntrackd-cache ]; then
        wait_for 120 ctd_cache_has 2 external "$N" || { log "conntrackd fw2's external cache never held $N: $(ctd_cache 2 external)"; return 1; }
        tc=$(now_ns)
        ctd 2 -c >/dev/null
    fi
    finish_waiter "$TMP/t1" || return 1; t1=$T1
    [ "$tool" = tandem ] && save_tandem_status
    if [ "$tool" = conntrackd-cache ]; then
        echo "$(ms "$t0" "$t1") $(ms "$t0" "$tc") $(ms "$t0" "${fill#* }")"
    else
        echo "$(ms "$t0" "$t1") - $(ms "$t0" "${fill#* }")"
    fi >"$TMP/result"
    verify_fw2
    save_rss
}

# Sustained: both daemons running and in sync on empty tables; RATE new entries per second on
# fw1 for SECS seconds; the lag of each from its create on fw1 to its NEW event on fw2.
# Writes "P50_MS P99_MS MAX_MS SEEN TOTAL" to $TMP/result.
run_sustained() {
    local tool=$1 total
    total=$((RATE * SECS))
    setup
    start_pair "$tool" || return 1
    sleep 1
    ip netns exec "$NS_2" "$CTBENCH" listen "$total" --timeout 10 >"$TMP/listened" 2>"$TMP/listen.err" &
    local listener=$!
    wait_for 10 grep -q ready "$TMP/listen.err" || { log "ctbench listen never ready"; return 1; }
    in_ns "$NS_1" "$CTBENCH" sustained "$RATE" "$SECS" >"$TMP/created" 2>>"$TMP/sustained.err" || { log "ctbench sustained failed: $(tail -1 "$TMP/sustained.err")"; return 1; }
    wait "$listener" || true
    [ "$tool" = tandem ] && save_tandem_status
    in_ns "$NS_1" "$CTBENCH" lag "$TMP/created" "$TMP/listened" >"$TMP/result"
    log "sustained $tool: fw1 $(tail -1 "$TMP/sustained.err")"
}

# ---- main ----

TOOLS=()
for t in tandem conntrackd-cache conntrackd-direct; do
    case ",$ONLY," in *",$t,"*) TOOLS+=("$t") ;; esac
done
SCENS=()
for s in bulk live sustained; do
    case ",$SCENARIOS," in *",$s,"*) SCENS+=("$s") ;; esac
done
declare -A RES EXTRA FILLMS RSS RSS0 SUST
# The kernel's own ceiling, in a namespace of its own: batched creates without and with an
# event listener (every node running a sync daemon has one).
setup
KERNEL=$(in_ns "$NS_1" "$CTBENCH" kernel "$N" --runs 3 --threads 2) || KERNEL=""
teardown
read -r K_NONE K_ALL K_NONEW K_PAR <<<"${KERNEL:-- - - -}"
log "kernel: batched creates of $N entries: $K_NONE/s without an event listener, $K_ALL/s with one, $K_NONEW/s with one to UPDATE and DESTROY only, $K_PAR/s from 2 sockets on 2 threads"
# The engine's table in-process, for 100k and 1M states (fw2's growth, KiB).
declare -A STM
if [ "$STMEM" = 1 ]; then
    for n in 100000 1000000; do
        if out=$("$STMEM_BIN" "$n" 2>>"$TMP/stmem.err"); then
            read -r a b c <<<"$out"
            STM[$n]=$((c - b))
            log "stmem $n: fw2's engine grew $((c - b)) KiB"
        fi
    done
fi
for scen in "${SCENS[@]}"; do
    for run in $(seq 1 "$RUNS"); do
        for tool in "${TOOLS[@]}"; do
            # tools interleaved run by run, so slow drifts of the machine hit all alike
            rm -f "$TMP/result" "$TMP/rss" "$TMP/rss0"
            if [ "$scen" = sustained ]; then
                [ "$tool" = conntrackd-cache ] && continue
                if run_sustained "$tool" && [ -s "$TMP/result" ]; then
                    SUST[$tool]="${SUST[$tool]:-}$(cat "$TMP/result");"
                    log "sustained $tool run $run/$RUNS: p50 p99 max (ms), seen of total: $(cat "$TMP/result")"
                else
                    log "sustained $tool run $run/$RUNS: failed (logs in $TMP)"
                fi
                teardown
                for f in "$TMP"/*.log "$TMP"/*.out; do [ -e "$f" ] && mv "$f" "$f.$scen.$tool.$run"; done
                continue
            fi
            if "run_$scen" "$tool" && [ -s "$TMP/result" ]; then
                [ -s "$TMP/rss0" ] && RSS0[$scen,$tool]="${RSS0[$scen,$tool]:-} $(cat "$TMP/rss0")"
                [ -s "$TMP/rss" ] && RSS[$scen,$tool]="${RSS[$scen,$tool]:-} $(cat "$TMP/rss")"
                set -- $(cat "$TMP/result")
                log "$scen $tool run $run/$RUNS: $1 ms${2:+ (extra: ${*:2})}"
                RES[$scen,$tool]="${RES[$scen,$tool]:-} $1"
                [ "${2:-}" != "" ] && [ "$2" != - ] && EXTRA[$scen,$tool]="${EXTRA[$scen,$tool]:-} $2"
                [ "${3:-}" != "" ] && FILLMS[$scen,$tool]="${FILLMS[$scen,$tool]:-} $3"
            else
                log "$scen $tool run $run/$RUNS: failed (logs in $TMP)"
            fi
            teardown
            for f in "$TMP"/*.log "$TMP"/*.out; do [ -e "$f" ] && mv "$f" "$f.$scen.$tool.$run"; done
        done
    done
done

# ---- report ----

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
minv() { tr ' ' '\n' | grep . | sort -n | head -1; }
maxv() { tr ' ' '\n' | grep . | sort -n | tail -1; }
rate() { awk -v n="$N" -v ms="$1" 'BEGIN { if (ms > 0) printf "%.0f", n / (ms / 1000); else print "—" }'; }
label() {
    case "$1" in
        tandem) echo "tandem" ;;
        conntrackd-cache) echo "conntrackd, external cache + commit" ;;
        conntrackd-direct) echo "conntrackd, DisableExternalCache" ;;
    esac
}

table() {
    local scen=$1 tool v med tmed ratio extra rss
    tmed=""
    [ -n "${RES[$scen,tandem]:-}" ] && tmed=$(median <<<"${RES[$scen,tandem]}")
    echo "| tool | runs | median (ms) | min | max | states/s (median) | tandem states/s ÷ this | fw2 daemon resident memory (MiB, median) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for tool in "${TOOLS[@]}"; do
        v=${RES[$scen,$tool]:-}
        if [ -z "$v" ]; then
            echo "| $(label "$tool") | 0 | failed | | | | | |"
            continue
        fi
        med=$(median <<<"$v")
        if [ -n "$tmed" ]; then ratio=$(awk -v a="$med" -v b="$tmed" 'BEGIN { printf "%.2f", a / b }'); else ratio="n/a"; fi
        rss=${RSS[$scen,$tool]:-}
        if [ -n "$rss" ]; then rss=$(awk -v k="$(median <<<"$rss")" 'BEGIN { printf "%.1f", k / 1024 }'); else rss="—"; fi
        echo "| $(label "$tool") | $(wc -w <<<"$v") | $med | $(minv <<<"$v") | $(maxv <<<"$v") | $(rate "$med") | $ratio | $rss |"
    done
}

# The sustained table: per tool, medians over the runs of p50 and p99, the largest max, and
# the entries seen on fw2 of those created (summed over the runs).
sustained_table() {
    local tool runs p50 p99 mx seen total
    echo "| tool | runs | lag p50 (ms, median of runs) | lag p99 (ms, median of runs) | max (ms, worst run) | entries seen on fw2 / created | tandem p99 ÷ this p99 |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    local tp99=""
    [ -n "${SUST[tandem]:-}" ] && tp99=$(tr ';' '\n' <<<"${SUST[tandem]}" | awk 'NF { print $2 }' | median)
    for tool in "${TOOLS[@]}"; do
        if [ "$tool" = conntrackd-cache ]; then
            echo "| $(label "$tool") | — | — | — | — | — (no entry reaches fw2's kernel before a commit) | |"
            continue
        fi
        local v=${SUST[$tool]:-}
        if [ -z "$v" ]; then echo "| $(label "$tool") | 0 | failed | | | | |"; continue; fi
        runs=$(tr ';' '\n' <<<"$v" | grep -c .)
        p50=$(tr ';' '\n' <<<"$v" | awk 'NF { print $1 }' | median)
        p99=$(tr ';' '\n' <<<"$v" | awk 'NF { print $2 }' | median)
        mx=$(tr ';' '\n' <<<"$v" | awk 'NF { print $3 }' | sort -g | tail -1)
        seen=$(tr ';' '\n' <<<"$v" | awk 'NF { s += $4 } END { print s + 0 }')
        total=$(tr ';' '\n' <<<"$v" | awk 'NF { s += $5 } END { print s + 0 }')
        local ratio="n/a"
        [ -n "$tp99" ] && ratio=$(awk -v a="$p99" -v b="$tp99" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
        echo "| $(label "$tool") | $runs | $p50 | $p99 | $mx | $seen / $total | $ratio |"
    done
    echo
    echo "Raw (p50 p99 max ms, seen total; per run):"
    for tool in "${TOOLS[@]}"; do
        [ "$tool" = conntrackd-cache ] && continue
        echo "- $(label "$tool"): $(echo "${SUST[$tool]:-failed}" | sed 's/;$//; s/;/; /g')"
    done
}

# The memory table: fw2's daemon at N (median of the live runs), its growth per entry from
# the empty table, and the engine in-process at 100k and 1M (stmem).
memory_table() {
    local tool r r0 per
    echo "| what | resident memory (MiB) | per entry (bytes) |"
    echo "|---|---:|---:|"
    for tool in "${TOOLS[@]}"; do
        r=${RSS[live,$tool]:-}; r0=${RSS0[live,$tool]:-}
        [ -n "$r" ] && [ -n "$r0" ] || continue
        r=$(median <<<"$r"); r0=$(median <<<"$r0")
        per=$(awk -v a="$r" -v b="$r0" -v n="$N" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
        echo "| $(label "$tool") daemon on fw2 holding $N (live; growth from its empty table per entry) | $(awk -v k="$r" 'BEGIN { printf "%.1f", k / 1024 }') | $per |"
    done
    for n in 100000 1000000; do
        [ -n "${STM[$n]:-}" ] || continue
        echo "| tandem's state sync engine, in-process (\`stmem $n\`): fw2's growth for $n states | $(awk -v k="${STM[$n]}" 'BEGIN { printf "%.1f", k / 1024 }') | $(awk -v k="${STM[$n]}" -v n="$n" 'BEGIN { printf "%.0f", k * 1024 / n }') |"
    done
}

versions() {
    echo -n "conntrackd $(conntrackd -v 2>&1 | grep -o 'v[0-9][0-9.]*[0-9]' | head -1), "
    "$TANDEM" --version 2>/dev/null | head -1
}

REPORT=$(
    echo "Measured $(date -u +%Y-%m-%d) on Linux $(uname -r), $(nproc) CPUs; $N entries; $RUNS runs each; $(versions)."
    if [ -n "$KERNEL" ]; then
        echo
        echo "Kernel ceiling (\`ctbench kernel\`, median of 3): one batched ctnetlink write of $N creates into an empty table runs at $K_NONE/s with no conntrack event listener, $K_ALL/s with one listener reading every event, $K_NONEW/s with a listener to UPDATE and DESTROY only (what tandem's fw2 keeps while it installs a bulk sync), and $K_PAR/s from 2 sockets writing half each on 2 threads (no listener). conntrackd listens to every event on both nodes, so each of its installs on fw2 pays for a NEW event; tandem's live installs do too."
    fi
    for scen in "${SCENS[@]}"; do
        echo
        if [ "$scen" = sustained ]; then
            echo "**Sustained new flows**: both daemons running, tables empty; fw1's kernel gets $RATE new entries per second for $SECS s (\`ctbench sustained\`, one batch per ms); lag from the end of the batch that created an entry on fw1 to its NEW event read on fw2 (\`ctbench listen\`, CLOCK_MONOTONIC, one clock for both namespaces)."
            echo
            sustained_table
            continue
        elif [ "$scen" = bulk ]; then
            echo "**Bulk sync into the peer's kernel** (fw2 restarts): fw1 holds $N entries; time from starting fw2's daemon until fw2's kernel holds all of them."
        else
            echo "**Live replication of new flows**: both daemons running, tables empty; $N entries written into fw1's kernel in one burst; time from the start of that write until fw2's kernel holds all of them."
        fi
        echo
        table "$scen"
        echo
        echo "Raw (ms):"
        for tool in "${TOOLS[@]}"; do
            line="- $(label "$tool"): $(echo ${RES[$scen,$tool]:-failed})"
            if [ -n "${EXTRA[$scen,$tool]:-}" ]; then line="$line; external cache full after: $(echo ${EXTRA[$scen,$tool]})"; fi
            if [ -n "${FILLMS[$scen,$tool]:-}" ]; then line="$line; fw1's write took: $(echo ${FILLMS[$scen,$tool]})"; fi
            echo "$line"
        done
    done
    echo
    echo "**Memory**: fw2's daemon's VmRSS in the live runs (median), and tandem's engine alone for 100k and 1M states (\`stmem\`: two engines in one process, fw2's growth while it takes a bulk sync of that many; no kernel table, which the host's nf_conntrack_max of 262 144 would not allow)."
    echo
    memory_table
)
echo "$REPORT"

if [ "$WRITE" = 1 ]; then
    README="$HERE/README.md"
    BEGIN="<!-- statesync:begin (generated by bench/statesync.sh --write; do not edit by hand) -->"
    END="<!-- statesync:end -->"
    if ! grep -qF "<!-- statesync:begin" "$README"; then
        printf '\n%s\n%s\n' "$BEGIN" "$END" >>"$README"
    fi
    printf '%s\n' "$REPORT" >"$TMP/report.md"
    awk -v b="$BEGIN" -v f="$TMP/report.md" '
        index($0, "<!-- statesync:begin") == 1 { print b; while ((getline l < f) > 0) print l; skip = 1; next }
        index($0, "<!-- statesync:end") == 1 { skip = 0 }
        !skip { print }' "$README" >"$TMP/README.new"
    cat "$TMP/README.new" >"$README"
    log "updated the statesync section of $README"
fi
