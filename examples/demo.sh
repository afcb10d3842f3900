#!/usr/bin/env bash
# Demo: a two-node tandem cluster in network namespaces. A client pings the VIP every 100 ms
# while the master's link goes down and comes back; the status of both nodes is shown at each
# step. Needs root. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then echo "run as root (network namespaces)" >&2; exit 1; fi
bash scripts/deps.sh
if ! command -v cargo >/dev/null; then
    echo "cargo (Rust toolchain) is needed to build tandem: install it with rustup or apt-get install cargo" >&2
    exit 1
fi
cargo build --release -q -p tandem
TANDEM=$PWD/target/release/tandem

P=tdemo$$
DIR=$(mktemp -d)
cleanup() {
    [ -n "${PING:-}" ] && kill "$PING" 2>/dev/null || true
    for pid in ${PIDS:-}; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for n in sw client fw1 fw2; do ip netns del "$P-$n" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

ip netns add "$P-sw"
ip -n "$P-sw" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
ip -n "$P-sw" link set br0 up
port=0
attach() { # host addr
    ip netns add "$P-$1"
    ip -n "$P-$1" link set lo up
    ip -n "$P-$1" link add eth0 type veth peer name p$port netns "$P-sw"
    ip -n "$P-sw" link set p$port master br0 up
    ip -n "$P-$1" addr add "$2" dev eth0
    ip -n "$P-$1" link set eth0 up
    port=$((port + 1))
}
attach client 192.0.2.10/24
attach fw1 192.0.2.2/24
attach fw2 192.0.2.3/24

for n in 1 2; do
    skew=$(( (n - 1) * 100 ))
    cat >"$DIR/fw$n.toml" <<CONF
[node]
name = "fw$n"
advskew = $skew
preempt = true
control_socket = "$DIR/fw$n.sock"

[interfaces]
lan = "eth0"

[carp]
passphrase = "s3cret"
advbase = 1

[[vips]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.100/24"]
CONF
    ip netns exec "$P-fw$n" "$TANDEM" run --config "$DIR/fw$n.toml" 2>"$DIR/fw$n.log" &
    PIDS="${PIDS:-} $!"
done

status() {
    for n in 1 2; do
        ip netns exec "$P-fw$n" "$TANDEM" status --config "$DIR/fw$n.toml" || true
        echo
    done
}
wait_master() { # node
    for _ in $(seq 100); do
        if ip netns exec "$P-$1" "$TANDEM" status --json --config "$DIR/$1.toml" 2>/dev/null | grep -q '"state": "MASTER"'; then return 0; fi
        sleep 0.1
    done
    echo "$1 never became MASTER; its log:" >&2; cat "$DIR/$1.log" >&2; return 1
}

echo "== starting fw1 (advskew 0) and fw2 (advskew 100); waiting for the election"
wait_master fw1
status
ip netns exec "$P-client" ping -i 0.1 -D -O 192.0.2.100 >"$DIR/ping.log" 2>&1 &
PING=$!
sleep 2
echo "== fw1's link goes down"
ip -n "$P-fw1" link set eth0 down
wait_master fw2
sleep 2
status
echo "== fw1's link comes back: with preempt it takes the VIP back"
ip -n "$P-fw1" link set eth0 up
wait_master fw1
sleep 2
status
kill "$PING"; PING=
sent=$(grep -c 'icmp_seq' "$DIR/ping.log" || true)
lost=$(grep -c 'no answer' "$DIR/ping.log" || true)
echo "== client: $sent pings every 100 ms, $lost unanswered during the two switchovers"
echo "== state changes logged by the daemons:"
grep -h ' -> ' "$DIR/fw1.log" "$DIR/fw2.log" | sed 's/^/  /'
