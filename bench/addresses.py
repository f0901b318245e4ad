"""The benchmarks' address plan: destinations (half of them answering) and the peers' SIP
URIs."""

from __future__ import annotations

import os
import re
import socket

PEER_PORT = 15300
LISTEN_NET = "127.99"
"""The /16 the benchmarks' Kamailio instances listen in: ``<net>.<bench>.<n>:5060``."""


def run_plan() -> tuple[str, int]:
    """The pinging benchmarks' listen /16 and peer port: ``KA_BENCH_NET`` (``127.N``) and
    ``KA_BENCH_PEER_PORT`` move both, so that a second run can share the machine."""
    net = os.environ.get("KA_BENCH_NET", LISTEN_NET)
    port = os.environ.get("KA_BENCH_PEER_PORT", str(PEER_PORT))
    if not re.fullmatch(r"127\.(25[0-5]|2[0-4]\d|1?\d?\d)", net):
        raise ValueError(f"KA_BENCH_NET {net!r}: expected 127.N with N 0-255")
    if not port.isdigit() or not 1024 <= int(port) <= 65535:
        raise ValueError(f"KA_BENCH_PEER_PORT {port!r}: expected a port 1024-65535")
    return net, int(port)


def dest_addrs(n: int, first_octet3: int = 100) -> list[str]:
    """``127.0.X.Y`` for X from ``first_octet3``, Y 1..254: half of them (odd Y) answer."""
    out: list[str] = []
    x, y = first_octet3, 1
    while len(out) < n:
        out.append(f"127.0.{x}.{y}")
        y += 1
        if y > 254:
            x, y = x + 1, 1
    if x > 200:
        raise ValueError("destination plan exceeds 127.0.100.0-127.0.200.255")
    return out


def wide_addrs(n: int) -> list[str]:
    """``127.X.Y.Z`` from 127.10.0.1, Z 1..254 (odd Z answer): room for 100,000 and more."""
    return [f"127.{10 + i // (256 * 254)}.{(i // 254) % 256}.{i % 254 + 1}" for i in range(n)]


def ip_u32(addr: str) -> int:
    return int.from_bytes(socket.inet_aton(addr), "big")


def sip_uri(addr: str, port: int = PEER_PORT) -> str:
    return f"sip:{addr}:{port}"
