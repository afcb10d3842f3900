#!/usr/bin/env bash
# Established TCP connections through planned and unplanned switchovers, Tandem (CARP, advbase 1)
# against keepalived + conntrackd (VRRPv3, advert_int 1), in one sitting (issue 12, "Measure").
#
# Topology (network namespaces unique per run, removed by a trap):
#
#   client 192.0.2.10 ── lan ── fw1 .2 (master: advskew 0 / priority 254) ── wan ── server 198.51.100.10
#                            ├─ fw2 .3 (backup: advskew 100 / priority 154) ──┤
#                            └─ fw3 .4 (three-nodes only: advskew 200) ───────┘
#   fwN eth2 203.0.113.N on a sync switch (state sync between every pair of nodes)
#   VIPs 192.0.2.1 (vhid 1, lan; the client's gateway) and 198.51.100.1 (vhid 2, wan; outbound
#   NAT of the lan to it).
#
# Each run: the nodes start, state sync is ready; the client opens CONNS TCP connections to the
# server (crates/tandem/tests/traffic.py), each sending a line every 50 ms and waiting for its echo;
# once fw2's kernel (or conntrackd's external cache) holds their states, the event happens:
#   links-down   fw1 loses power: its three links go down, every process in it is killed (-9)
#   stop         SIGTERM to the master's daemon (keepalived: SIGTERM to keepalived)
#   stop-busy    the same while 2 busy loops (one per core) run from 1 s before to 3 s after
#   maintenance  tandem: `tandem maintenance enter` on fw1 (n/a when the build has no such
#                command); keepalived: fw1's priority lowered to 100 (below fw2's 154) by a
#                config reload (SIGHUP), so fw2 preempts: keepalived has no maintenance command
#   three-nodes  tandem only: fw1 loses power; 6 s later fw2 loses power (fw3 takes over); 14 s
#                after that fw1 comes back (links up, daemon started: bulk sync, then it
#                preempts)
# Measured per run: connections alive at the end (no error, an echo within the last second) or
# reset/stalled; the longest pause per connection (the longest silence between two echoes;
# three-nodes: per failover, by when the pause began); takeover (from the event until the new
# master's first advert on both the lan and the wan, tcpdump in the client's and server's
# namespaces); TCP retransmissions (RetransSegs of /proc/net/snmp, as `nstat -az
# TcpRetransSegs`, in the client's and the server's namespace, delta over the event).
# three-nodes also counts the connections that got no echo at all while fw2 was master
# ("missed fw2": the bug of issue 12) and keeps every run's logs (status snapshots every
# 0.5 s, conntrack counts, counters of a bench nft table on fw2, neighbour caches of client and
# server, a capture of fw2's links) in the temp dir; --keep keeps them.
#
# Usage: sudo bench/switchover.sh [-c CONNS] [-n RUNS] [--events LIST] [--only LIST] [--write]
#                                 [--keep] [--no-build]
#   -c CONNS      TCP connections (default 1000)
#   -n RUNS       runs per row, each from new namespaces and daemons (default 3)
#   --events LIST comma-separated subset of links-down,stop,stop-busy,maintenance,three-nodes
#                 (default all)
#   --only LIST   comma-separated subset of tandem,keepalived (default both)
#   --write       replace the marked switchover section of bench/README.md with the results
#   --keep        keep the temp dir (configs, logs, captures, client reports)
#   --no-build    use target/release/tandem as it is
#   --unres-qlen-bytes N  set net.ipv4.neigh.{eth0,eth1}.unres_qlen_bytes on the firewalls (the
#                 packets a node queues per neighbour while it resolves it; kernel default 212992):
#                 small values make the three-nodes bug of issue 12 happen in every run, big
#                 ones make it go away (see bench/README.md)
# Needs: root, iproute2, nftables, tcpdump, python3; keepalived and conntrackd for the peer rows.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=3
CONNS=1000
EVENTS="links-down,stop,stop-busy,maintenance,three-nodes"
ONLY="tandem,keepalived"
WRITE=0
KEEP=0
BUILD=1
UNRES=""
while [ $# -gt 0 ]; do
    case "$1" in
        -n|--runs) RUNS=$2; shift 2 ;;
        -c|--conns) CONNS=$2; shift 2 ;;
        --events) EVENTS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --write) WRITE=1; shift ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --unres-qlen-bytes) UNRES=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for v in RUNS CONNS; do
    case "${!v}" in ''|*[!0-9]*|0) echo "${v,,} needs a positive integer" >&2; exit 2 ;; esac
done
for e in ${EVENTS//,/ }; do
    case "$e" in links-down|stop|stop-busy|maintenance|three-nodes) ;; *) echo "--events: unknown event $e" >&2; exit 2 ;; esac
done
[ "$(id -u)" = 0 ] || { echo "switchover.sh must run as root (network namespaces)" >&2; exit 1; }
for c in ip nft tcpdump python3 awk; do
    command -v "$c" >/dev/null || { echo "$c not found (apt-get install iproute2 nftables tcpdump python3)" >&2; exit 1; }
done

TANDEM="${TANDEM:-$ROOT/target/release/tandem}"
TRAFFIC="$HERE/../crates/tandem/tests/traffic.py"
if [ "$BUILD" = 1 ]; then
    echo "[switchover.sh] building tandem in release mode" >&2
    (cd "$ROOT" && cargo build --release -q -p tandem --bin tandem)
fi
[ -x "$TANDEM" ] || { echo "${TANDEM#"$ROOT"/} not found (build it, or drop --no-build)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/switchover.XXXXXX)
P=""
PIDS=()
log() { echo "[$(date +%T)] $*" >&2; }
now_ns() { date +%s%N; }
NODES="fw1 fw2"
HOSTS="client server fw1 fw2 fw3 lan wan sync"

teardown() {
    set +e
    { exec 3>&-; } 2>/dev/null
    local pid h
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [ -n "$P" ]; then
        for h in $HOSTS; do
            for pid in $(ip netns pids "$P-$h" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        done
    fi
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    PIDS=()
    if [ -n "$P" ]; then
        for h in $HOSTS; do ip netns del "$P-$h" 2>/dev/null; done
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
idx() { echo "${1#fw}"; }

# ---- topology ---------------------------------------------------------------------------------

setup() { # TAG
    local sw h port=0 i
    P="swo$$$1"
    for sw in lan wan sync; do
        ip netns add "$P-$sw"
        ip -n "$P-$sw" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
        ip -n "$P-$sw" link set br0 up
    done
    for h in client server $NODES; do ip netns add "$P-$h"; ip -n "$P-$h" link set lo up; done
    attach() { # HOST DEV SWITCH ADDR
        ip -n "$P-$1" link add "$2" type veth peer name "p$port" netns "$P-$3"
        ip -n "$P-$3" link set "p$port" master br0 up
        ip -n "$P-$1" addr add "$4" dev "$2"
        ip -n "$P-$1" link set "$2" up
        port=$((port + 1))
    }
    attach client eth0 lan 192.0.2.10/24
    attach server eth0 wan 198.51.100.10/24
    for h in $NODES; do
        i=$(idx "$h")
        attach "$h" eth0 lan "192.0.2.$((i + 1))/24"
        attach "$h" eth1 wan "198.51.100.$((i + 1))/24"
        attach "$h" eth2 sync "203.0.113.$i/24"
    done
    ns client ip route add default via 192.0.2.1
    if [ -n "$UNRES" ]; then
        for h in $NODES; do
            ns "$h" sysctl -qw "net.ipv4.neigh.eth0.unres_qlen_bytes=$UNRES" "net.ipv4.neigh.eth1.unres_qlen_bytes=$UNRES"
        done
    fi
}

links() { # NODE up|down
    local d
    for d in eth0 eth1 eth2; do ip -n "$P-$1" link set "$d" "$2"; done
}

# ---- tandem -----------------------------------------------------------------------------------

config() { # NODE SKEW
    local peers="" h
    for h in $NODES; do [ "$h" = "$1" ] || peers="$peers${peers:+, }\"203.0.113.$(idx "$h")\""; done
    cat <<EOF
[node]
name = "$1"
advskew = $2
preempt = true
control_socket = "$TMP/$1.sock"
state_dir = "$TMP/$1-state"

[interfaces]
lan = "eth0"
wan = "eth1"
sync = "eth2"

[carp]
passphrase = "switchover-bench"
advbase = 1

[statesync]
interface = "sync"
peers = [$peers]
key = "switchover benchmark state sync key"

[[vips]]
vhid = 1
interface = "lan"
addresses = ["192.0.2.1/24"]

[[vips]]
vhid = 2
interface = "wan"
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

start_tandem() { # NODE
    ns "$1" "$TANDEM" run --config "$TMP/$1.toml" >>"$OUT/$1.log" 2>&1 &
    PIDS+=($!)
}
status() { ns "$1" "$TANDEM" status --json --config "$TMP/$1.toml" 2>/dev/null; }
json() { # NODE PYTHON-EXPRESSION-ON-d
    local s
    s=$(status "$1") || return 1
    python3 -c "import json, sys; d = json.loads(sys.argv[1]); print($2)" "$s" 2>/dev/null
}

# ---- the peer: keepalived + conntrackd (conntrack-tools' primary-backup.sh way) ---------------

ctd() { local n=$1; shift; ns "$n" conntrackd -C "$OUT/conntrackd-$n.conf" "$@"; }

keepalived_conf() { # NODE PRIORITY
    cat <<EOF
global_defs {
    router_id $1
    vrrp_version 3
    script_user root
    enable_script_security
}
vrrp_sync_group G {
    group {
        lan
        wan
    }
    notify_master "$OUT/notify-$1.sh primary"
    notify_backup "$OUT/notify-$1.sh backup"
    notify_fault "$OUT/notify-$1.sh fault"
}
vrrp_instance lan {
    state BACKUP
    interface eth0
    virtual_router_id 1
    priority $2
    advert_int 1
    virtual_ipaddress {
        192.0.2.1/24 dev eth0
    }
}
vrrp_instance wan {
    state BACKUP
    interface eth1
    virtual_router_id 2
    priority $2
    advert_int 1
    virtual_ipaddress {
        198.51.100.1/24 dev eth1
    }
}
EOF
}

start_peer() { # NODE
    local n=$1 me peer prio
    if [ "$n" = fw1 ]; then me=203.0.113.1 peer=203.0.113.2 prio=254; else me=203.0.113.2 peer=203.0.113.1 prio=154; fi
    ns "$n" sysctl -qw net.ipv4.ip_forward=1
    ns "$n" sysctl -qw net.netfilter.nf_conntrack_events=1 2>/dev/null || true
    ns "$n" nft -f - <<EOF
table ip swobench {
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
    keepalived_conf "$n" "$prio" >"$OUT/keepalived-$n.conf"
    ns "$n" conntrackd -C "$OUT/conntrackd-$n.conf" >>"$OUT/conntrackd-$n.out" 2>&1 &
    PIDS+=($!)
    wait_for 10 ctd "$n" -s >/dev/null 2>&1 || log "conntrackd on $n does not answer: $(tail -3 "$OUT/conntrackd-$n.out")"
    ns "$n" keepalived -P -n -l -D -G -f "$OUT/keepalived-$n.conf" \
        -p "$OUT/keepalived-$n.pid" -r "$OUT/keepalived-$n.vrrp.pid" -c "$OUT/keepalived-$n.chk.pid" \
        >>"$OUT/keepalived-$n.log" 2>&1 &
    PIDS+=($!)
}

# ---- both -------------------------------------------------------------------------------------

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
    local h
    [ "$(states fw1)" = MASTERMASTER ] || return 1
    for h in $NODES; do [ "$h" = fw1 ] || [ "$(states "$h")" = BACKUPBACKUP ] || return 1; done
    if [ "$IMPL" = keepalived ]; then
        ctd fw1 -s >/dev/null 2>&1 && ctd fw2 -s >/dev/null 2>&1
    else
        for h in $NODES; do [ "$(json "$h" "d['state_sync']['engine']['ready']")" = True ] || return 1; done
    fi
}
ct_count() { ns "$1" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0; }
# every backup holds the connections' states: in its kernel (tandem) or conntrackd's external cache
backups_have_states() {
    local h
    if [ "$IMPL" = keepalived ]; then
        [ "$(ctd fw2 -s 2>/dev/null | awk '/^cache / { c = $2 } /current active connections/ && c == "external:" { print $NF + 0; exit }')" -ge "$CONNS" ] 2>/dev/null
    else
        for h in $NODES; do [ "$(ct_count "$h")" -ge "$CONNS" ] || return 1; done
    fi
}
# packets dropped while their neighbour was being resolved, all namespaces (the kernel counts
# them per table, not per namespace): /proc/net/stat/arp_cache's unresolved_discards, per CPU
arp_discards() {
    python3 -c 'import sys; print(sum(int(l.split()[11], 16) for l in list(open(sys.argv[1]))[1:]))' /proc/net/stat/arp_cache 2>/dev/null || echo 0
}
retrans() { # HOST: TCP RetransSegs in HOST's namespace
    ns "$1" awk '/^Tcp:/ { if (!n) { for (i = 1; i <= NF; i++) if ($i == "RetransSegs") c = i; n = 1 } else print $c }' /proc/net/snmp
}

capture() { # HOST FILE: every CARP/VRRP packet on HOST's link, all run long
    ns "$1" tcpdump -i eth0 -n -l -p -tt --time-stamp-precision=micro "ip proto 112" >"$2" 2>"$2.err" &
    PIDS+=($!)
    wait_for 10 grep -q "listening on" "$2.err" || { log "tcpdump did not start: $(cat "$2.err")"; return 1; }
}

busy_loops() { # SECONDS: two busy loops (both cores) for that long, in the background
    local i
    for i in 1 2; do
        timeout "$1" bash -c 'while :; do :; done' &
        PIDS+=($!)
    done
}

# the daemon's own pid (not the subshell's that `ns ... &` starts): keepalived's pid file, or
# tandem's node lock (it holds the daemon's pid)
daemon_pid() {
    local f="$TMP/$1.sock.lock"
    [ "$IMPL" = keepalived ] && f="$OUT/keepalived-$1.pid"
    tr -dc '0-9' <"$f"
}

has_maintenance() { "$TANDEM" maintenance --help >/dev/null 2>&1; }

# three-nodes diagnostics: every 0.5 s one line per node and endpoint (states, conntrack count,
# the bench table's counters on fw2, the client's and server's neighbour entries for the VIPs)
watch_cluster() {
    local h
    while :; do
        {
            echo "== $(date +%s.%N)"
            for h in $NODES; do
                echo "$h $(states "$h") ct=$(ct_count "$h") $(json "$h" "'sync ready=%s' % d['state_sync']['engine']['ready']" 2>/dev/null)"
            done
            echo "client $(ns client ip neigh show 192.0.2.1 2>/dev/null)"
            echo "server $(ns server ip neigh show 198.51.100.1 2>/dev/null)"
            ns fw2 nft list table inet swodiag 2>/dev/null | grep -E 'counter' | sed 's/^\s*/fw2 nft /'
        } >>"$OUT/watch.log"
        sleep 0.5
    done
}
diag_table() { # NODE: a table of counters, no verdicts
    ns "$1" nft -f - <<'EOF'
table inet swodiag {
    chain diag_forward {
        type filter hook forward priority -300;
        iifname "eth0" ct state invalid counter comment "lan in invalid"
        iifname "eth0" ct state established counter comment "lan in established"
        iifname "eth0" ct state new counter comment "lan in new"
        iifname "eth1" ct state invalid counter comment "wan in invalid"
        iifname "eth1" ct state established counter comment "wan in established"
        iifname "eth1" ct state new counter comment "wan in new"
    }
    chain diag_prerouting {
        type filter hook prerouting priority -350;
        iifname "eth0" ip saddr 192.0.2.10 counter comment "lan from client"
        iifname "eth1" ip saddr 198.51.100.10 counter comment "wan from server"
    }
}
EOF
}

# ---- one run ----------------------------------------------------------------------------------

# run EVENT R: appends "IMPL EVENT R ALIVE RESET MED P99 MAX TAKEOVER RETRANS_CLIENT RETRANS_SERVER MISSED" to $TMP/runs
run() {
    local ev=$1 r=$2 h t0 ts rc0 rs0 rc1 rs1 ad0 ad1 out="$TMP/$IMPL-$1-run$2" events=""
    mkdir -p "$out"
    OUT=$out
    if [ "$ev" = three-nodes ]; then NODES="fw1 fw2 fw3"; else NODES="fw1 fw2"; fi
    setup "$r"
    if [ "$IMPL" = tandem ]; then
        rm -rf "$TMP"/fw*.sock "$TMP"/fw*.sock.lock "$TMP"/fw*-state
        for h in $NODES; do
            config "$h" $(( ($(idx "$h") - 1) * 100 )) >"$TMP/$h.toml"
            start_tandem "$h"
        done
    else
        start_peer fw1
        start_peer fw2
    fi
    wait_for 90 settled || { log "$IMPL $ev run $r: the cluster did not settle: $(for h in $NODES; do echo -n "$h $(states "$h") "; done)"; return 1; }
    ns server python3 "$TRAFFIC" server 7000 >"$out/server.out" 2>&1 &
    PIDS+=($!)
    wait_for 10 grep -q ready "$out/server.out" || { log "$IMPL $ev run $r: no echo server"; return 1; }
    rm -f "$TMP/cmd"
    mkfifo "$TMP/cmd"
    ns client python3 "$TRAFFIC" client 198.51.100.10 7000 "$CONNS" 0 50 <"$TMP/cmd" >"$out/client.out" 2>&1 &
    PIDS+=($!)
    exec 3>"$TMP/cmd"
    wait_for 120 grep -q ready "$out/client.out" || { log "$IMPL $ev run $r: the client's connections did not open: $(tail -3 "$out/client.out")"; return 1; }
    wait_for 60 backups_have_states || { log "$IMPL $ev run $r: the backups hold $(for h in $NODES; do echo -n "$h $(ct_count "$h") "; done)states, not $CONNS"; return 1; }
    if [ "$ev" = three-nodes ]; then
        diag_table fw2
        ns fw2 tcpdump -i eth0 -n -p -s 96 -w "$out/fw2-lan.pcap" >/dev/null 2>&1 &
        PIDS+=($!)
        ns fw2 tcpdump -i eth1 -n -p -s 96 -w "$out/fw2-wan.pcap" >/dev/null 2>&1 &
        PIDS+=($!)
        watch_cluster &
        PIDS+=($!)
    fi
    sleep 2
    capture client "$out/lan.cap"
    capture server "$out/wan.cap"
    echo mark >&3
    sleep 0.2
    [ "$ev" = stop-busy ] && { busy_loops 4; sleep 1; }
    rc0=$(retrans client) rs0=$(retrans server) ad0=$(arp_discards)
    if [ "$ev" = three-nodes ]; then
        for h in $NODES; do ns "$h" conntrack -L -o extended,id 2>/dev/null >"$out/ct-$h-before.txt" || true; done
    fi
    t0=$(date +%s.%N)
    case "$ev" in
        links-down|three-nodes)
            links fw1 down
            for h in $(ip netns pids "$P-fw1"); do kill -9 "$h" 2>/dev/null || true; done
            events="fw1:fw2:$t0"
            ;;
        stop|stop-busy)
            kill -TERM "$(daemon_pid fw1)"
            events="fw1:fw2:$t0"
            ;;
        maintenance)
            if [ "$IMPL" = tandem ]; then
                ns fw1 "$TANDEM" maintenance enter --config "$TMP/fw1.toml" >>"$out/fw1.cli" 2>&1 ||
                    log "maintenance enter failed: $(tail -2 "$out/fw1.cli")"
            else
                keepalived_conf fw1 100 >"$OUT/keepalived-fw1.conf"
                kill -HUP "$(daemon_pid fw1)"
            fi
            events="fw1:fw2:$t0"
            ;;
    esac
    if [ "$ev" = three-nodes ]; then
        # fw2 is master from about +3 s: its table while it is, and its ruleset with counters
        sleep 4.5
        ns fw2 conntrack -L -o extended,id 2>/dev/null >"$out/ct-fw2-master.txt" || true
        ns fw3 conntrack -L -o extended,id 2>/dev/null >"$out/ct-fw3-fw2master.txt" || true
        ns fw2 nft list ruleset >"$out/nft-fw2-master.txt" 2>&1 || true
        sleep 1.5
        ts=$(date +%s.%N)
        links fw2 down
        for h in $(ip netns pids "$P-fw2"); do kill -9 "$h" 2>/dev/null || true; done
        events="$events fw2:fw3:$ts"
        sleep 14
        ts=$(date +%s.%N)
        links fw1 up
        start_tandem fw1
        events="$events fw1:fw1:$ts"
        sleep 14
    else
        sleep 8
    fi
    echo report >&3
    sleep 1
    rc1=$(retrans client) rs1=$(retrans server)
    ad1=$(arp_discards)
    echo "$((ad1 - ad0)) packets dropped on unresolved neighbours (all namespaces)" >"$out/arp-discards.txt"
    python3 - "$IMPL $ev $r" "$events" "$out/lan.cap" "$out/wan.cap" "$out/client.out" \
        "$((rc1 - rc0)) $((rs1 - rs0))" "$out/fw2-lan.pcap" "$out/fw2-wan.pcap" >>"$TMP/runs" <<'EOF'
import json, math, re, subprocess, sys
tag, events, lan, wan, client, retr, fw2lan, fw2wan = sys.argv[1:9]
events = [(a, b, float(t)) for a, b, t in (e.split(':') for e in events.split())]
ADDR = {'lan': {'fw1': '192.0.2.2', 'fw2': '192.0.2.3', 'fw3': '192.0.2.4'},
        'wan': {'fw1': '198.51.100.2', 'fw2': '198.51.100.3', 'fw3': '198.51.100.4'}}
def adverts(path):
    out = []
    for line in open(path):
        m = re.match(r'(\d+\.\d+) IP (\d+\.\d+\.\d+\.\d+) > ', line)
        if m:
            out.append((float(m.group(1)), m.group(2)))
    return out
caps = {'lan': adverts(lan), 'wan': adverts(wan)}
def takeover(node, t):
    ts = []
    for link in ('lan', 'wan'):
        first = next((s for s, src in caps[link] if s > t and src == ADDR[link][node]), None)
        if first is None:
            return None
        ts.append(first)
    return max(ts)
report = None
for line in open(client):
    if line.startswith('{'):
        report = json.loads(line)
flows = report['flows'] if report else []
alive = [f for f in flows if f['error'] is None and f['silent_for'] < 1.0]
def stats(p):
    p = sorted(p) or [0]
    med = p[len(p) // 2] if len(p) % 2 else (p[len(p) // 2 - 1] + p[len(p) // 2]) / 2
    return med, p[max(0, math.ceil(0.99 * len(p)) - 1)], p[-1]
takes = [takeover(new, t) for _, new, t in events]
take = '/'.join('-' if tk is None else f'{tk - t:.2f}' for tk, (_, _, t) in zip(takes, events))
if len(events) == 1:
    med, p99, mx = stats([f['max_silence'] for f in flows])
    pauses = f'{med:.2f} {p99:.2f} {mx:.2f}'
    missed = '-'
else:
    # per failover: the longest gap that began in its window (from 0.1 s before the event
    # to 0.1 s before the next one); 0 = no silence over 0.2 s
    bounds = [t - 0.1 for _, _, t in events] + [float('inf')]
    cols = []
    for i in range(len(events)):
        per = [max([g[1] - g[0] for g in f['gaps'] if bounds[i] <= g[0] < bounds[i + 1]] or [0]) for f in flows]
        cols.append(stats(per))
    pauses = ' '.join('/'.join(f'{c[k]:.2f}' for c in cols) for k in range(3))
    # missed fw2: no echo at all from fw2's takeover + 1 s until fw2's death
    lo, hi = (takes[0] or events[0][2]) + 1.0, events[1][2]
    missed = sum(1 for f in flows if any(g[0] <= lo and g[1] >= hi for g in f['gaps']))
    # lost in fw2: connections whose segments reached fw2's lan link while it was master and
    # none of which left on its wan link (fw2's captures)
    def ports(pcap, filt, t_from, t_to):
        out = subprocess.run(['tcpdump', '-r', pcap, '-n', '-tt', filt], capture_output=True, text=True).stdout
        s = set()
        for line in out.splitlines():
            f = line.split()
            if len(f) > 4 and t_from <= float(f[0]) < t_to:
                s.add(f[2].rsplit('.', 1)[1])
        return s
    t_from = takes[0] or events[0][2]
    lost = len(ports(fw2lan, 'tcp and src host 192.0.2.10 and dst port 7000', t_from, hi)
               - ports(fw2wan, 'tcp and src host 198.51.100.1 and dst port 7000', t_from, hi))
    missed = f'{missed}/{lost}'
print(f'{tag} {len(alive)} {len(flows) - len(alive)} {pauses} {take} {retr} {missed}')
EOF
    log "$IMPL $ev run $r: $(tail -1 "$TMP/runs" | cut -d' ' -f4-) (alive reset median p99 max takeover retrans-client retrans-server missed-fw2/lost-in-fw2); $(cat "$out/arp-discards.txt")"
    if [ "$ev" = three-nodes ]; then
        for h in $NODES; do cp "$TMP/$h.toml" "$out/" 2>/dev/null || true; done
        local missed
        missed=$(tail -1 "$TMP/runs" | awk '{print $NF}')
        if [ "$missed" != 0/0 ]; then log "three-nodes run $r: $missed connections missed fw2; logs in $out"; KEEP=1; fi
    fi
    echo quit >&3 || true
    teardown
    [ "$ev" = three-nodes ] && [ "$(tail -1 "$TMP/runs" | awk '{print $NF}')" = 0/0 ] && rm -f "$out"/*.pcap
    return 0
}

: >"$TMP/runs"
VERSIONS="$("$TANDEM" --version | head -1)"
MAINT_NOTE=""
for IMPL in tandem keepalived; do
    case ",$ONLY," in *",$IMPL,"*) ;; *) continue ;; esac
    if [ "$IMPL" = keepalived ]; then
        if ! command -v keepalived >/dev/null || ! command -v conntrackd >/dev/null; then
            log "keepalived or conntrackd not installed: no peer rows"; continue
        fi
        VERSIONS="$VERSIONS, $(keepalived --version 2>&1 | head -1 | awk '{print $1, $2}'), conntrackd $(conntrackd -v 2>&1 | grep -oE 'v[0-9][0-9.]*[0-9]' | head -1)"
    fi
    for ev in ${EVENTS//,/ }; do
        if [ "$IMPL" = keepalived ] && [ "$ev" = three-nodes ]; then continue; fi
        if [ "$IMPL" = tandem ] && [ "$ev" = maintenance ] && ! has_maintenance; then
            echo "tandem maintenance n/a" >>"$TMP/runs"
            MAINT_NOTE=" \`tandem maintenance\` is not in this build: its row is n/a."
            continue
        fi
        for r in $(seq 1 "$RUNS"); do
            run "$ev" "$r" || { log "$IMPL $ev run $r failed"; echo "$IMPL $ev $r failed" >>"$TMP/runs"; teardown; }
        done
    done
done

REPORT=$(
    echo "Measured $(date -u +%Y-%m-%d) on Linux $(uname -r), $(nproc) CPUs; $VERSIONS, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)'); Tandem with CARP, advbase 1, skews 0/100(/200); keepalived with VRRPv3, advert_int 1, priorities 254/154; $CONNS TCP connections each echoing every 50 ms through the NAT to the wan VIP.$MAINT_NOTE"
    echo
    echo "| implementation | event | run | alive | reset or stalled | longest pause per connection: median (s) | p99 (s) | max (s) | takeover (s) | TCP retransmissions client / server | missed fw2 / lost in fw2 |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    while read -r impl ev r alive reset med p99 max take rc rs missed; do
        [ "$impl" = keepalived ] && impl="keepalived + conntrackd"
        if [ "$r" = n/a ]; then echo "| $impl | $ev | n/a | | | | | | | | |"; continue; fi
        if [ "$alive" = failed ]; then echo "| $impl | $ev | $r | the run failed (see the log) | | | | | | | |"; continue; fi
        echo "| $impl | $ev | $r | $alive / $CONNS | $reset | $med | $p99 | $max | $take | $rc / $rs | $missed |"
    done <"$TMP/runs"
    echo
    echo "alive = no error and an echo within the last second at the end; a pause is the longest silence between two echoes after the event (each connection sends every 50 ms: 0.05 s is no pause). Takeover = from the event until the new master's first advert on both the lan and the wan. three-nodes has three values per cell: fw1's power cut (fw2 takes over), fw2's power cut 6 s later (fw3 takes over), fw1's return 14 s after that (fw1 preempts once its bulk sync is done; its takeover counts from its restart); a pause belongs to the failover in whose window it began, 0 = no silence over 0.2 s. Missed fw2 = connections with no echo at all from fw2's takeover + 1 s until fw2's power cut; lost in fw2 = connections whose segments reached fw2's lan link while it was master and none of which left on its wan link (captures on fw2). Retransmissions: RetransSegs in the client's and the server's namespaces, delta over the event."
)
echo "$REPORT"

if [ "$WRITE" = 1 ]; then
    README="$HERE/README.md"
    BEGIN="<!-- switchover:begin (generated by bench/switchover.sh --write; do not edit by hand) -->"
    END="<!-- switchover:end -->"
    grep -qF "<!-- switchover:begin" "$README" || printf '\n%s\n%s\n' "$BEGIN" "$END" >>"$README"
    printf '%s\n' "$REPORT" >"$TMP/report.md"
    awk -v b="$BEGIN" -v f="$TMP/report.md" '
        index($0, "<!-- switchover:begin") == 1 { print b; while ((getline l < f) > 0) print l; skip = 1; next }
        index($0, "<!-- switchover:end") == 1 { skip = 0 }
        !skip { print }' "$README" >"$TMP/README.new"
    cat "$TMP/README.new" >"$README"
    log "updated the switchover section of $README"
fi
