#!/usr/bin/env bash
# Demo: the whole product in one run, in network namespaces (needs root; cleans up after itself).
#
#   client 192.0.2.10 ── lan ── fw1 (primary, master) ── wan ── server 198.51.100.10
#                            └─ fw2 (peer, backup) ────┘
#   fw1 ═ sync link 203.0.113.0/24 ═ fw2        VIPs 192.0.2.1 (lan), 198.51.100.1 (wan)
#
# Two firewalls with rules and outbound NAT to the WAN VIP, config sync (fw1 pushes, fw2
# applies), state sync; a config change on fw1 active on fw2; a client with open TCP
# connections through the cluster; the master's power cut (links down, daemon killed); every
# connection still alive; the longest pause per connection at each switchover; fw1 back. Every
# line says which node it is from. It ends with where the status page and metrics were, and
# copies of them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "$(id -u)" != 0 ]; then echo "run as root (network namespaces)" >&2; exit 1; fi
echo "[demo] installing the Debian packages it uses (scripts/deps.sh)"
bash scripts/deps.sh
if ! command -v cargo >/dev/null; then
    echo "cargo (Rust toolchain) is needed to build tandem: install it with rustup or apt-get install cargo" >&2
    exit 1
fi
echo "[demo] building tandem (release; a first build takes a few minutes)"
cargo build --release -p tandem 2>&1 | grep --line-buffered -E 'Compiling tandem |Finished|^error|warning: unused' || true
T=$ROOT/target/release/tandem
[ -x "$T" ] || { echo "[demo] the build failed" >&2; exit 1; }
TRAFFIC=$ROOT/crates/tandem/tests/traffic.py
CONNS=100

P=tdemo$$
DIR=$(mktemp -d)
PIDS=""
cleanup() {
    exec 3>&- 2>/dev/null || true
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    for n in fw1 fw2 client server; do ip netns pids "$P-$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
    wait 2>/dev/null || true
    for n in lan wan client server fw1 fw2; do ip netns del "$P-$n" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

ns() { ip netns exec "$P-$1" "${@:2}"; }
say() { echo "[$1] ${*:2}"; }
node() { ns "$1" "$T" "${@:2}" --config "$DIR/$1.toml"; }
show() { node "$1" status 2>&1 | sed "s/^/[$1] /"; }
json() { node "$1" status --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); $2" 2>/dev/null; }
state() { json "$1" "print(next((v['state'] for v in d['vips'] if v['vhid']==$2), 'DOWN'))" || echo DOWN; }
wait_for() { # SECONDS DESCRIPTION COMMAND...
    local until=$(( $(date +%s) + $1 )) what=$2; shift 2
    until "$@"; do
        if [ "$(date +%s)" -ge "$until" ]; then echo "[demo] timed out waiting for: $what" >&2; return 1; fi
        sleep 0.2
    done
}

# ---- the network ------------------------------------------------------------------------------
for sw in lan wan; do
    ip netns add "$P-$sw"
    ip -n "$P-$sw" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$P-$sw" link set br0 up
done
for h in client server fw1 fw2; do ip netns add "$P-$h"; ip -n "$P-$h" link set lo up; done
port=0
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
ip -n "$P-fw1" addr add 203.0.113.1/24 dev eth2; ip -n "$P-fw1" link set eth2 up
ip -n "$P-fw2" addr add 203.0.113.2/24 dev eth2; ip -n "$P-fw2" link set eth2 up
ns client ip route add default via 192.0.2.1

# ---- the two nodes ------------------------------------------------------------------------------
printf 'demo-sync-password-0123456789\n' >"$DIR/sync.pw"
printf 'demo state sync key, shared by fw1 and fw2\n' >"$DIR/statesync.key"
chmod 600 "$DIR/sync.pw" "$DIR/statesync.key"
# Every transition runs this hook (arguments: EVENT VHID INTERFACE OLD NEW REASON).
cat >"$DIR/hook.sh" <<'EOF'
#!/bin/sh
echo "$TANDEM_NODE vhid $2 ($3): $4 -> $5 ($6)" >>"$(dirname "$0")/hooks.log"
EOF
chmod 755 "$DIR/hook.sh"

local_part() { # NODE SKEW PEER_SYNC_ADDR SYNC_TABLE
    cat <<EOF
[node]
name = "$1"
advskew = $2
preempt = true
control_socket = "$DIR/$1.sock"
state_dir = "$DIR/$1-state"

[interfaces]
lan = "eth0"
wan = "eth1"
sync = "eth2"

[carp]
passphrase = "demo-carp-passphrase"

[statesync]
interface = "sync"
peers = ["$3"]
key_file = "statesync.key"

[metrics]
listen = "127.0.0.1:9720"

[hooks]
on_transition = "hook.sh"

[[checks]]
name = "upstream"
kind = "ping"
address = "198.51.100.10"
interface = "wan"

$4
EOF
}
SYNC_RULE='
[[rules]]
interface = "sync"
action = "pass"
source = "sync:network"
description = "sync link"
'
AREAS='
[[vips]]
vhid = 1
interface = "lan"
addresses = ["192.0.2.1/24"]

[[vips]]
vhid = 2
interface = "wan"
addresses = ["198.51.100.1/24"]
'"$SYNC_RULE"'
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
'
FW2_SYNC='[sync]
role = "peer"
listen = "203.0.113.2:8443"
state_dir = "fw2-state"
user = "sync"
password_file = "sync.pw"'
# fw2 starts with only the rule that lets the sync link in: the rest comes from fw1.
{ local_part fw2 100 203.0.113.1 "$FW2_SYNC"; echo "$SYNC_RULE"; } >"$DIR/fw2.toml"

start() { # NODE
    (cd "$DIR" && ns "$1" "$T" run --config "$1.toml" >>"$DIR/$1.log" 2>&1) &
    PIDS="$PIDS $!"
    wait_for 20 "$1 answering" node "$1" status >/dev/null 2>&1 || { tail -20 "$DIR/$1.log" >&2; exit 1; }
}

echo "[demo] == fw2 (the peer) starts; its certificate's fingerprint goes into fw1's config"
start fw2
FP2=$(json fw2 "print(d['config_sync']['fingerprint'])")
say fw2 "certificate $FP2"
FW1_SYNC="[sync]
role = \"primary\"
listen = \"203.0.113.1:8443\"
state_dir = \"fw1-state\"
user = \"sync\"
password_file = \"sync.pw\"

[[sync.peers]]
name = \"fw2\"
url = \"https://203.0.113.2:8443\"
fingerprint = \"$FP2\""
{ local_part fw1 0 203.0.113.2 "$FW1_SYNC"; echo "$AREAS"; } >"$DIR/fw1.toml"

echo "[demo] == fw1 (the primary) starts; fw2 pins fw1's certificate and reloads"
start fw1
FP1=$(json fw1 "print(d['config_sync']['fingerprint'])")
say fw1 "certificate $FP1"
sed -i "s/^\[sync\]$/[sync]\nprimary_fingerprint = \"$FP1\"/" "$DIR/fw2.toml"
node fw2 reload | sed 's/^/[fw2] /'
in_sync() { [ "$(json fw1 "print(d['config_sync']['peers'][0]['in_sync'])")" = True ]; }
wait_for 30 "fw2 in sync with fw1" in_sync
settled() { [ "$(state fw1 1)$(state fw1 2)$(state fw2 1)$(state fw2 2)" = MASTERMASTERBACKUPBACKUP ]; }
wait_for 30 "fw1 master, fw2 backup" settled
ready() { json fw2 "import sys; sys.exit(0 if d['state_sync']['engine']['ready'] else 1)"; }
wait_for 30 "fw2's state sync ready" ready
show fw1; echo; show fw2; echo

echo "[demo] == a config change on fw1: a rule for the lan's web traffic, then tandem reload"
cat >>"$DIR/fw1.toml" <<'EOF'

[[rules]]
interface = "lan"
action = "pass"
protocol = "tcp"
destination_port = [80, 443]
description = "web added by the demo"
EOF
t0=$(date +%s%N)
node fw1 reload | sed 's/^/[fw1] /'
active() { ns fw2 nft list table inet tandem 2>/dev/null | grep -q "web added by the demo"; }
wait_for 10 "the new rule on fw2" active
say fw2 "runs the new rule $(( ($(date +%s%N) - t0) / 1000000 )) ms after the reload on fw1 began"

echo "[demo] == $CONNS TCP connections from the client to the server, NATed to the wan VIP"
ns server python3 "$TRAFFIC" server 7000 >"$DIR/server.out" 2>&1 &
PIDS="$PIDS $!"
wait_for 10 "the echo server" grep -q ready "$DIR/server.out"
mkfifo "$DIR/cmd"
ns client python3 "$TRAFFIC" client 198.51.100.10 7000 "$CONNS" 0 100 <"$DIR/cmd" >"$DIR/client.out" 2>&1 &
PIDS="$PIDS $!"
exec 3>"$DIR/cmd"
wait_for 20 "the client's connections" grep -q ready "$DIR/client.out"
sleep 2
say client "$CONNS connections open, each sends a line every 100 ms and waits for its echo"
say fw1 "$(ns fw1 conntrack -C) conntrack entries; fw2: $(ns fw2 conntrack -C)"

report() { # TITLE TAKEOVER_NODE
    echo report >&3
    sleep 0.5
    tail -1 "$DIR/client.out" | python3 -c '
import json, statistics, sys
title = sys.argv[1]
flows = json.load(sys.stdin)["flows"]
alive = [f for f in flows if f["error"] is None and f["silent_for"] < 1.0]
pauses = sorted(f["max_silence"] for f in flows)
print(f"[client] {title}: {len(alive)}/{len(flows)} connections alive; "
      f"longest pause per connection: median {statistics.median(pauses):.2f} s, max {max(pauses):.2f} s")
for f in flows:
    if f["error"]:
        print("[client]   connection %s: %s" % (f["i"], f["error"]))
' "$1"
}

# TCP segments the endpoints had to send again so far (their namespaces' counters).
retransmitted() { echo $(( $(ns client nstat -az TcpRetransSegs | awk '/TcpRetransSegs/ {print $2}') + $(ns server nstat -az TcpRetransSegs | awk '/TcpRetransSegs/ {print $2}') )); }

echo "[demo] == planned maintenance: fw1 hands its VIPs over (tandem maintenance enter)"
echo mark >&3
r0=$(retransmitted)
node fw1 maintenance enter | sed 's/^/[fw1] /'
fw2_master() { test "$(state fw2 1)$(state fw2 2)" = MASTERMASTER; }
wait_for 5 "fw2 master" fw2_master || { show fw2; tail -20 "$DIR/fw2.log"; exit 1; }
sleep 3
report "maintenance enter"
say client "TCP retransmissions caused by the hand-over: $(( $(retransmitted) - r0 ))"
show fw1 | head -3
echo "[demo] == fw1 leaves maintenance: with preempt it takes its VIPs back"
echo mark >&3
node fw1 maintenance leave | sed 's/^/[fw1] /'
fw1_master() { test "$(state fw1 1)$(state fw1 2)" = MASTERMASTER; }
wait_for 10 "fw1 master again" fw1_master || { show fw1; tail -20 "$DIR/fw1.log"; exit 1; }
sleep 3
report "maintenance leave"
echo

echo "[demo] == the master dies: fw1 loses power (its links go down, its daemon is killed: no bow-out)"
echo mark >&3
t0=$(date +%s%N)
# Killing only the daemon would leave fw1's kernel forwarding with its VIPs: a machine that
# dies takes its links with it, so the connections must move to fw2.
for d in eth0 eth1 eth2; do ip -n "$P-fw1" link set "$d" down; done
ip netns pids "$P-fw1" | xargs -r kill -9
wait_for 15 "fw2 master" fw2_master || { show fw2; tail -20 "$DIR/fw2.log"; exit 1; }
say fw2 "MASTER of both VIPs $(( ($(date +%s%N) - t0) / 1000000 )) ms after fw1 died"
sleep 5
report "fw1 killed"
show fw2; echo

echo "[demo] == fw1 comes back: links up, the daemon sweeps the VIPs its killed run left,"
echo "[demo]    takes the table from fw2 (bulk sync), then takes its VIPs back (preempt)"
echo mark >&3
for d in eth0 eth1 eth2; do ip -n "$P-fw1" link set "$d" up; done
start fw1
wait_for 30 "fw1 master again" fw1_master || { show fw1; tail -20 "$DIR/fw1.log"; exit 1; }
say fw1 "MASTER again: $(json fw1 "print(d['sync']['state'])")"
sleep 5
report "fw1 back"
show fw1; echo
echo quit >&3

echo "[demo] == state changes the daemons logged"
for n in fw1 fw2; do grep -h -E ' -> |demotion|applied generation|bulk' "$DIR/$n.log" | sed "s/^/[$n] /"; done
echo "[demo] == what the on_transition hook saw, in order"
sed 's/^\([^ ]*\) /[\1] hook: /' "$DIR/hooks.log"

# Each node serves its status page and metrics on 127.0.0.1:9720 inside its namespace; the
# namespaces go when the demo ends, so copies are kept.
OUT=/tmp/tandem-demo
mkdir -p "$OUT"
fetch() { ns "$1" python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:9720" + sys.argv[1], timeout=5).read().decode())' "$2"; }
for n in fw1 fw2; do
    fetch "$n" / >"$OUT/$n-status.html" && fetch "$n" /metrics >"$OUT/$n-metrics.txt" \
        || echo "[demo] could not fetch $n's status page" >&2
done
echo "[demo] == the status page and metrics"
for n in fw1 fw2; do
    say "$n" "served http://127.0.0.1:9720/ (status page) and /metrics in its namespace;" \
        "copies: $OUT/$n-status.html, $OUT/$n-metrics.txt"
done
say fw2 "$(grep -E '^tandem_carp_vip_transitions_total' "$OUT/fw2-metrics.txt" | tr '\n' ' ')"
echo "[demo] open a copy with any browser, e.g. chromium $OUT/fw1-status.html"
