"""SIP OPTIONS responder for the benchmarks (stdlib only; run as its own process).

Two socket layouts:

* ``--wild PORT``: one socket on ``0.0.0.0:PORT`` that answers *from the address the request
  was sent to* (``IP_PKTINFO`` on receive and as a ``sendmsg`` control message), so one socket
  serves thousands of destinations ``127.0.X.Y:PORT``;
* ``--addrs A,B,... --port PORT``: one socket per address, so a destination's port can be
  closed for real (``close``), as the detection benchmark needs.

Which destinations answer: ``--answer odd`` (last octet odd: the "half answering, half
blackholed" set of the scale benchmark), ``all`` or ``none``; commands on stdin change it per
address at any time: ``set 200|503|drop <addr>[,<addr>...]``, ``close <addrs>``,
``open <addrs>``, ``quit``.

Every request is logged to ``--out`` as a fixed 24-byte record (kernel receive time from
``SO_TIMESTAMPNS``, destination and source address, source port, answered code, crc32 of the
Call-ID) so the benchmark computes intervals, retransmissions and rates afterwards.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import struct
import sys
import time
import zlib

IP_PKTINFO = 8
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
PKTINFO = struct.Struct("=I4s4s")
TIMESPEC = struct.Struct("=qq")
EVENT = struct.Struct("<qIIHHI")  # ts_ns, dst, src, src_port, code (0 = not answered), crc
COPY = (b"via:", b"v:", b"from:", b"f:", b"to:", b"t:", b"call-id:", b"i:", b"cseq:")
FLUSH_S = 0.5
RCVBUF = 16 << 20


def ip_u32(addr: str) -> int:
    return int.from_bytes(socket.inet_aton(addr), "big")


def reply_for(data: bytes, code: int) -> bytes | None:
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    if not lines or not lines[0].endswith(b"SIP/2.0"):
        return None
    reason = b"OK" if code < 300 else b"Service Unavailable"
    out = [b"SIP/2.0 %d %s" % (code, reason)]
    for line in lines[1:]:
        low = line[:9].lower().replace(b" ", b"")
        if low.startswith(COPY):
            if (low.startswith(b"to:") or low.startswith(b"t:")) and b";tag=" not in line:
                line += b";tag=bench1"
            out.append(line)
    out += [b"Content-Length: 0", b"", b""]
    return b"\r\n".join(out)


def call_id_crc(data: bytes) -> int:
    for marker in (b"\r\nCall-ID:", b"\r\ni:", b"\r\nCall-Id:", b"\r\ncall-id:"):
        at = data.find(marker)
        if at >= 0:
            end = data.find(b"\r\n", at + 2)
            return zlib.crc32(data[at + len(marker) : end].strip())
    return 0


class Responder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.port = args.port
        self.answer = args.answer
        self.modes: dict[int, int] = {}  # dst u32 -> code to answer, 0 = drop
        self.out = open(args.out, "wb") if args.out else None  # noqa: SIM115
        self.buf = bytearray()
        self.sel = selectors.DefaultSelector()
        self.socks: dict[str, socket.socket] = {}
        self.wild = args.wild
        self.received = 0
        if args.wild:
            self._bind("0.0.0.0", pktinfo=True)
        for addr in filter(None, (args.addrs or "").split(",")):
            self._bind(addr, pktinfo=False)
        if args.control:
            os.set_blocking(sys.stdin.fileno(), False)
            self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
        self.stdin_buf = b""
        self.stop = False

    def _bind(self, addr: str, pktinfo: bool) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if not pktinfo:  # the wild socket holds its port alone: a second run on the same port
            # fails at start instead of the kernel splitting the pings between two logs
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if pktinfo:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.bind((addr, self.port))
        sock.setblocking(False)
        self.socks[addr] = sock
        self.sel.register(sock, selectors.EVENT_READ, addr)

    def code_for(self, dst: int) -> int:
        code = self.modes.get(dst)
        if code is not None:
            return code
        if self.answer == "all":
            return 200
        if self.answer == "odd":
            return 200 if dst & 1 else 0
        return 0

    def command(self, line: str) -> None:
        parts = line.split()
        if not parts:
            return
        if parts[0] == "quit":
            self.stop = True
            return
        addrs = parts[-1].split(",")
        if parts[0] == "set":
            code = 0 if parts[1] == "drop" else int(parts[1])
            for a in addrs:
                self.modes[ip_u32(a)] = code
        elif parts[0] == "close":
            for a in addrs:
                sock = self.socks.pop(a, None)
                if sock is not None:
                    self.sel.unregister(sock)
                    sock.close()
        elif parts[0] == "open":
            for a in addrs:
                if a not in self.socks:
                    self._bind(a, pktinfo=False)
        print(f"ok {line}", flush=True)

    def on_stdin(self) -> None:
        try:
            data = os.read(sys.stdin.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:
            self.stop = True
            return
        self.stdin_buf += data
        while b"\n" in self.stdin_buf:
            line, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
            self.command(line.decode())

    def on_packet(self, sock: socket.socket, bound: str) -> None:
        for _ in range(256):
            try:
                data, anc, _flags, src = sock.recvmsg(4096, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP error queued on the socket
            ts_ns = time.time_ns()
            dst_b = None
            for level, ctype, cdata in anc:
                if level == socket.SOL_SOCKET and ctype == SO_TIMESTAMPNS:
                    sec, nsec = TIMESPEC.unpack_from(cdata)
                    ts_ns = sec * 1_000_000_000 + nsec
                elif level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
                    dst_b = PKTINFO.unpack_from(cdata)[2]
            if dst_b is None:
                dst_b = socket.inet_aton(bound)
            dst = int.from_bytes(dst_b, "big")
            self.received += 1
            code = 0
            if data.startswith(b"OPTIONS "):
                code = self.code_for(dst)
                if code:
                    reply = reply_for(data, code)
                    if reply is None:
                        code = 0
                    else:
                        try:
                            if self.wild:
                                cmsg = PKTINFO.pack(0, dst_b, b"\0\0\0\0")
                                sock.sendmsg(
                                    [reply], [(socket.IPPROTO_IP, IP_PKTINFO, cmsg)], 0, src
                                )
                            else:
                                sock.sendto(reply, src)
                        except OSError:
                            code = 0
            self.buf += EVENT.pack(ts_ns, dst, ip_u32(src[0]), src[1], code, call_id_crc(data))

    def flush(self) -> None:
        if self.out is not None and self.buf:
            self.out.write(self.buf)
            self.out.flush()
        self.buf.clear()

    def run(self) -> None:
        print("ready", flush=True)
        last_flush = time.monotonic()
        while not self.stop:
            for key, _ in self.sel.select(FLUSH_S):
                if key.data is None:
                    self.on_stdin()
                else:
                    self.on_packet(key.fileobj, key.data)  # type: ignore[arg-type]
            now = time.monotonic()
            if now - last_flush >= FLUSH_S:
                self.flush()
                last_flush = now
        self.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=15300)
    ap.add_argument("--wild", action="store_true", help="one 0.0.0.0 socket with IP_PKTINFO")
    ap.add_argument("--addrs", default="", help="comma-separated addresses, one socket each")
    ap.add_argument("--answer", choices=("odd", "all", "none"), default="odd")
    ap.add_argument("--out", default="")
    ap.add_argument("--control", action="store_true", help="read commands from stdin")
    args = ap.parse_args()
    responder = Responder(args)

    def stop(*_: object) -> None:
        responder.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    responder.run()


if __name__ == "__main__":
    main()
