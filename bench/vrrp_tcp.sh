#!/usr/bin/env bash
# Established TCP connections through a VRRP pair with 10 ms adverts when the master dies.
#
# Topology (examples/demo.sh's, network namespaces unique per run, removed by a trap):
#
#   client 192.0.2.10 ── lan ── fw1 (master, advskew 0: priority 254) ── wan ── server 198.51.100.10
#                            └─ fw2 (backup, advskew 100: priority 154) ──┘
#   fw1 eth2 203.0.113.1 ═ veth ═ fw2 eth2 203.0.113.2 (state sync)
#   VIPs 192.0.2.1 (vrid 1, lan; the client's gateway) and 198.51.100.1 (vrid 2, wan; outbound
#   NAT of the lan to it), both `protocol = "vrrp"`, `interval_ms = MS` on both nodes.
#
# Each run: both nodes start (the full config on each, no config sync), state sync ready; the
# client opens CONNS TCP connections to the server (crates/tandem/tests/traffic.py), each sending
# a line every 50 ms and waiting for its echo; once fw2's kernel holds their states, fw1 loses
# power: its three links go down and its daemon is killed (no priority-0 advert). 5 s later the
# client reports per connection whether it is alive (no error, an echo within the last second)
# and its longest pause (the longest silence between two echoes since the cut). Takeover = from
# the cut until fw2's first advert on both the lan and the wan (tcpdump in the client's and the
# server's namespace, microsecond timestamps on the same clock as the cut's).
#
# The peer, keepalived + conntrackd (conntrack-tools' primary-backup.sh way): on each node
# keepalived (VRRPv3, advert_int MS/1000 s, priorities 254/154, both VIPs in one sync group,
# preempt) and conntrackd (FTFW over eth2 with its external cache); keepalived's notify script
# runs primary-backup.sh's commands (master: conntrackd -c, -f, -R, -B; backup: -n, -t); the
# NAT is one nft rule (snat of the lan to 198.51.100.1 out of eth1), forwarding on. Before the
# cut fw2's external cache must hold CONNS entries.
#
# Usage: sudo bench/vrrp_tcp.sh [-n RUNS] [--conns N] [--ms MS] [--only LIST] [--write] [--keep]
#                               [--no-build]
#   -n RUNS     runs per implementation, each from new namespaces and daemons (default 3)
#   --only LIST comma-separated subset of tandem,keepalived (default both)
#   --conns N   TCP connections (default 200)
#   --ms MS     VRRP advert interval in ms (default 10; 10 ms steps)
#   --write     replace the marked vrrp-tcp section of bench/README.md with the results
#   --keep      keep the temp dir (configs, logs, client reports)
#   --no-build  use target/release/tandem as it is
# Needs: root, iproute2, nftables, tcpdump, python3; keepalived and conntrackd for the peer rows.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=3
CONNS=200
MS=10
ONLY="tandem,keepalived"
WRITE=0
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        -n|--runs) RUNS=$2; shift 2 ;;
        --conns) CONNS=$2; shift 2 ;;
        --ms) MS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --write) WRITE=1; shift ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for v in RUNS CONNS MS; do
    case "${!v}" in ''|*[!0-9]*|0) echo "${v,,} needs a positive integer" >&2; exit 2 ;; esac
done
[ $((MS % 10)) = 0 ] || { echo "--ms: 10 ms steps" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "vrrp_tcp.sh must run as root (network namespaces)" >&2; exit 1; }
for c in ip nft tcpdump python3 awk; do
    command -v "$c" >/dev/null || { echo "$c not found (apt-get install iproute2 nftables tcpdump python3)" >&2; exit 1; }
done

TANDEM="${TANDEM:-$ROOT/target/release/tandem}"
TRAFFIC="$ROOT/crates/tandem/tests/traffic.py"
if [ "$BUILD" = 1 ]; then
    echo "[vrrp_tcp.sh] building tandem in release mode" >&2
    (cd "$ROOT" && cargo build --release -q -p tandem --bin tandem)
fi
[ -x "$TANDEM" ] || { echo "${TANDEM#"$ROOT"/} not found (build it, or drop --no-build)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/vrrp_tcp.XXXXXX)
P=""
PIDS=()
log() { echo "[$(date +%T)] $*" >&2; }
now_ns() { date +%s%N; }

teardown() {
    set +e
    exec 3>&- 2>/dev/null
    local pid h
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [ -n "$P" ]; then
        for h in client server fw1 fw2 lan wan; do
            for pid in $(ip netns pids "$P-$h" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        done
    fi
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    PIDS=()
    if [ -n "$P" ]; then
        for h in client server fw1 fw2 lan wan; do ip netns del "$P-$h" 2>/dev/null; done
    fi
    P=""
    set -e
}
cleanup() {
    teardown
    if [ "$KEEP" = 1 ]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { ip netns exec "$P-$1" "${@:2}"; }
wait_for() { # SECONDS COMMAND...: polls every 100 ms
    local deadline=$(( $(now_ns) + $1 * 1000000000 )); shift
    until "$@"; do
        [ "$(now_ns)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# ---- one run ----------------------------------------------------------------------------------

setup() {
    local sw h port=0
    P="vtcp$$r$1"
    for sw in lan wan; do
        ip netns add "$P-$sw"
        ip -n "$P-$sw" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
        ip -n "$P-$sw" link set br0 up
    done
    for h in client server fw1 fw2; do ip netns add "$P-$h"; ip -n "$P-$h" link set lo up; done
    attach() { # HOST DEV SWITCH ADDR
        ip -n "$P-$1" link add "$2" type veth peer name "p$port" netns "$P-$3"
        ip -n "$P-$3" link set "p$port" master br0 up
        ip -n "$P-$1" addr add "$4" dev "$2"
        ip -n "$P-$1" link set "$2" up
        port=$((port + 1))
    }
    attach client eth0 lan 192.0.2.10/24
    attach server eth0 wan 198.51.100.10/24
    attach fw1 eth0 lan 192.0.2.2/24
    attach fw1 eth1 wan 198.51.100.2/24
    attach fw2 eth0 lan 192.0.2.3/24
    attach fw2 eth1 wan 198.51.100.3/24
    ip -n "$P-fw1" link add eth2 type veth peer name eth2 netns "$P-fw2"
    ip -n "$P-fw1" addr add 203.0.113.1/24 dev eth2
    ip -n "$P-fw1" link set eth2 up
    ip -n "$P-fw2" addr add 203.0.113.2/24 dev eth2
    ip -n "$P-fw2" link set eth2 up
    ns client ip route add default via 192.0.2.1
}

config() { # NODE SKEW PEER
    cat <<EOF
[node]
name = "$1"
advskew = $2
preempt = true
control_socket = "$TMP/$1.sock"

[interfaces]
lan = "eth0"
wan = "eth1"
sync = "eth2"

[carp]
passphrase = "vrrp-tcp-bench"

[statesync]
interface = "sync"
peers = ["$3"]
key = "vrrp tcp benchmark state sync key"

[[vips]]
vhid = 1
interface = "lan"
protocol = "vrrp"
interval_ms = $MS
addresses = ["192.0.2.1/24"]

[[vips]]
vhid = 2
interface = "wan"
protocol = "vrrp"
interval_ms = $MS
addresses = ["198.51.100.1/24"]

[[rules]]
interface = "sync"
action = "pass"
source = "sync:network"
description = "sync link"

[[rules]]
interface = "lan"
action = "pass"
source = "lan:network"
description = "lan out"

[[nat.outbound]]
interface = "wan"
source = "lan:network"
translation = "198.51.100.1"
description = "lan behind the wan VIP"
EOF
}

status() { ns "$1" "$TANDEM" status --json --config "$TMP/$1.toml" 2>/dev/null; }
json() { # NODE PYTHON-EXPRESSION-ON-d
    local s
    s=$(status "$1") || return 1
    python3 -c "import json, sys; d = json.loads(sys.argv[1]); print($2)" "$s" 2>/dev/null
}
# states NODE: the VIPs' states in vhid order (MASTERMASTER ...); keepalived's from its log
states() {
    if [ "$IMPL" = keepalived ]; then
        local i st out=""
        for i in lan wan; do
            st=$(grep -oE "\($i\) Entering [A-Z]+ STATE" "$OUT/keepalived-$1.log" 2>/dev/null | tail -1 | awk '{print $3}')
            out="$out${st:-DOWN}"
        done
        echo "$out"
    else
        json "$1" "''.join(v['state'] for v in sorted(d['vips'], key=lambda v: v['vhid']))" || echo DOWN
    fi
}
settled() {
    [ "$(states fw1)" = MASTERMASTER ] && [ "$(states fw2)" = BACKUPBACKUP ] || return 1
    if [ "$IMPL" = keepalived ]; then
        ctd fw1 -s >/dev/null 2>&1 && ctd fw2 -s >/dev/null 2>&1
    else
        [ "$(json fw1 "d['state_sync']['engine']['ready']")" = True ] &&
            [ "$(json fw2 "d['state_sync']['engine']['ready']")" = True ]
    fi
}
ct_count() { ns "$1" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0; }
# fw2 holds the connections' states: in its kernel (tandem) or conntrackd's external cache
fw2_has_states() {
    if [ "$IMPL" = keepalived ]; then
        [ "$(ctd fw2 -s 2>/dev/null | awk '/^cache / { c = $2 } /current active connections/ && c == "external:" { print $NF + 0; exit }')" -ge "$CONNS" ] 2>/dev/null
    else
        [ "$(ct_count fw2)" -ge "$CONNS" ]
    fi
}

# ---- the peer: keepalived + conntrackd ----

ctd() { local n=$1; shift; ns "$n" conntrackd -C "$OUT/conntrackd-$n.conf" "$@"; }

start_peer() { # NODE
    local n=$1 me peer prio
    if [ "$n" = fw1 ]; then me=203.0.113.1 peer=203.0.113.2 prio=254; else me=203.0.113.2 peer=203.0.113.1 prio=154; fi
    ns "$n" sysctl -qw net.ipv4.ip_forward=1
    ns "$n" sysctl -qw net.netfilter.nf_conntrack_events=1 2>/dev/null || true
    ns "$n" nft -f - <<EOF
table ip vrrptcp {
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "eth1" ip saddr 192.0.2.0/24 snat to 198.51.100.1
    }
}
EOF
    cat >"$OUT/conntrackd-$n.conf" <<EOF
Sync {
    Mode FTFW {
    }
    UDP {
        IPv4_address $me
        IPv4_Destination_Address $peer
        Port 3780
        Interface eth2
        SndSocketBuffer 8388608
        RcvSocketBuffer 8388608
        Checksum on
    }
}
General {
    Systemd no
    HashSize 32768
    HashLimit 131072
    LogFile $OUT/conntrackd-$n.log
    Syslog off
    LockFile $OUT/conntrackd-$n.lock
    UNIX {
        Path $OUT/conntrackd-$n.ctl
    }
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Kernelspace {
        Protocol Accept {
            TCP
            UDP
        }
        Address Ignore {
            IPv4_address 127.0.0.1
            IPv4_address 203.0.113.0/24
        }
    }
}
EOF
    # primary-backup.sh (conntrack-tools' example) with this node's config
    cat >"$OUT/notify-$n.sh" <<EOF
#!/bin/sh
C="conntrackd -C $OUT/conntrackd-$n.conf"
case "\$1" in
    primary) \$C -c; \$C -f; \$C -R; \$C -B ;;
    backup) \$C -n; \$C -t ;;
esac
echo "\$(date +%s.%N) \$1" >>$OUT/notify-$n.log
EOF
    chmod 755 "$OUT/notify-$n.sh"
    local adv
    adv=$(awk -v m="$MS" 'BEGIN { printf "%g", m / 1000 }')
    cat >"$OUT/keepalived-$n.conf" <<EOF
global_defs {
    router_id $n
    vrrp_version 3
    script_user root
    enable_script_security
}
vrrp_sync_group G {
    group {
        lan
        wan
    }
    notify_master "$OUT/notify-$n.sh primary"
    notify_backup "$OUT/notify-$n.sh backup"
    notify_fault "$OUT/notify-$n.sh fault"
}
vrrp_instance lan {
    state BACKUP
    interface eth0
    virtual_router_id 1
    priority $prio
    advert_int $adv
    virtual_ipaddress {
        192.0.2.1/24 dev eth0
    }
}
vrrp_instance wan {
    state BACKUP
    interface eth1
    virtual_router_id 2
    priority $prio
    advert_int $adv
    virtual_ipaddress {
        198.51.100.1/24 dev eth1
    }
}
EOF
    ns "$n" conntrackd -C "$OUT/conntrackd-$n.conf" >>"$OUT/conntrackd-$n.out" 2>&1 &
    PIDS+=($!)
    wait_for 10 ctd "$n" -s >/dev/null 2>&1 || log "conntrackd on $n does not answer: $(tail -3 "$OUT/conntrackd-$n.out")"
    ns "$n" keepalived -P -n -l -D -G -f "$OUT/keepalived-$n.conf" \
        -p "$OUT/keepalived-$n.pid" -r "$OUT/keepalived-$n.vrrp.pid" -c "$OUT/keepalived-$n.chk.pid" \
        >>"$OUT/keepalived-$n.log" 2>&1 &
    PIDS+=($!)
}

capture() { # HOST OUT: the first VRRP packet from fw2's address on HOST's link
    local src=192.0.2.3
    [ "$1" = server ] && src=198.51.100.3
    ns "$1" tcpdump -i eth0 -n -l -p -tt --time-stamp-precision=micro -c 1 "ip proto 112 and src $src" \
        >"$2" 2>"$2.err" &
    PIDS+=($!)
    wait_for 10 grep -q "listening on" "$2.err" || { log "tcpdump did not start: $(cat "$2.err")"; return 1; }
}

# run R: appends "R TAKEOVER_MS ALIVE RESET MEDIAN_MS P99_MS MAX_MS" to $TMP/runs
run() {
    local r=$1 pid t0 out="$TMP/$IMPL-run$1"
    mkdir -p "$out"
    setup "$r"
    OUT=$out
    if [ "$IMPL" = tandem ]; then
        config fw1 0 203.0.113.2 >"$TMP/fw1.toml"
        config fw2 100 203.0.113.1 >"$TMP/fw2.toml"
        rm -f "$TMP"/fw*.sock
        for pid in fw1 fw2; do
            ns "$pid" "$TANDEM" run --config "$TMP/$pid.toml" >"$out/$pid.log" 2>&1 &
            PIDS+=($!)
        done
    else
        start_peer fw1
        start_peer fw2
    fi
    wait_for 60 settled || { log "run $r: the cluster did not settle: fw1 $(states fw1), fw2 $(states fw2)"; return 1; }
    ns server python3 "$TRAFFIC" server 7000 >"$out/server.out" 2>&1 &
    PIDS+=($!)
    wait_for 10 grep -q ready "$out/server.out" || { log "run $r: no echo server"; return 1; }
    rm -f "$TMP/cmd"
    mkfifo "$TMP/cmd"
    ns client python3 "$TRAFFIC" client 198.51.100.10 7000 "$CONNS" 0 50 <"$TMP/cmd" >"$out/client.out" 2>&1 &
    PIDS+=($!)
    exec 3>"$TMP/cmd"
    wait_for 60 grep -q ready "$out/client.out" || { log "run $r: the client's connections did not open: $(tail -3 "$out/client.out")"; return 1; }
    wait_for 30 fw2_has_states || { log "run $r: fw2 holds $(ct_count fw2) states, not $CONNS"; return 1; }
    sleep 2
    capture client "$out/lan.cap"
    capture server "$out/wan.cap"
    echo mark >&3
    sleep 0.2
    t0=$(date +%s.%N)
    ip -n "$P-fw1" link set eth0 down
    ip -n "$P-fw1" link set eth1 down
    ip -n "$P-fw1" link set eth2 down
    for pid in $(ip netns pids "$P-fw1"); do kill -9 "$pid" 2>/dev/null || true; done
    sleep 5
    echo report >&3
    sleep 1
    local fw2states
    fw2states=$(states fw2)
    python3 - "$IMPL $r" "$t0" "$out/lan.cap" "$out/wan.cap" "$out/client.out" "$fw2states" >>"$TMP/runs" <<'EOF'
import json, math, re, sys
r, t0, lan, wan, client, st = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def first(path):
    for line in open(path):
        m = re.match(r'(\d+\.\d+) IP ', line)
        if m:
            return float(m.group(1))
    return None
ts = [first(lan), first(wan)]
take = '-' if None in ts or st != 'MASTERMASTER' else f'{(max(ts) - t0) * 1000:.0f}'
report = None
for line in open(client):
    if line.startswith('{'):
        report = json.loads(line)
flows = report['flows'] if report else []
alive = [f for f in flows if f['error'] is None and f['silent_for'] < 1.0]
p = sorted(f['max_silence'] * 1000 for f in flows) or [0]
med = p[len(p) // 2] if len(p) % 2 else (p[len(p) // 2 - 1] + p[len(p) // 2]) / 2
p99 = p[max(0, math.ceil(0.99 * len(p)) - 1)]
print(f'{r} {take} {len(alive)} {len(flows) - len(alive)} {med:.0f} {p99:.0f} {p[-1]:.0f}')
EOF
    log "$IMPL run $r: $(tail -1 "$TMP/runs") (impl run takeover_ms alive reset median p99 max); fw2 $fw2states"
    echo quit >&3 || true
    teardown
}

: >"$TMP/runs"
VERSIONS="$("$TANDEM" --version | head -1)"
for IMPL in tandem keepalived; do
    case ",$ONLY," in *",$IMPL,"*) ;; *) continue ;; esac
    if [ "$IMPL" = keepalived ]; then
        if ! command -v keepalived >/dev/null || ! command -v conntrackd >/dev/null; then
            log "keepalived or conntrackd not installed: no peer rows"; continue
        fi
        VERSIONS="$VERSIONS, $(keepalived --version 2>&1 | head -1 | awk '{print $1, $2}'), conntrackd $(conntrackd -v 2>&1 | grep -oE 'v[0-9][0-9.]*[0-9]' | head -1)"
    fi
    for r in $(seq 1 "$RUNS"); do
        run "$r" || { log "$IMPL run $r failed"; echo "$IMPL $r failed - - - - -" >>"$TMP/runs"; teardown; }
    done
done

REPORT=$(
    echo "Measured $(date -u +%Y-%m-%d) on Linux $(uname -r), $(nproc) CPUs; $VERSIONS, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)'); VRRPv3 with $MS ms adverts on both VIPs, $CONNS TCP connections each echoing every 50 ms, fw1's power cut (links down, daemon killed)."
    echo
    echo "| implementation | run | takeover (ms) | connections alive | reset or stalled | longest pause per connection: median (ms) | p99 (ms) | max (ms) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    while read -r impl r take alive reset med p99 max; do
        if [ "$take" = failed ]; then echo "| $impl | $r | the run failed (see the log) | | | | | |"; continue; fi
        [ "$impl" = keepalived ] && impl="keepalived + conntrackd"
        echo "| $impl | $r | $take | $alive / $CONNS | $reset | $med | $p99 | $max |"
    done <"$TMP/runs"
    echo
    echo "Takeover = from the power cut until fw2's first advert on both the lan and the wan (bound: 3 × $MS + (256 − 154)/256 × $MS = $(awk -v m="$MS" 'BEGIN { printf "%.1f", 3 * m + 102 * m / 256 }') ms); alive = no error and an echo within the last second, 5 s after the cut; a pause is the longest silence between two echoes of a connection after the cut (each sends every 50 ms, so 50 ms is no pause)."
)
echo "$REPORT"

if [ "$WRITE" = 1 ]; then
    README="$HERE/README.md"
    BEGIN="<!-- vrrp-tcp:begin (generated by bench/vrrp_tcp.sh --write; do not edit by hand) -->"
    END="<!-- vrrp-tcp:end -->"
    grep -qF "<!-- vrrp-tcp:begin" "$README" || printf '\n%s\n%s\n' "$BEGIN" "$END" >>"$README"
    printf '%s\n' "$REPORT" >"$TMP/report.md"
    awk -v b="$BEGIN" -v f="$TMP/report.md" '
        index($0, "<!-- vrrp-tcp:begin") == 1 { print b; while ((getline l < f) > 0) print l; skip = 1; next }
        index($0, "<!-- vrrp-tcp:end") == 1 { skip = 0 }
        !skip { print }' "$README" >"$TMP/README.new"
    cat "$TMP/README.new" >"$README"
    log "updated the vrrp-tcp section of $README"
fi
