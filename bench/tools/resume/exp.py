#!/usr/bin/env python3
"""Resume experiment: client - router - server namespaces, CONNS TCP connections with a
32-byte message every 50 ms each way, the router's forwarding cut (silent drop, like a dead
master) for CUT seconds, then restored with one of the kicks in kick.py. Prints a table: time
from restore to each connection's next message in BOTH directions (median/p99/max), connections
failed, integrity errors, and the endpoints' TCP counters over the run.

exp.py [--conns N] [--cuts S,S,..] [--cases mode:probe,...] [--nat both|on|off] [--cc cubic]
Needs root (network namespaces). Namespaces are named rs-<pid>-{c,r,s} and always removed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTERS = ["TcpRetransSegs", "TcpExtTCPLossProbes", "TcpExtTCPTimeouts", "TcpEstabResets", "TcpOutRsts",
            "TcpExtTCPChallengeACK", "TcpExtTCPSYNChallenge", "TcpExtOutOfWindowIcmps",
            "TcpExtTCPDSACKRecv", "TcpExtTCPSpuriousRTOs", "TcpExtTCPACKSkippedChallenge"]


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True).stdout


def nsx(ns, *cmd, check=True):
    return sh("ip", "netns", "exec", ns, *cmd, check=check)


def nstat(ns):
    out = nsx(ns, "nstat", "-az", "--json")
    d = json.loads(out)
    return d.get("kernel", d)


class Lab:
    def __init__(self, nat, cc=None):
        self.cc = cc
        p = f"rs-{os.getpid()}"
        self.c, self.r, self.s = f"{p}-c", f"{p}-r", f"{p}-s"
        self.procs = []
        try:
            self.setup(nat)
        except BaseException:
            self.close()
            raise

    def setup(self, nat):
        for ns in (self.c, self.r, self.s):
            sh("ip", "netns", "add", ns)
            nsx(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "c0", "netns", self.c, "type", "veth", "peer", "rc", "netns", self.r)
        sh("ip", "link", "add", "s0", "netns", self.s, "type", "veth", "peer", "rsv", "netns", self.r)
        for ns, dev, addr in ((self.c, "c0", "192.0.2.2/24"), (self.r, "rc", "192.0.2.1/24"),
                              (self.r, "rsv", "198.51.100.1/24"), (self.s, "s0", "198.51.100.2/24")):
            nsx(ns, "ip", "addr", "add", addr, "dev", dev)
            nsx(ns, "ip", "link", "set", dev, "up")
        nsx(self.c, "ip", "route", "add", "default", "via", "192.0.2.1")
        nsx(self.s, "ip", "route", "add", "default", "via", "198.51.100.1")
        nsx(self.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rules = 'table inet rsct {\n chain forwarding {\n type filter hook forward priority 0\n ct state established,related accept\n }\n}\n'
        if nat:
            rules += 'table ip rsnat {\n chain post {\n type nat hook postrouting priority srcnat\n oifname "rsv" snat to 198.51.100.1\n }\n}\n'
        self.nft(rules)

    def nft(self, rules):
        subprocess.run(["ip", "netns", "exec", self.r, "nft", "-f", "-"], input=rules, text=True, check=True)

    def spawn(self, ns, *cmd):
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in (self.c, self.r, self.s):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run_case(mode, probe, nat, conns, cut, cc=None):
    lab = Lab(nat, cc)
    try:
        srv = lab.spawn(lab.s, sys.executable, f"{HERE}/endpoint.py", "server", "5001")
        assert srv.stdout.readline().strip() == "ready"
        cli = lab.spawn(lab.c, sys.executable, f"{HERE}/endpoint.py", "client", "198.51.100.2", "5001", str(conns))
        assert cli.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        kick = lab.spawn(lab.r, sys.executable, f"{HERE}/kick.py", mode, probe, "rc", "rsv")
        ready = kick.stdout.readline().split()
        assert ready and ready[0] == "ready", ready
        before = {ns: nstat(ns) for ns in (lab.c, lab.s)}
        lab.nft("table inet rscut {\n chain forwarding {\n type filter hook forward priority -400; policy drop\n }\n}\n")
        time.sleep(cut)
        kick.stdin.write("go\n")
        kick.stdin.flush()
        ks = json.loads(kick.stdout.readline())
        time.sleep(7.5)
        after = {ns: nstat(ns) for ns in (lab.c, lab.s)}
        for p in (cli, srv):
            p.stdin.write("dump\n")
            p.stdin.flush()
        dumps = [json.loads(p.stdout.readline()) for p in (cli, srv)]
    finally:
        lab.close()
    tr = ks["t_restore"]
    resume, failed, errors, slow, reasons = [], 0, 0, [], {}
    since_kick, late = [], []
    kicked = ks.get("kicked", {})
    for cid in dumps[0]:
        worst = 0.0
        wk = 0.0
        port = dumps[0][cid]["port"]
        dirs = []
        for d, sender in zip(dumps, ("server", "client")):
            e = d.get(cid)
            if e is None or e["failed"]:
                reasons[str(e and e["failed"])] = reasons.get(str(e and e["failed"]), 0) + 1
                failed += 1
                worst = float("inf")
                break
            errors += e["err"]
            later = [t for t in e["arr"] if t > tr]
            if not later:
                worst = float("inf")
                break
            worst = max(worst, later[0] - tr)
            k = kicked.get(f"{port}/{sender}")
            wk = max(wk, later[0] - (k[0] if k else tr))
            dirs.append((sender, round(later[0] - tr, 3), k))
            tail = [t for t in later if t > later[0] + 0.5]
            if len(tail) > 1:
                slow.append(max(b - a for a, b in zip(tail, tail[1:])))
        resume.append(worst)
        if worst != float("inf"):
            since_kick.append(wk)
        if worst > 0.1:
            late.append(dirs)
    cnt = {}
    for k in COUNTERS:
        cnt[k] = tuple(after[ns].get(k, 0) - before[ns].get(k, 0) for ns in (lab.c, lab.s))
    return {
        "mode": mode, "probe": probe, "nat": nat, "conns": len(resume), "kick": {k: v for k, v in ks.items() if k != "kicked"},
        "median": statistics.median(resume), "p99": pct(resume, 0.99), "max": max(resume),
        "within50ms": sum(1 for r in resume if r <= 0.05),
        "kick_median": statistics.median(since_kick) if since_kick else None,
        "kick_p99": pct(since_kick, 0.99) if since_kick else None, "late": late[:10], "failed": failed, "reasons": reasons, "errors": errors,
        "gap_after": max(slow) if slow else None, "counters": cnt, "resume": resume, "since_kick": since_kick,
    }


def fmt(x):
    return "inf" if x == float("inf") else f"{x * 1000:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--cuts", default="2.6,3.0,3.4,3.8", help="outage lengths (s), one run each")
    ap.add_argument("--cases", default="none:syn,probe:syn,dupack:syn,icmp-peer:syn,icmp:syn")
    ap.add_argument("--nat", default="both")
    ap.add_argument("--cc", default=None, help="congestion control at the endpoints (default: host's)")
    ap.add_argument("--recverr", action="store_true", help="IP_RECVERR on the endpoints' sockets")
    ap.add_argument("--json", action="store_true", help="each run as JSON on stderr")
    a = ap.parse_args()
    if a.cc:
        os.environ["RS_CC"] = a.cc
    if a.recverr:
        os.environ["RS_RECVERR"] = "1"
    nats = {"both": [False, True], "on": [True], "off": [False]}[a.nat]
    cuts = [float(x) for x in a.cuts.split(",")]
    cc = a.cc or sh("sysctl", "-n", "net.ipv4.tcp_congestion_control").strip()
    print(f"{a.conns} connections x {len(cuts)} outages ({a.cuts} s), 32 B each way every 50 ms, {cc}"
          f"{', IP_RECVERR' if a.recverr else ''}; resume = restore to the next message in BOTH directions (ms); counters summed, client/server")
    print("| kick | NAT | resume median | p99 | max | <=50 ms | failed | integrity errors | max gap after |"
          " RetransSegs | ChallengeACK | OutOfWindowIcmps | SpuriousRTOs | DSACKRecv | kick took (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in a.cases.split(","):
        mode, probe = case.split(":")
        for nat in nats:
            rs = [run_case(mode, probe, nat, a.conns, cut, a.cc) for cut in cuts]
            for r in rs:
                r.pop("resume_raw", None)
                if a.json:
                    print(json.dumps({k: v for k, v in r.items() if k not in ("resume", "since_kick")}), file=sys.stderr)
            res = [x for r in rs for x in r["resume"]]
            cnt = lambda k: "/".join(str(sum(r["counters"][k][i] for r in rs)) for i in (0, 1))  # noqa: E731
            gaps = [r["gap_after"] for r in rs if r["gap_after"] is not None]
            name = mode if mode in ("none", "icmp", "icmp-peer") else f"{mode} ({probe})"
            if mode == "icmp" and probe != "syn":
                name = f"icmp ({probe} probe)"
            print(f"| {name} | {'on' if nat else 'off'} | {fmt(statistics.median(res))} | {fmt(pct(res, 0.99))} |"
                  f" {fmt(max(res))} | {sum(1 for x in res if x <= 0.05)}/{len(res)} |"
                  f" {sum(r['failed'] for r in rs)} | {sum(r['errors'] for r in rs)} | {fmt(max(gaps)) if gaps else '-'} |"
                  f" {cnt('TcpRetransSegs')} | {cnt('TcpExtTCPChallengeACK')} | {cnt('TcpExtOutOfWindowIcmps')} |"
                  f" {cnt('TcpExtTCPSpuriousRTOs')} | {cnt('TcpExtTCPDSACKRecv')} |"
                  f" {max(r['kick'].get('kick_s', 0) for r in rs) * 1000:.0f} |", flush=True)


if __name__ == "__main__":
    main()
