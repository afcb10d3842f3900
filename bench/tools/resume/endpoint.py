#!/usr/bin/env python3
"""One end of the resume experiment's traffic (run inside a network namespace).

server: endpoint.py server PORT
client: endpoint.py client HOST PORT CONNS

Every connection carries two independent streams: each side writes a 32-byte message every
50 ms (so both ends have data outstanding when the path is cut) and checks each message it
reads (connection id, a counter that must go up by one, a payload derived from both).
Prints "ready" once listening / connected. On the stdin line "dump" it prints one JSON line:
per connection the arrival times (time.monotonic) of the messages it read, integrity errors
and whether the connection failed (reset, EOF), then exits.
"""

import json
import os
import selectors
import socket
import struct
import sys
import time

INTERVAL = 0.05
MSG = 32
HDR = struct.Struct(">IQq")  # conn id, counter, send time (ns)


def payload(cid, n):
    b = (cid * 31 + n * 7) & 0xFF
    return bytes((b + i) & 0xFF for i in range(MSG - HDR.size))


class Conn:
    def __init__(self, sock, cid=None):
        self.sock = sock
        self.cid = cid
        self.rbuf = b""
        self.wbuf = b""
        self.sent = 0
        self.expect = 0
        self.arrivals = []
        self.errors = 0
        self.failed = None
        self.next_send = None

    def send_due(self, now):
        if self.cid is None or self.failed:
            return
        while self.next_send is not None and now >= self.next_send:
            self.wbuf += HDR.pack(self.cid, self.sent, time.monotonic_ns()) + payload(self.cid, self.sent)
            self.sent += 1
            self.next_send += INTERVAL
        self.flush()

    def flush(self):
        while self.wbuf and not self.failed:
            try:
                n = self.sock.send(self.wbuf)
            except BlockingIOError:
                return
            except OSError as e:
                self.failed = f"send: {e.strerror}"
                return
            self.wbuf = self.wbuf[n:]

    def readable(self, now):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.failed = f"recv: {e.strerror}"
            return
        if not data:
            self.failed = "eof"
            return
        self.rbuf += data
        while len(self.rbuf) >= MSG:
            m, self.rbuf = self.rbuf[:MSG], self.rbuf[MSG:]
            cid, n, _ = HDR.unpack(m[: HDR.size])
            if self.cid is None:  # server side learns the id from the first message
                self.cid = cid
                self.next_send = now + (cid % 10) * INTERVAL / 10
            if cid != self.cid or n != self.expect or m[HDR.size :] != payload(cid, n):
                self.errors += 1
            self.expect = n + 1
            self.arrivals.append(round(now, 4))


def loop(sel, conns, lsock=None):
    stdin_buf = b""
    os.set_blocking(0, False)
    sel.register(0, selectors.EVENT_READ, "stdin")
    while True:
        now = time.monotonic()
        for c in conns:
            c.send_due(now)
        for key, _ in sel.select(0.005):
            if key.data == "stdin":
                stdin_buf += os.read(0, 4096)
                if b"dump" in stdin_buf:
                    out = {
                        str(c.cid): {"arr": c.arrivals, "err": c.errors, "port": c.sock.getsockname()[1], "failed": c.failed, "sent": c.sent}
                        for c in conns
                        if c.cid is not None
                    }
                    print(json.dumps(out), flush=True)
                    os.set_blocking(0, True)
                    sys.stdin.read()  # keep the sockets open until told to go (EOF)
                    return
            elif key.data == "listen":
                s, _ = lsock.accept()
                if os.environ.get("RS_RECVERR") == "1":
                    s.setsockopt(socket.IPPROTO_IP, 11, 1)
                s.setblocking(False)
                c = Conn(s)
                conns.append(c)
                sel.register(s, selectors.EVENT_READ, c)
            else:
                key.data.readable(time.monotonic())


def tune(s):
    """RS_CC: congestion control of this socket (accepted sockets inherit the listener's);
    RS_RECVERR=1: IP_RECVERR on it, so ICMP errors reach the application."""
    if os.environ.get("RS_CC"):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, os.environ["RS_CC"].encode())
    if os.environ.get("RS_RECVERR") == "1":
        s.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR


def main():
    sel = selectors.DefaultSelector()
    if sys.argv[1] == "server":
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tune(ls)
        ls.bind(("0.0.0.0", int(sys.argv[2])))
        ls.listen(4096)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, "listen")
        print("ready", flush=True)
        loop(sel, [], ls)
    else:
        host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        conns = []
        start = time.monotonic()
        for i in range(n):
            s = socket.socket()
            tune(s)
            s.connect((host, port))
            s.setblocking(False)
            c = Conn(s, i)
            c.next_send = start + (i % 10) * INTERVAL / 10
            conns.append(c)
            sel.register(s, selectors.EVENT_READ, c)
        print("ready", flush=True)
        loop(sel, conns)


if __name__ == "__main__":
    main()
