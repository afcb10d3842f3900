#!/usr/bin/env bash
# CARP adverts under load: how regularly the master's adverts leave while its daemon is busy
# with something else (config sync TLS and XML, conntrack bursts, nft, status requests).
#
# Topology (network namespaces, unique per run of this script, removed by a trap):
#
#     client 192.0.2.10 ── lan switch ── fw1 eth0 192.0.2.2  (master, advskew 0)
#                                     └─ fw2 ens5 192.0.2.3  (backup, advskew 100)
#                          wan switch ── fw1 eth1 198.51.100.2, fw2 ens6 198.51.100.3
#     flood 203.0.113.10 ─ sync switch ─ fw1 eth2 203.0.113.1, fw2 ens7 203.0.113.2
#     VIPs 192.0.2.1 (vhid 1, lan) and 198.51.100.1 (vhid 2, wan); preempt on both nodes.
#
# Config sync: fw2 is the primary and fw1 the peer, so a push lands on the master; state sync
# runs over the sync switch. tcpdump in the client captures every CARP packet on the lan
# (`ip proto 112`, microsecond timestamps). For each load in turn it captures for a fixed
# window (the load starts 1 s into it) and reports fw1's adverts: how many, the longest and the
# p99 interval between consecutive ones (and the longest over advbase), and whether fw2 took
# over (any advert from fw2 in the window; its `tandem status --json` state after it).
#
# Loads:
#   0 idle      nothing
#   1 flood     from the flood host: CONNS idle TCP connections to fw1's config-sync port held
#               open, plus HANDSHAKERS threads doing TLS handshakes back to back
#               (the server closes an idle one after its TLS handshake timeout: it is redialled)
#   2 push      fw2 (primary) reloads a config with RULES rules and pushes it to fw1
#   3 states    `ctbench fill STATES` in fw1's namespace: a burst of new conntrack entries,
#               replicated to fw2 by state sync (capped below the kernel's nf_conntrack_max),
#               then `ctbench flush`: a burst of deletions
#   4 reload    fw1's own file gets RULES other rules, `tandem reload` on fw1 (a slow nft -f;
#               on a config-sync peer that is a local edit, reported as drift)
#   5 status    STATUS_LOOPS loops of `tandem status --json` against fw1, back to back (with a
#               file holding only fw1's node-local part, so the client does not parse 20k rules)
#   6 cpu       both cores busy: one busy loop per CPU (`nice -n 0`, in fw1's namespace) for the
#               window (the load starts 1 s into it and ends 1 s before its end)
#   7 nft       RULES rules loaded into fw1's kernel with `nft -f` (a table of the script's own,
#               replaced on each load), repeated: the kernel work of a reload without the daemon
# Loads can be named by number or by name (idle,flood,push,states,reload,status,cpu,nft).
#
# VRRP (--vrrp-ms MS): both VIPs become `protocol = "vrrp"` with `interval_ms = MS` on both
# nodes (priority 254 - advskew: fw1 254, fw2 154); the analysis takes MS as the expected
# interval. A take-over is any advert from fw2 or any transition of fw2; each row counts the
# transitions of both nodes in the window (the sum of `vips[].transitions` in `tandem status
# --json`, before and after the window). Then, as the peer's figure in the same run, tandem stops
# (priority 0) and keepalived (VRRPv3, `advert_int` MS/1000 s, priorities 254/154, the same two
# VIPs, preempt) runs on fw1 and fw2 for the loads of --peer-loads (default idle,cpu); its
# transitions are its log lines "Entering MASTER|BACKUP|FAULT STATE" in the window. keepalived
# runs those loads twice: as Debian ships it (its VRRP process at nice 0), then with
# `vrrp_priority -10` in global_defs (the nice of tandem's CARP thread). Those rows
# go to their own marked section of bench/README.md (adverts-vrrp), not the CARP one.
# Loads 2-4 are events: each is repeated back to back (with other rules each time) until the
# window's last second, so that more of them fall on an advert's due time: a stall of the
# daemon shows only when an advert falls due during it. Between loads the cluster settles
# (fw1 master, fw2 backup, state tables drained).
#
# Usage: sudo bench/adverts.sh [--advbase S] [--window S] [--loads LIST] [--conns N]
#                              [--handshakers N] [--rules N] [--states N] [--status-loops N]
#                              [--vrrp-ms MS] [--peer-loads LIST]
#                              [--write] [--keep] [--no-build]
#   --advbase S       CARP advbase in seconds for both nodes (default 1)
#   --vrrp-ms MS      VIPs speak VRRPv3 with MS ms adverts (10 ms steps) instead of CARP
#   --peer-loads LIST with --vrrp-ms: the loads keepalived runs under: idle, cpu, nft
#                     (default idle,cpu; none)
#   --window S        capture window per load in seconds (default 20; at least 5 adverts)
#   --loads LIST      comma-separated subset of 0-7 or their names (default 0-5;
#                     with --vrrp-ms idle,states,reload,cpu)
#   --conns N         idle connections of the flood (default 1000)
#   --handshakers N   TLS handshake threads of the flood (default 4)
#   --rules N         rules of the big configs (default 20000)
#   --states N        conntrack entries of the burst (default 300000)
#   --status-loops N  parallel status loops (default 4)
#   --write           replace the marked adverts section of bench/README.md with the results
#                     (with --vrrp-ms: the adverts-vrrp section)
#   --keep            keep the temp dir (configs, daemon logs, captures)
#   --no-build        use the binaries in target/release as they are
# Needs: root, iproute2, nftables, tcpdump, python3 (Debian packages), keepalived for the VRRP
# peer rows (skipped without it); builds the release
# `tandem` and `ctbench` (crate bench-tools if bench/tools/Cargo.toml exists, else lab).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ADVBASE=1
WINDOW=20
LOADS=""
VRRP_MS=0
PEER_LOADS="idle,cpu"
CONNS=1000
HANDSHAKERS=4
RULES=20000
STATES=300000
STATUS_LOOPS=4
WRITE=0
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --advbase) ADVBASE=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --loads) LOADS=$2; shift 2 ;;
        --vrrp-ms) VRRP_MS=$2; shift 2 ;;
        --peer-loads) PEER_LOADS=$2; shift 2 ;;
        --conns) CONNS=$2; shift 2 ;;
        --handshakers) HANDSHAKERS=$2; shift 2 ;;
        --rules) RULES=$2; shift 2 ;;
        --states) STATES=$2; shift 2 ;;
        --status-loops) STATUS_LOOPS=$2; shift 2 ;;
        --write) WRITE=1; shift ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for v in ADVBASE WINDOW CONNS HANDSHAKERS RULES STATES STATUS_LOOPS; do
    case "${!v}" in ''|*[!0-9]*|0) echo "--$(tr 'A-Z_' 'a-z-' <<<"$v") needs a positive integer" >&2; exit 2 ;; esac
done
[ "$ADVBASE" -le 254 ] || { echo "--advbase: 1-254 seconds" >&2; exit 2; }
case "$VRRP_MS" in ''|*[!0-9]*) echo "--vrrp-ms needs a number of milliseconds" >&2; exit 2 ;; esac
if [ "$VRRP_MS" != 0 ]; then
    { [ $((VRRP_MS % 10)) = 0 ] && [ "$VRRP_MS" -le 40950 ]; } || { echo "--vrrp-ms: 10 to 40950 ms in 10 ms steps" >&2; exit 2; }
    INTERVAL_MS=$VRRP_MS
    [ -n "$LOADS" ] || LOADS="idle,states,reload,cpu"
else
    INTERVAL_MS=$((ADVBASE * 1000))
    [ -n "$LOADS" ] || LOADS="0,1,2,3,4,5"
fi
[ $((WINDOW * 1000)) -ge $((5 * INTERVAL_MS)) ] || { echo "--window must hold at least 5 adverts (5 × the interval)" >&2; exit 2; }
# load_numbers LIST: names or numbers to a comma-separated list of numbers
LOAD_NAMES=(idle flood push states reload status cpu nft)
load_numbers() {
    local out="" x k found
    for x in ${1//,/ }; do
        found=""
        for k in "${!LOAD_NAMES[@]}"; do
            if [ "$x" = "$k" ] || [ "$x" = "${LOAD_NAMES[$k]}" ]; then found=$k; fi
        done
        [ -n "$found" ] || { echo "unknown load: $x (0-7 or ${LOAD_NAMES[*]})" >&2; exit 2; }
        out="$out,$found"
    done
    echo "${out#,}"
}
LOADS=$(load_numbers "$LOADS")
if [ "$PEER_LOADS" = none ] || [ "$VRRP_MS" = 0 ]; then PEER_LOADS=""; else PEER_LOADS=$(load_numbers "$PEER_LOADS"); fi
case ",$PEER_LOADS," in *,[1-5],*) echo "--peer-loads: keepalived runs only under idle, cpu and nft" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "adverts.sh must run as root (network namespaces)" >&2; exit 1; }
for c in ip nft tcpdump python3 awk; do
    command -v "$c" >/dev/null || { echo "$c not found (apt-get install iproute2 nftables tcpdump python3)" >&2; exit 1; }
done

TANDEM="${TANDEM:-$ROOT/target/release/tandem}"  # another build can be measured: TANDEM=path
CTBENCH="$ROOT/target/release/ctbench"
if [ -f "$ROOT/bench/tools/Cargo.toml" ]; then TOOLS_CRATE=bench-tools; else TOOLS_CRATE=lab; fi
if [ "$BUILD" = 1 ]; then
    echo "[adverts.sh] building tandem and ctbench ($TOOLS_CRATE) in release mode" >&2
    (cd "$ROOT" && cargo build --release -q -p tandem --bin tandem -p "$TOOLS_CRATE" --bin ctbench)
fi
for b in "$TANDEM" "$CTBENCH"; do
    [ -x "$b" ] || { echo "${b#"$ROOT"/} not found (build it, or drop --no-build)" >&2; exit 1; }
done

P="adv$$"                     # namespace prefix, unique per run of this script
NS_LAN="$P-lan" NS_WAN="$P-wan" NS_SYNC="$P-sync"
NS_C="$P-client" NS_F="$P-flood" NS_1="$P-fw1" NS_2="$P-fw2"
ALL_NS=("$NS_C" "$NS_F" "$NS_1" "$NS_2" "$NS_LAN" "$NS_WAN" "$NS_SYNC")
TMP=$(mktemp -d /tmp/adverts.XXXXXX)
PIDS=()
TANDEM_PIDS=()
KA_VERSION=""
KA_EXTRA=""

log() { echo "[$(date +%T)] $*" >&2; }

cleanup() {
    set +e
    local ns pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for ns in "${ALL_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for ns in "${ALL_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [ "$KEEP" = 1 ]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
now_ns() { date +%s%N; }
ms_since() { echo $(( ($(now_ns) - $1) / 1000000 )); }
# stats MS...: "M ms" for one value, else "median M ms (min A, max B)"
stats() {
    printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END {
        m = (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)
        if (NR == 1) printf "%d ms", m; else printf "median %d ms (min %d, max %d)", m, a[1], a[NR] }'
}

# wait_for SECONDS CMD...: polls every 100 ms
wait_for() {
    local deadline=$(( $(now_ns) + $1 * 1000000000 )); shift
    while ! "$@"; do
        [ "$(now_ns)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# ---- topology ----

setup_topology() {
    local ns sw
    for ns in "${ALL_NS[@]}"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    for sw in "$NS_LAN" "$NS_WAN" "$NS_SYNC"; do
        ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
        ip -n "$sw" link set br0 up
    done
    PORT=0
    attach "$NS_C" eth0 "$NS_LAN" 192.0.2.10/24
    attach "$NS_1" eth0 "$NS_LAN" 192.0.2.2/24
    attach "$NS_2" ens5 "$NS_LAN" 192.0.2.3/24
    attach "$NS_1" eth1 "$NS_WAN" 198.51.100.2/24
    attach "$NS_2" ens6 "$NS_WAN" 198.51.100.3/24
    attach "$NS_1" eth2 "$NS_SYNC" 203.0.113.1/24
    attach "$NS_2" ens7 "$NS_SYNC" 203.0.113.2/24
    attach "$NS_F" eth0 "$NS_SYNC" 203.0.113.10/24
}

# attach HOST_NS IFNAME SWITCH_NS ADDR: a veth from the host to the switch's bridge
attach() {
    local port="p$PORT"
    PORT=$((PORT + 1))
    ip -n "$1" link add "$2" type veth peer name "$port" netns "$3"
    ip -n "$3" link set "$port" master br0
    ip -n "$3" link set "$port" up
    ip -n "$1" addr add "$4" dev "$2"
    ip -n "$1" link set "$2" up
}

# ---- configs ----

if [ "$VRRP_MS" != 0 ]; then PROTO=$'protocol = "vrrp"\ninterval_ms = '"$VRRP_MS"$'\n'; else PROTO=""; fi
VIPS="[[vips]]
vhid = 1
interface = \"lan\"
${PROTO}addresses = [\"192.0.2.1/24\"]

[[vips]]
vhid = 2
interface = \"wan\"
${PROTO}addresses = [\"198.51.100.1/24\"]
"
BASE_RULES='[[rules]]
interface = "sync"
action = "pass"
source = "sync:network"
description = "sync link"

[[rules]]
interface = "lan"
action = "pass"
source = "lan:network"
description = "lan"
'

# node_local N SYNC_TABLE: the node-local part of fwN's file
node_local() {
    local n=$1 skew devs
    if [ "$n" = 1 ]; then skew=0 devs=(eth0 eth1 eth2); else skew=100 devs=(ens5 ens6 ens7); fi
    local peer=203.0.113.$((3 - n))
    cat <<EOF
[node]
name = "fw$n"
advskew = $skew
preempt = true
control_socket = "$TMP/fw$n.sock"

[interfaces]
lan = "${devs[0]}"
wan = "${devs[1]}"
sync = "${devs[2]}"

[carp]
passphrase = "adverts-bench"
advbase = $ADVBASE

[statesync]
interface = "sync"
peers = ["$peer"]
key = "adverts benchmark state sync key"

$2
EOF
}

fw1_sync() { # [PRIMARY_FINGERPRINT]: fw1 takes pushes only from that certificate
    cat <<EOF
[sync]
role = "peer"
listen = "203.0.113.1:8443"
state_dir = "$TMP/fw1-state"
user = "sync"
password = "bench-password-long-enough"
${1:+primary_fingerprint = \"$1\"}
EOF
}

fw2_sync() {
    cat <<EOF
[sync]
role = "primary"
listen = "203.0.113.2:8443"
state_dir = "$TMP/fw2-state"
user = "sync"
password = "bench-password-long-enough"

[[sync.peers]]
name = "fw1"
url = "https://203.0.113.1:8443"
fingerprint = "$1"
EOF
}

# big_areas RULES SHIFT: the mix of firewall::synth::config (stateful TCP passes, logged UDP
# blocks from a 100-entry alias, passes to a port alias, rejects, outbound NAT); SHIFT moves
# the ports, so two configs of the same size differ in every rule.
big_areas() {
    python3 - "$1" "$2" <<'EOF'
import sys
rules, shift = int(sys.argv[1]), int(sys.argv[2])
o = ['[[aliases]]\nname = "big"\ntype = "network"\nentries = [']
for i in range(100):
    a = 0x0A000000 + 2 * i
    o.append(f'  "{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}",')
o.append(']\n\n[[aliases]]\nname = "web"\ntype = "port"\nentries = [80, 443, "8000-8080"]\n')
for i in range(rules):
    port = 1024 + (i + shift) % 60000
    k = i % 4
    if k == 0:
        o.append(f'[[rules]]\ninterface = "lan"\naction = "pass"\nprotocol = "tcp"\nsource = "lan:network"\ndestination_port = {port}\n')
    elif k == 1:
        o.append(f'[[rules]]\ninterface = "wan"\naction = "block"\nprotocol = "udp"\nsource = "big"\ndestination_port = {port}\nlog = true\n')
    elif k == 2:
        o.append(f'[[rules]]\ninterface = "wan"\naction = "pass"\nprotocol = "tcp"\ndestination = "198.51.100.{1 + i % 250}"\ndestination_port = "web"\ndescription = "synthetic {i + shift}"\n')
    else:
        o.append(f'[[rules]]\ninterface = "lan"\naction = "reject"\nsource = "192.0.2.{1 + (i + shift) % 250}"\n')
o.append('[[nat.outbound]]\ninterface = "wan"\nsource = "lan:network"\ntranslation = "198.51.100.1"\n')
print('\n'.join(o))
EOF
}

# ---- daemons and their status ----

start_node() {
    local n=$1 ns
    if [ "$n" = 1 ]; then ns=$NS_1; else ns=$NS_2; fi
    ip netns exec "$ns" "$TANDEM" run --config "$TMP/fw$n.toml" >>"$TMP/fw$n.log" 2>&1 &
    PIDS+=($!)
    TANDEM_PIDS+=($!)
}

status() { local ns=$NS_1; [ "$1" = 2 ] && ns=$NS_2; ip netns exec "$ns" "$TANDEM" status --json --config "$TMP/fw$1.toml" 2>/dev/null; }

# jget N PATH: a value from fwN's status (PATH: dot-separated keys, list indices as numbers);
# prints nothing when there is no status or no such value
jget() {
    local s
    s=$(status "$1") || return 0
    python3 -c '
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    if isinstance(v, list):
        v = v[int(k)] if k.isdigit() and int(k) < len(v) else None
    elif isinstance(v, dict):
        v = v.get(k)
    if v is None:
        sys.exit(0)
print(json.dumps(v) if isinstance(v, (dict, list, bool)) else v)' "$s" "$2"
}

vip_state() { local s; s=$(jget "$1" vips.0.state); echo "${s:-DOWN}"; }
answers() { [ -n "$(jget "$1" node)" ]; }
settled() {
    [ "$(vip_state 1)" = MASTER ] && [ "$(jget 1 vips.1.state)" = MASTER ] &&
        [ "$(vip_state 2)" = BACKUP ] && [ "$(jget 2 vips.1.state)" = BACKUP ] &&
        [ "$(jget 1 state_sync.engine.ready)" = true ] && [ "$(jget 2 state_sync.engine.ready)" = true ] &&
        [ "$(jget 1 state_sync.engine.queue_depth)" = 0 ] && [ "$(jget 2 state_sync.engine.queue_depth)" = 0 ]
}
in_sync() { [ "$(jget 2 config_sync.peers.0.in_sync)" = true ]; }
generation_at_least() { local g; g=$(jget "$1" config_sync.generation); [ -n "$g" ] && [ "$g" -ge "$2" ]; }
ct_count() { in_ns "$1" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0; }
ct_below() { [ "$(ct_count "$1")" -lt "$2" ]; }

# ---- capture and analysis ----

start_capture() {
    local out=$1
    ip netns exec "$NS_C" tcpdump -i eth0 -n -l -p -tt --time-stamp-precision=micro 'ip proto 112' \
        >"$out" 2>"$out.err" &
    CAPTURE=$!
    PIDS+=($CAPTURE)
    wait_for 10 grep -q "listening on" "$out.err" || { log "tcpdump did not start: $(cat "$out.err")"; return 1; }
}

stop_capture() {
    kill -INT "$CAPTURE" 2>/dev/null || true
    wait "$CAPTURE" 2>/dev/null || true
}

# analyse CAPTURE: prints "ADVERTS LONGEST_MS P99_MS FW2_ADVERTS FW1_PRIO MEAN_MS" for fw1's
# adverts on the lan (192.0.2.2) and fw2's (192.0.2.3); FW1_PRIO is the highest advskew fw1
# advertised (CARP: tcpdump shows it as "prio") or, with VRRP, the lowest priority (a demotion)
analyse() {
    python3 - "$1" "$VRRP_MS" <<'EOF'
import math, re, sys
vrrp = sys.argv[2] != '0'
t1, fw2, skew = [], 0, (255 if vrrp else 0)
for line in open(sys.argv[1]):
    m = re.match(r'(\d+\.\d+) IP (\S+) > ', line)
    if not m:
        continue
    if m.group(2) == '192.0.2.2':
        t1.append(float(m.group(1)))
        p = re.search(r'prio (\d+)', line)
        if p:
            skew = min(skew, int(p.group(1))) if vrrp else max(skew, int(p.group(1)))
    elif m.group(2) == '192.0.2.3':
        fw2 += 1
gaps = sorted((b - a) * 1000 for a, b in zip(t1, t1[1:]))
if gaps:
    longest, p99 = gaps[-1], gaps[max(0, math.ceil(0.99 * len(gaps)) - 1)]
    print(f'{len(t1)} {longest:.0f} {p99:.0f} {fw2} {skew} {sum(gaps) / len(gaps):.1f}')
else:
    print(f'{len(t1)} - - {fw2} {skew} -')
EOF
}

# transitions N: the sum of vips[].transitions in fwN's status ("?" without a status)
transitions() {
    local s
    s=$(status "$1") || { echo "?"; return; }
    python3 -c 'import json, sys; print(sum(v.get("transitions", 0) for v in json.loads(sys.argv[1]).get("vips", [])))' "$s" 2>/dev/null || echo "?"
}
# delta BEFORE AFTER: AFTER - BEFORE, or "?" when either is unknown
delta() { if [ "$1" = "?" ] || [ "$2" = "?" ]; then echo "?"; else echo $(( $2 - $1 )); fi; }

# ---- the loads: each runs in the background, 1 s into the window; notes go to $TMP/note ----

FLOOD_PY='
import resource, selectors, socket, ssl, sys, threading, time
host, port, conns, threads, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = conns + 4 * threads + 64
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
end = time.time() + duration
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
done, failed = [0] * threads, [0] * threads
def handshakes(k):
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                with ctx.wrap_socket(s):
                    done[k] += 1
        except OSError:
            failed[k] += 1
            time.sleep(0.01)
workers = [threading.Thread(target=handshakes, args=(k,), daemon=True) for k in range(threads)]
for w in workers:
    w.start()
# idle connections (no ClientHello): each one the server closes is dialled again at once
sel = selectors.DefaultSelector()
def dial():
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError:
        return False
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    return True
opened = sum(dial() for _ in range(conns))
redialled = 0
least = len(sel.get_map())
while time.time() < end:
    for key, _ in sel.select(timeout=0.2):
        s = key.fileobj
        try:
            if s.recv(1):
                continue
        except BlockingIOError:
            continue
        except OSError:
            pass
        sel.unregister(s)
        s.close()
        if time.time() < end and dial():
            redialled += 1
    least = min(least, len(sel.get_map()))
for w in workers:
    w.join()
print(f"{opened} idle connections held open (never fewer than {least}; {redialled} dialled again after the server closed them), {sum(done)} TLS handshakes ({sum(failed)} failed) in {duration:.0f} s")
'

load_1() {
    sleep 1
    in_ns "$NS_F" python3 -c "$FLOOD_PY" 203.0.113.1 8443 "$CONNS" "$HANDSHAKERS" $((WINDOW - 2)) >"$TMP/note" 2>"$TMP/flood.err" ||
        echo "flood failed: $(tail -1 "$TMP/flood.err")" >"$TMP/note"
}

# Loads 2-4 are events: each is repeated back to back until the window's last second, so
# more of them can fall on an advert's due time (a stall shows only when one does).
load_2() {
    sleep 1
    local until=$(( $(now_ns) + (WINDOW - 2) * 1000000000 )) k=0 t0 g rel=() act=()
    while [ "$(now_ns)" -lt "$until" ]; do
        k=$((k + 1))
        node_local 2 "$(fw2_sync "$FP")" >"$TMP/fw2.toml.new"
        { echo "$VIPS"; echo "$BASE_RULES"; big_areas "$RULES" "$k"; } >>"$TMP/fw2.toml.new"
        mv "$TMP/fw2.toml.new" "$TMP/fw2.toml"
        t0=$(now_ns)
        if ! in_ns "$NS_2" "$TANDEM" reload --config "$TMP/fw2.toml" >"$TMP/reload2.out" 2>&1; then
            echo "reload on fw2 failed: $(tail -1 "$TMP/reload2.out")" >"$TMP/note"; return
        fi
        rel+=("$(ms_since "$t0")")
        g=$(jget 2 config_sync.generation)
        if ! wait_for 120 generation_at_least 1 "$g"; then
            echo "fw1 never applied generation $g" >"$TMP/note"; return
        fi
        act+=("$(ms_since "$t0")")
    done
    echo "$k pushes of $RULES rules (each different): reload on fw2 $(stats "${rel[@]}"), generation active on fw1 after $(stats "${act[@]}")" >"$TMP/note"
}

load_3() {
    sleep 1
    local until=$(( $(now_ns) + (WINDOW - 2) * 1000000000 )) k=0 waiter fill t0 w=() a=() f=()
    while [ "$(now_ns)" -lt "$until" ]; do
        k=$((k + 1))
        # fw2's table holds a few other entries too (connections of the earlier loads,
        # expiring), so "all of them" is read as "at least NSTATES entries" (off by a few dozen)
        in_ns "$NS_2" "$CTBENCH" wait "$NSTATES" --timeout 120 --poll-ms 50 >"$TMP/ct-wait" 2>>"$TMP/ct.err" &
        waiter=$!
        fill=$(in_ns "$NS_1" "$CTBENCH" fill "$NSTATES" 2>>"$TMP/ct.err") ||
            { echo "ctbench fill failed: $(tail -1 "$TMP/ct.err")" >"$TMP/note"; return; }
        set -- $fill
        w+=("$(( ($2 - $1) / 1000000 ))")
        wait "$waiter" || { echo "fw2 never held all $NSTATES states ($(ct_count "$NS_2"))" >"$TMP/note"; return; }
        a+=("$(( ($(cat "$TMP/ct-wait") - $1) / 1000000 ))")
        t0=$(now_ns)
        in_ns "$NS_1" "$CTBENCH" flush 2>>"$TMP/ct.err"
        wait_for 120 ct_below "$NS_2" 5000 || { echo "fw2 kept $(ct_count "$NS_2") entries after a flush of fw1" >"$TMP/note"; return; }
        f+=("$(ms_since "$t0")")
    done
    echo "$k rounds of $NSTATES new states$CAPPED, then their deletion: written into fw1 in $(stats "${w[@]}"), all in fw2's kernel after $(stats "${a[@]}"); flushed from fw1 and gone from fw2 after $(stats "${f[@]}")" >"$TMP/note"
}

load_4() {
    sleep 1
    local until=$(( $(now_ns) + (WINDOW - 2) * 1000000000 )) k=0 t0 rel=()
    while [ "$(now_ns)" -lt "$until" ]; do
        k=$((k + 1))
        node_local 1 "$(fw1_sync "$FP2")" >"$TMP/fw1.toml.new"
        { echo "$VIPS"; echo "$BASE_RULES"; big_areas "$RULES" $((1000 + k)); } >>"$TMP/fw1.toml.new"
        mv "$TMP/fw1.toml.new" "$TMP/fw1.toml"
        t0=$(now_ns)
        if ! in_ns "$NS_1" "$TANDEM" reload --config "$TMP/fw1.toml" >"$TMP/reload1.out" 2>&1; then
            echo "reload on fw1 failed after $(ms_since "$t0") ms: $(tail -1 "$TMP/reload1.out")" >"$TMP/note"; return
        fi
        rel+=("$(ms_since "$t0")")
    done
    echo "$k reloads of $RULES rules (each different): $(stats "${rel[@]}")" >"$TMP/note"
}

# `tandem status --config FILE` parses FILE to find the control socket: the loops use a file
# with fw1's node-local part only (same socket), so the load is the requests, not the
# client's parsing of a file of 20 000 rules.
load_5() {
    node_local 1 "" >"$TMP/fw1-status.toml"
    sleep 1
    local end=$(( $(now_ns) + (WINDOW - 2) * 1000000000 )) k pids=() total=0 failed=0
    for k in $(seq 1 "$STATUS_LOOPS"); do
        (
            ok=0 bad=0
            while [ "$(now_ns)" -lt "$end" ]; do
                if ip netns exec "$NS_1" "$TANDEM" status --json --config "$TMP/fw1-status.toml" >/dev/null 2>&1; then
                    ok=$((ok + 1))
                else
                    bad=$((bad + 1))
                fi
            done
            echo "$ok $bad" >"$TMP/status-loop.$k"
        ) &
        pids+=($!)
    done
    wait "${pids[@]}"
    for k in $(seq 1 "$STATUS_LOOPS"); do
        set -- $(cat "$TMP/status-loop.$k")
        total=$((total + $1)) failed=$((failed + $2))
    done
    echo "$STATUS_LOOPS loops: $total status calls in $((WINDOW - 2)) s$([ "$failed" = 0 ] || echo ", $failed failed")" >"$TMP/note"
}

# Both cores busy: one busy loop per CPU at nice 0 (the daemon's own threads run at nice 0,
# its CARP thread at -10), from 1 s into the window to 1 s before its end.
load_6() {
    sleep 1
    local k pids=() ncpu
    ncpu=$(nproc)
    for k in $(seq 1 "$ncpu"); do
        in_ns "$NS_1" nice -n 0 timeout $((WINDOW - 2)) sh -c 'while :; do :; done' &
        pids+=($!)
    done
    wait "${pids[@]}" 2>/dev/null || true
    echo "$ncpu busy loops (nice 0) for $((WINDOW - 2)) s" >"$TMP/note"
}

# RULES rules straight into fw1's kernel, no daemon involved: the nft side of load 4. The
# script's own table, replaced whole on each load (the first line makes the delete safe).
load_7() {
    python3 - "$RULES" >"$TMP/nft-load.nft" <<'EOF'
import sys
rules = int(sys.argv[1])
print('add table inet advbench\ndelete table inet advbench\ntable inet advbench {')
print('  chain bench {\n    type filter hook forward priority 10; policy accept;')
for i in range(rules):
    a = 0x0A000000 + i
    print(f'    ip saddr {a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255} tcp dport {1024 + i % 60000} counter accept')
print('  }\n}')
EOF
    sleep 1
    local until=$(( $(now_ns) + (WINDOW - 2) * 1000000000 )) k=0 t0 rel=()
    while [ "$(now_ns)" -lt "$until" ]; do
        k=$((k + 1))
        t0=$(now_ns)
        in_ns "$NS_1" nft -f "$TMP/nft-load.nft" 2>"$TMP/nft-load.err" ||
            { echo "nft -f failed: $(tail -1 "$TMP/nft-load.err")" >"$TMP/note"; return; }
        rel+=("$(ms_since "$t0")")
    done
    in_ns "$NS_1" nft delete table inet advbench 2>/dev/null || true
    echo "$k loads of $RULES rules with nft -f: $(stats "${rel[@]}")" >"$TMP/note"
}

# after_N: puts the cluster back to rest after load N (outside the window)
after_3() {
    ct_below "$NS_1" 5000 || in_ns "$NS_1" "$CTBENCH" flush 2>>"$TMP/ct.err" || true
    wait_for 120 ct_below "$NS_2" 5000 || { log "fw2 still holds $(ct_count "$NS_2") entries; flushing it"; in_ns "$NS_2" "$CTBENCH" flush || true; }
}

LABELS=(
    "0 idle"
    "1 flood: $CONNS idle conns + TLS handshakes ($HANDSHAKERS threads) on fw1:8443"
    "2 push: fw2 (primary) pushes $RULES rules to fw1, repeated"
    "3 states: conntrack bursts in fw1"
    "4 reload: fw1 reloads $RULES rules (nft -f), repeated"
    "5 status: $STATUS_LOOPS parallel \`tandem status\` loops on fw1"
    "6 cpu: both cores busy"
    "7 nft: fw1's kernel loads $RULES rules (nft -f, no daemon), repeated"
)

# run_load N: one window; appends a table row to $TMP/rows. IMPL (tandem or keepalived) says
# who runs the VIPs; keepalived's transitions are its log lines, its state after is its last one.
IMPL=tandem
count_transitions() {
    if [[ $IMPL == keepalived* ]]; then
        grep -cE "Entering (MASTER|BACKUP|FAULT) STATE" "$TMP/keepalived-fw$1.log" 2>/dev/null || true
    else
        transitions "$1"
    fi
}
state_after() {
    if [[ $IMPL == keepalived* ]]; then
        grep -oE "Entering (MASTER|BACKUP|FAULT) STATE" "$TMP/keepalived-fw$1.log" 2>/dev/null | tail -1 | awk '{print $2}'
    else
        vip_state "$1"
    fi
}
run_load() {
    local n=$1 cap="$TMP/capture-${IMPL%% *}${KA_EXTRA:+-nice}-$n.txt" t0 pid res took st tr1 tr2
    rm -f "$TMP/note"
    tr1=$(count_transitions 1) tr2=$(count_transitions 2)
    start_capture "$cap"
    t0=$(now_ns)
    if [ "$n" = 0 ]; then echo "—" >"$TMP/note"; pid=""; else "load_$n" & pid=$!; fi
    while [ "$(now_ns)" -lt $((t0 + WINDOW * 1000000000)) ]; do sleep 0.1; done
    stop_capture
    st=$(state_after 2)
    if [ -n "$pid" ]; then wait "$pid" || true; fi
    tr1=$(delta "$tr1" "$(count_transitions 1)") tr2=$(delta "$tr2" "$(count_transitions 2)")
    declare -F "after_$n" >/dev/null && "after_$n"
    read -r -a res <<<"$(analyse "$cap")"
    local ratio="—"
    [ "${res[1]}" != - ] && ratio=$(awk -v m="${res[1]}" -v a="$INTERVAL_MS" 'BEGIN { printf "%.2f", m / a }')
    if [ "${res[3]}" = 0 ] && [ "$tr2" = 0 ]; then took="no ($st)"; else took="**yes**: ${res[3]} adverts from fw2, $tr2 transitions ($st)"; fi
    local note
    note=$(cat "$TMP/note" 2>/dev/null || echo "load did not report")
    if [ "$VRRP_MS" = 0 ]; then
        [ "${res[4]}" != 0 ] && note="$note; fw1 advertised advskew up to ${res[4]}"
        echo "| ${LABELS[$n]} | ${res[0]} | ${res[1]} | ${ratio} | ${res[2]} | $took | $note |" >>"$TMP/rows"
    else
        [ "${res[4]}" != 255 ] && [ "${res[4]}" != 254 ] && note="$note; fw1 advertised priority down to ${res[4]}"
        echo "| $IMPL | ${LABELS[$n]} | ${res[0]} | ${res[5]} | ${res[1]} | ${ratio} | ${res[2]} | $tr1 / $tr2 | $took | $note |" >>"$TMP/rows"
    fi
    log "$IMPL load $n: ${res[0]} adverts, longest ${res[1]} ms, p99 ${res[2]} ms, transitions fw1 $tr1 fw2 $tr2, fw2 took over: $took; $note"
    if [ "$IMPL" = tandem ]; then
        wait_for 120 settled || log "after load $n the cluster did not settle: fw1 $(vip_state 1), fw2 $(vip_state 2)"
    else
        ka_settled || log "after load $n keepalived did not settle"
    fi
    sleep 2
}

# ---- keepalived, the VRRP peer: same VIPs, interval and priorities ----

start_keepalived() {
    local n=$1 ns prio dl dw
    if [ "$n" = 1 ]; then ns=$NS_1 prio=254 dl=eth0 dw=eth1; else ns=$NS_2 prio=154 dl=ens5 dw=ens6; fi
    local adv
    adv=$(awk -v m="$VRRP_MS" 'BEGIN { printf "%g", m / 1000 }')
    cat >"$TMP/keepalived-fw$n.conf" <<EOF
global_defs {
    router_id fw$n
    vrrp_version 3
    $KA_EXTRA
    script_user root
    enable_script_security
}
vrrp_instance lan {
    state BACKUP
    interface $dl
    virtual_router_id 1
    priority $prio
    advert_int $adv
    virtual_ipaddress {
        192.0.2.1/24 dev $dl
    }
}
vrrp_instance wan {
    state BACKUP
    interface $dw
    virtual_router_id 2
    priority $prio
    advert_int $adv
    virtual_ipaddress {
        198.51.100.1/24 dev $dw
    }
}
EOF
    rm -f "$TMP/keepalived-fw$n".*pid
    in_ns "$ns" keepalived -P -n -l -D -G -f "$TMP/keepalived-fw$n.conf" \
        -p "$TMP/keepalived-fw$n.pid" -r "$TMP/keepalived-fw$n.vrrp.pid" -c "$TMP/keepalived-fw$n.chk.pid" \
        >>"$TMP/keepalived-fw$n.log" 2>&1 &
    PIDS+=($!)
}

ka_state() { # N INSTANCE: the last state keepalived logged for it
    grep -oE "\($2\) Entering [A-Z]+ STATE" "$TMP/keepalived-fw$1.log" 2>/dev/null | tail -1 | awk '{print $3}'
}
ka_ready() {
    [ "$(ka_state 1 lan)$(ka_state 1 wan)" = MASTERMASTER ] && [ "$(ka_state 2 lan)$(ka_state 2 wan)" = BACKUPBACKUP ]
}
ka_settled() { wait_for 60 ka_ready; }

# run_keepalived: tandem stops on both nodes (SIGTERM: priority 0, VIPs removed), keepalived
# starts on both, then the loads of --peer-loads
run_keepalived() {
    command -v keepalived >/dev/null || { log "keepalived not installed: no peer rows"; echo "| keepalived | skipped: not installed | | | | | | | | |" >>"$TMP/rows"; return; }
    local pid
    for pid in "${TANDEM_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${TANDEM_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    in_ns "$NS_1" nft delete table inet tandem 2>/dev/null || true
    in_ns "$NS_2" nft delete table inet tandem 2>/dev/null || true
    KA_VERSION=$(keepalived --version 2>&1 | head -1 | awk '{print $1, $2}')
    local n extra
    for extra in "" "vrrp_priority -10"; do
        KA_EXTRA=$extra
        IMPL=keepalived
        rm -f "$TMP"/keepalived-fw?.log
        start_keepalived 1
        sleep 1
        start_keepalived 2
        ka_settled || { log "keepalived did not settle: $(tail -5 "$TMP/keepalived-fw1.log")"; return; }
        log "keepalived up${extra:+ ($extra)}: fw1 MASTER, fw2 BACKUP; advert_int $VRRP_MS ms"
        sleep 2
        [ -z "$extra" ] || IMPL="keepalived ($extra)"
        for n in 0 1 2 3 4 5 6 7; do
            case ",$PEER_LOADS," in *",$n,"*) run_load "$n" ;; esac
        done
        IMPL=keepalived
        stop_keepalived
    done
}

stop_keepalived() {
    local n pid
    for n in 1 2; do
        pid=$(cat "$TMP/keepalived-fw$n.pid" 2>/dev/null) || continue
        kill -TERM "$pid" 2>/dev/null || true
    done
    for n in 1 2; do
        pid=$(cat "$TMP/keepalived-fw$n.pid" 2>/dev/null) || continue
        wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
    done
}

# ---- main ----

LOAD_AVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
setup_topology
NSTATES=$STATES CAPPED=""
CT_MAX=$(in_ns "$NS_1" sysctl -n net.netfilter.nf_conntrack_max 2>/dev/null || echo 0)
if [ "$CT_MAX" -gt 0 ] && [ $((STATES + 12000)) -gt "$CT_MAX" ]; then
    # the kernel refuses creates past nf_conntrack_max, a host-wide setting this script leaves alone
    NSTATES=$(( (CT_MAX - 12000) / 10000 * 10000 ))
    CAPPED=" (not $STATES: nf_conntrack_max is $CT_MAX on this host)"
    log "burst capped at $NSTATES states: nf_conntrack_max is $CT_MAX"
fi
LABELS[3]="3 states: bursts of $NSTATES new conntrack entries in fw1 and their deletion, repeated"

node_local 1 "$(fw1_sync)" >"$TMP/fw1.toml"
printf '%s\n%s\n' "$VIPS" "$BASE_RULES" >>"$TMP/fw1.toml"
start_node 1
wait_for 30 answers 1 || { log "fw1 did not start: $(tail -5 "$TMP/fw1.log")"; exit 1; }
FP=$(jget 1 config_sync.fingerprint)
[ -n "$FP" ] || { log "fw1 prints no certificate fingerprint"; exit 1; }
node_local 2 "$(fw2_sync "$FP")" >"$TMP/fw2.toml"
printf '%s\n%s\n' "$VIPS" "$BASE_RULES" >>"$TMP/fw2.toml"
start_node 2
wait_for 30 answers 2 || { log "fw2 did not start: $(tail -5 "$TMP/fw2.log")"; exit 1; }
FP2=$(jget 2 config_sync.fingerprint)
# fw1 takes pushes only from fw2's certificate: pinned, then reloaded.
node_local 1 "$(fw1_sync "$FP2")" >"$TMP/fw1.toml"
printf '%s\n%s\n' "$VIPS" "$BASE_RULES" >>"$TMP/fw1.toml"
in_ns "$NS_1" "$TANDEM" reload --config "$TMP/fw1.toml" >/dev/null || { log "reload of fw1 failed"; exit 1; }
wait_for 60 in_sync || { log "fw2 never got fw1 in sync: $(jget 2 config_sync.peers.0)"; exit 1; }
wait_for 60 settled || { log "the cluster did not settle: fw1 $(vip_state 1), fw2 $(vip_state 2)"; exit 1; }
if [ "$VRRP_MS" = 0 ]; then TIMING="advbase $ADVBASE s"; else TIMING="VRRPv3, $VRRP_MS ms adverts"; fi
log "cluster up: fw1 MASTER, fw2 BACKUP, config sync and state sync ready; $TIMING, window $WINDOW s"
sleep 2

: >"$TMP/rows"
for n in 0 1 2 3 4 5 6 7; do
    case ",$LOADS," in *",$n,"*) run_load "$n" ;; esac
done
[ -z "$PEER_LOADS" ] || run_keepalived

if [ "$VRRP_MS" != 0 ]; then
    SECTION=adverts-vrrp
    REPORT=$(
    echo "Measured $(date -u +%Y-%m-%d) on Linux $(uname -r), $(nproc) CPUs (load average at start: $LOAD_AVG_START); $("$TANDEM" --version | head -1), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)')${KA_VERSION:+, $KA_VERSION}; VRRPv3 with $VRRP_MS ms adverts (priorities 254 and 154), a $WINDOW s window per load."
    echo
    echo "| implementation | load | fw1 adverts | mean interval (ms) | longest interval (ms) | longest / interval | p99 interval (ms) | transitions fw1 / fw2 | fw2 took over? (its state after) | what the load did |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|---|"
    cat "$TMP/rows"
    )
else
    SECTION=adverts
    REPORT=$(
    echo "Measured $(date -u +%Y-%m-%d) on Linux $(uname -r), $(nproc) CPUs (load average at start: $LOAD_AVG_START); $("$TANDEM" --version | head -1), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)'); advbase $ADVBASE s, a $WINDOW s window per load."
    echo
    echo "| load | fw1 adverts | longest interval (ms) | longest / advbase | p99 interval (ms) | fw2 took over? (its state after) | what the load did |"
    echo "|---|---:|---:|---:|---:|---|---|"
    cat "$TMP/rows"
    )
fi
echo "$REPORT"

if [ "$WRITE" = 1 ]; then
    README="$HERE/README.md"
    BEGIN="<!-- $SECTION:begin (generated by bench/adverts.sh --write; do not edit by hand) -->"
    END="<!-- $SECTION:end -->"
    if ! grep -qF "<!-- $SECTION:begin" "$README"; then
        printf '\n%s\n%s\n' "$BEGIN" "$END" >>"$README"
    fi
    printf '%s\n' "$REPORT" >"$TMP/report.md"
    awk -v b="$BEGIN" -v f="$TMP/report.md" -v s="$SECTION" '
        index($0, "<!-- " s ":begin") == 1 { print b; while ((getline l < f) > 0) print l; skip = 1; next }
        index($0, "<!-- " s ":end") == 1 { skip = 0 }
        !skip { print }' "$README" >"$TMP/README.new"
    cat "$TMP/README.new" >"$README"
    log "updated the $SECTION section of $README"
fi
