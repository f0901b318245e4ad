"""RPC to a running Kamailio over a Unix socket (Kamailio's ctl or ka-kemi's RPC socket):
a BINRPC client (``ka_core.ops.binrpc`` codec) and the stock ``kamcmd``.

Shared by the tests (``Kamailio.kamcmd``, pipelined BINRPC) and the benchmarks.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path

from ka_core.ops import binrpc

KAMCMD = "/usr/sbin/kamcmd"


class BinrpcClient:
    """One connection; ``send`` several requests, then ``receive`` their replies in order."""

    def __init__(self, path: Path | str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.reader = binrpc.PacketReader(max_packet=256 << 20)
        self.cookie = random.randint(1, 1 << 30)

    def send(self, method: str, *params: binrpc.Value) -> None:
        self.cookie += 1
        self.sock.sendall(binrpc.encode_request(self.cookie, method, list(params)))

    def receive(self) -> tuple[bool, list[binrpc.Value], int]:
        """(is_fault, values, reply bytes) of the next reply."""
        while (packet := self.reader.next_packet()) is None:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            self.reader.feed(data)
        fault, values = binrpc.decode_reply(packet)
        return fault, values, len(packet)

    def call(self, method: str, *params: binrpc.Value) -> tuple[bool, list[binrpc.Value], int]:
        self.send(method, *params)
        return self.receive()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BinrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kamcmd(socket_path: Path | str, *args: str, timeout: float = 20) -> tuple[int, str, str, float]:
    """Stock kamcmd: (exit code, stdout, stderr, seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [KAMCMD, "-s", f"unix:{socket_path}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.returncode, out.stdout, out.stderr, time.perf_counter() - t0
