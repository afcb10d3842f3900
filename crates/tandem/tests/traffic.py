#!/usr/bin/env python3
"""Long-lived test traffic for the state-sync tests, the demo and the benches. Each flow's
gaps (when it went silent and when it resumed, wall clock) let a bench tell which failover
each pause belongs to.

server: python3 traffic.py server PORT
    TCP and UDP echo on PORT; prints "ready" once listening.

client: python3 traffic.py client HOST PORT CONNS UDPFLOWS INTERVAL_MS
    Opens CONNS TCP connections and UDPFLOWS UDP flows to HOST:PORT and sends a short message
    on each every INTERVAL_MS, checking every echo. Prints "ready" once all connections are up.
    Reads commands on stdin, one per line:
      mark    remember now; later reports count what happened after it
      report  print one JSON line: per-flow counters since start and since the mark, and the
              flow's gaps since the mark: [start, end] wall-clock seconds of every silence
              between two echoes longer than GAP_S (0.2 s), the open one at the report too
      quit    close everything and exit
"""

import asyncio
import json
import sys
import time

GAP_S = 0.2
# monotonic -> wall clock (the bench's events are wall-clock stamps)
_OFFSET = time.time() - time.monotonic()


def wall(mono):
    return round(mono + _OFFSET, 4)


async def serve(port):
    async def echo(reader, writer):
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.t = transport

        def datagram_received(self, data, addr):
            self.t.sendto(data, addr)

    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Udp, local_addr=("0.0.0.0", port))
    server = await asyncio.start_server(echo, "0.0.0.0", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


class Flow:
    def __init__(self, kind, i):
        self.kind, self.i = kind, i
        self.sent = self.echoed = 0
        self.echoed_after_mark = 0
        self.error = None
        self.last_echo = time.monotonic()
        self.max_silence = 0.0
        self.gaps = []

    def got_echo(self, marked):
        now = time.monotonic()
        if marked and now - self.last_echo > GAP_S:
            self.gaps.append([wall(self.last_echo), wall(now)])
        self.max_silence = max(self.max_silence, now - self.last_echo)
        self.last_echo = now
        self.echoed += 1
        if marked:
            self.echoed_after_mark += 1


async def client(host, port, conns, udpflows, interval):
    state = {"marked": False, "mark_time": None}
    flows = []
    stop = asyncio.Event()

    async def tcp_flow(f, reader, writer):
        seq = 0
        try:
            while not stop.is_set():
                msg = f"tcp {f.i} {seq}\n".encode()
                writer.write(msg)
                await writer.drain()
                f.sent += 1
                line = await reader.readline()
                if not line:
                    f.error = "closed by peer"
                    return
                if line != msg:
                    f.error = f"bad echo {line!r}"
                    return
                f.got_echo(state["marked"])
                seq += 1
                await asyncio.sleep(interval)
        except (ConnectionError, OSError) as e:
            f.error = f"{type(e).__name__}: {e}"

    class UdpFlow(asyncio.DatagramProtocol):
        def __init__(self, f):
            self.f = f

        def datagram_received(self, data, addr):
            self.f.got_echo(state["marked"])

        def error_received(self, exc):
            self.f.error = f"{type(exc).__name__}: {exc}"

    async def udp_flow(f, transport):
        seq = 0
        while not stop.is_set():
            transport.sendto(f"udp {f.i} {seq}".encode())
            f.sent += 1
            seq += 1
            await asyncio.sleep(interval)

    loop = asyncio.get_running_loop()
    tasks = []
    for i in range(conns):
        f = Flow("tcp", i)
        reader, writer = await asyncio.open_connection(host, port)
        flows.append(f)
        tasks.append(asyncio.create_task(tcp_flow(f, reader, writer)))
    for i in range(udpflows):
        f = Flow("udp", i)
        transport, _ = await loop.create_datagram_endpoint(
            lambda f=f: UdpFlow(f), remote_addr=(host, port)
        )
        flows.append(f)
        tasks.append(asyncio.create_task(udp_flow(f, transport)))
    print("ready", flush=True)

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line in ("", "quit"):
            break
        if line == "mark":
            state["marked"] = True
            state["mark_time"] = time.monotonic()
            for f in flows:
                f.echoed_after_mark = 0
                f.max_silence = 0.0
                f.gaps = []
            print("marked", flush=True)
        elif line == "report":
            now = time.monotonic()
            out = {
                "flows": [
                    {
                        "kind": f.kind,
                        "i": f.i,
                        "sent": f.sent,
                        "echoed": f.echoed,
                        "echoed_after_mark": f.echoed_after_mark,
                        "error": f.error,
                        "silent_for": round(now - f.last_echo, 3),
                        "max_silence": round(max(f.max_silence, now - f.last_echo), 3),
                        "gaps": f.gaps
                        + ([[wall(f.last_echo), wall(now)]] if now - f.last_echo > GAP_S else []),
                    }
                    for f in flows
                ]
            }
            print(json.dumps(out), flush=True)
    stop.set()
    for t in tasks:
        t.cancel()


def main():
    if sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        host, port, conns, udpflows, ms = sys.argv[2:7]
        asyncio.run(client(host, int(port), int(conns), int(udpflows), int(ms) / 1000.0))


if __name__ == "__main__":
    main()
