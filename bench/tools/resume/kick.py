#!/usr/bin/env python3
"""The router's side of the resume experiment (run inside the router's namespace).

kick.py MODE PROBE CLIENT_IF SERVER_IF < "go"
  Reads the established TCP connections from conntrack (orig + reply tuple, so SNAT is known),
  prints "ready", waits for "go" on stdin, then restores the path (deletes nft table inet rscut)
  and, at once, kicks every connection:
    none    nothing (baseline)
    probe   send each endpoint a probe it must answer with an ACK (RFC 5961 §4 challenge ACK for
            a SYN, or an out-of-window ACK); the answers are forwarded by the router as usual
    dupack  probe, then forward three more copies of each answer (3 duplicate ACKs)
    icmp-peer  probe, then for each answer RS_ICMP_COUNT (8) ICMP host unreachable to the answer's
            peer whose quoted TCP header carries seq = the answer's ack number = the peer's
            snd_una (RFC 6069 RTO revert: the peer reverts its backed-off RTO, retransmits now)
    icmp    probe; the answers are held back by an nft set; once both of a connection are in,
            each is sent on to its peer with TSecr = the peer's own TSval (RS_EDIT=0: unedited),
            then the ICMPs of icmp-peer to both ends
  PROBE is syn or ack. Packets are written with AF_PACKET on the egress interface (no
  netfilter on the way, addresses as the endpoint sees them after NAT). Prints one JSON line.
"""

import json
import os
import random
import re
import select
import socket
import struct
import subprocess
import sys
import time

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip4(src, dst, proto, body, ttl=64):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    c = csum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + body


def tcp(src, dst, sport, dport, seq, ack, flags, win, opts=b"", data=b""):
    off = (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off << 4, flags, win, 0, 0)
    seg = hdr + opts + data
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(seg))
    c = csum(pseudo + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return ip4(src, dst, 6, seg)


def icmp_unreach(src, dst, quoted, code=1):
    body = struct.pack("!BBHI", 3, code, 0, 0) + quoted
    c = csum(body)
    body = body[:2] + struct.pack("!H", c) + body[4:]
    return ip4(src, dst, 1, body)


SYN, RST, PSH, ACK = 0x02, 0x04, 0x08, 0x10


def parse(pkt):
    """IPv4/TCP -> dict or None."""
    if len(pkt) < 40 or pkt[0] >> 4 != 4 or pkt[9] != 6:
        return None
    ihl = (pkt[0] & 15) * 4
    t = pkt[ihl:]
    sport, dport, seq, ack, off, flags, win = struct.unpack("!HHIIBBH", t[:16])
    doff = (off >> 4) * 4
    opts = t[20:doff]
    ts = None
    i = 0
    while i < len(opts):
        k = opts[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if i + 1 >= len(opts):
            break
        ln = opts[i + 1]
        if k == 8 and ln == 10:
            ts = struct.unpack("!II", opts[i + 2 : i + 10])
        if ln < 2:
            break
        i += ln
    return {
        "src": socket.inet_ntoa(pkt[12:16]), "dst": socket.inet_ntoa(pkt[16:20]),
        "sport": sport, "dport": dport, "seq": seq, "ack": ack, "flags": flags, "win": win,
        "opts": bytes(opts), "len": len(t) - doff, "ts": ts,
    }


def conns_from_conntrack():
    out = subprocess.run(["conntrack", "-L", "-p", "tcp"], capture_output=True, text=True).stdout
    conns = []
    for line in out.splitlines():
        if "ESTABLISHED" not in line:
            continue
        kv = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
        if len(kv) < 8:
            continue
        o, r = dict(kv[:4]), dict(kv[4:8])
        conns.append({
            "c": (o["src"], int(o["sport"])),  # client as it is
            "s": (o["dst"], int(o["dport"])),  # server as the client sees it
            "sr": (r["src"], int(r["sport"])),  # server as it is
            "n": (r["dst"], int(r["dport"])),  # client as the server sees it (after SNAT)
        })
    return conns


def mac(ifname):
    with open(f"/sys/class/net/{ifname}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def neigh_mac(ifname, ip):
    out = subprocess.run(["ip", "-j", "neigh", "show", "dev", ifname], capture_output=True, text=True).stdout
    for n in json.loads(out or "[]"):
        if n.get("dst") == ip and "lladdr" in n:
            return bytes.fromhex(n["lladdr"].replace(":", ""))
    raise SystemExit(f"no neighbour {ip} on {ifname}")


def if_addr(ifname):
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", ifname], capture_output=True, text=True).stdout
    return json.loads(out)[0]["addr_info"][0]["local"]


class Side:
    def __init__(self, ifname):
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        self.sock.bind((ifname, 0))
        self.sock.setblocking(False)
        self.mac = mac(ifname)
        self.addr = if_addr(ifname)
        self.peers = {}

    def send(self, dst_ip, ippkt):
        m = self.peers.get(dst_ip)
        if m is None:
            m = self.peers[dst_ip] = neigh_mac(self.ifname, dst_ip)
        self.sock.send(m + self.mac + struct.pack("!H", ETH_P_IP) + ippkt)

    def drain(self):
        out = []
        while True:
            try:
                pkt, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return out
            if addr[2] != PACKET_OUTGOING:
                out.append(pkt)


def with_tsecr(opts, tsecr):
    """The TCP options with the timestamp option's TSecr replaced."""
    i = 0
    while i < len(opts):
        k = opts[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        ln = opts[i + 1] if i + 1 < len(opts) else 0
        if ln < 2:
            break
        if k == 8 and ln == 10:
            return opts[: i + 6] + struct.pack("!I", tsecr) + opts[i + 10 :]
        i += ln
    return opts


def resume_pair(c, ac, asv, cs, ss, icmp_count):
    """Both answers of one connection are in (ac from the client, asv from the server). To each
    end: the other end's answer (its ACK says what the other end has received; its TSecr is set
    to this end's own fresh TSval so the ACK cannot look like an ACK of the original transmission,
    which would undo the RTO state), then ICMP host unreachables quoting seq = that ack, which is
    this end's snd_una (RFC 6069 RTO revert: a backed-off sender retransmits now)."""
    n = 0
    ends = ((ss, c["n"], c["sr"], ac, asv), (cs, c["s"], c["c"], asv, ac))
    # first both ACKs, so that neither end sees the other's retransmission (whose TSecr is old)
    # before the ACK that moves its snd_una up
    for side, (sip, sp), (dip, dp), ans, own in ends:
        edit = os.environ.get("RS_EDIT", "1") == "1"
        opts = with_tsecr(ans["opts"], own["ts"][0]) if edit and ans["ts"] and own["ts"] else ans["opts"]
        side.send(dip, tcp(sip, dip, sp, dp, ans["seq"], ans["ack"], ACK, ans["win"], opts))
        n += 1
    for side, (sip, sp), (dip, dp), ans, own in ends:
        quoted = tcp(dip, sip, dp, sp, ans["ack"], ans["seq"], ACK, 1024)
        for _ in range(icmp_count):
            side.send(dip, icmp_unreach(side.addr, dip, quoted))
        n += icmp_count
    return n


def main():
    mode, probe, cif, sif = sys.argv[1:5]
    icmp_count = int(os.environ.get("RS_ICMP_COUNT", "8"))
    conns = conns_from_conntrack()
    cs, ss = Side(cif), Side(sif)
    for c in conns:  # resolve the next hops before the clock runs, as the daemon would have
        cs.peers.setdefault(c["c"][0], neigh_mac(cif, c["c"][0]))
        ss.peers.setdefault(c["sr"][0], neigh_mac(sif, c["sr"][0]))
    rnd = random.Random(12)
    # index: answer 4-tuple -> (conn, which end answered)
    want = {}
    for c in conns:
        want[(c["c"][0], c["c"][1], c["s"][0], c["s"][1])] = (c, "client")
        want[(c["sr"][0], c["sr"][1], c["n"][0], c["n"][1])] = (c, "server")
    probes = []  # built before the clock runs
    for c in conns:
        # to the client, as if from the server; to the server, as if from the (NATed) client
        for side, (sip, sp), (dip, dp) in ((cs, c["s"], c["c"]), (ss, c["n"], c["sr"])):
            if probe == "syn":
                pkt = tcp(sip, dip, sp, dp, rnd.getrandbits(32), 0, SYN, 1024)
            else:
                pkt = tcp(sip, dip, sp, dp, rnd.getrandbits(32), rnd.getrandbits(32), ACK, 1024)
            probes.append((side, dip, pkt))
    print("ready", len(conns), flush=True)
    sys.stdin.readline()
    cs.drain()  # forget what the capture sockets queued before now
    ss.drain()
    restore = "delete table inet rscut\n"
    if mode == "icmp":
        # hold back each end's first pure ACK after its probe (its answer): it answers a packet the
        # peer never sent, and the kick forwards it itself, edited
        restore += ("table inet rshold {\n set pending { type ipv4_addr . inet_service . ipv4_addr . inet_service;"
                    " flags dynamic,timeout; timeout 2s; }\n chain forwarding {\n"
                    " type filter hook forward priority -300; policy accept\n"
                    " ip length < 80 tcp flags & (fin|syn|rst|ack) == ack"
                    " ip saddr . tcp sport . ip daddr . tcp dport @pending"
                    " delete @pending { ip saddr . tcp sport . ip daddr . tcp dport } drop\n }\n}\n")
        elems = []
        for c in conns:
            elems.append(f"{c['c'][0]} . {c['c'][1]} . {c['s'][0]} . {c['s'][1]}")
            elems.append(f"{c['sr'][0]} . {c['sr'][1]} . {c['c'][0]} . {c['c'][1]}")
        restore += "add element inet rshold pending { " + ", ".join(elems) + " }\n"
    subprocess.run(["nft", "-f", "-"], input=restore, text=True, check=True)
    t_restore = time.monotonic()
    stats = {"t_restore": t_restore, "conns": len(conns), "probes": 0, "answers": 0, "followups": 0, "kicked": {}}
    if mode == "none":
        print(json.dumps(stats), flush=True)
        return
    for side, dip, pkt in probes:
        side.send(dip, pkt)
        stats["probes"] += 1
    answered = set()
    held = {}
    deadline = time.monotonic() + 0.5
    while len(answered) < len(want) and time.monotonic() < deadline:
        select.select([cs.sock, ss.sock], [], [], 0.01)
        for side in (cs, ss):
            for raw in side.drain():
                p = parse(raw[14:])
                if not p or p["len"] or not (p["flags"] & ACK) or p["flags"] & (SYN | RST | 0x01):
                    continue
                key = (p["src"], p["sport"], p["dst"], p["dport"])
                if key not in want or key in answered:
                    continue
                answered.add(key)
                stats["answers"] += 1
                c, who = want[key]
                # when the peer of the answering end got its kick, keyed "client port/peer"
                kicked = ("server" if who == "client" else "client")
                stats["kicked"][f"{c['c'][1]}/{kicked}"] = [
                    round(time.monotonic(), 5), p["seq"], p["ack"]]
                # the peer of the answering end, addressed as the peer sees things
                if who == "client":
                    peer_side, me, peer = ss, c["n"], c["sr"]
                else:
                    peer_side, me, peer = cs, c["s"], c["c"]
                if mode == "dupack":
                    for _ in range(3):
                        peer_side.send(peer[0], tcp(me[0], peer[0], me[1], peer[1], p["seq"], p["ack"],
                                                    p["flags"] & ~PSH, p["win"], p["opts"]))
                        stats["followups"] += 1
                elif mode == "icmp-peer":
                    # quote the peer's own segment: peer -> me, seq = its snd_una (= answer's ack)
                    quoted = tcp(peer[0], me[0], peer[1], me[1], p["ack"], p["seq"], ACK, 1024)
                    for _ in range(icmp_count):
                        peer_side.send(peer[0], icmp_unreach(peer_side.addr, peer[0], quoted))
                        stats["followups"] += 1
                elif mode == "icmp":
                    held[key] = p
                    other = (c["sr"][0], c["sr"][1], c["n"][0], c["n"][1]) if who == "client" else \
                        (c["c"][0], c["c"][1], c["s"][0], c["s"][1])
                    if other in held:
                        stats["followups"] += resume_pair(c, held[(c["c"][0], c["c"][1], c["s"][0], c["s"][1])],
                                                          held[(c["sr"][0], c["sr"][1], c["n"][0], c["n"][1])],
                                                          cs, ss, icmp_count)
    stats["kick_s"] = round(time.monotonic() - t_restore, 4)
    if mode == "icmp":
        subprocess.run(["nft", "delete", "table", "inet", "rshold"], check=True)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
