"""A minimal SIP client for tests: send one request over UDP or TCP, return the final reply."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    reason: str
    headers: dict[str, str]
    raw: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def build_request(
    method: str, ruri: str, local: tuple[str, int], transport: str, headers: dict[str, str]
) -> bytes:
    branch = f"z9hG4bK{random.getrandbits(48):x}"
    host = f"[{local[0]}]" if ":" in local[0] else local[0]
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {host}:{local[1]};branch={branch};rport",
        f"From: <sip:test@{host}>;tag={random.getrandbits(32):x}",
        f"To: <{ruri}>",
        f"Call-ID: {random.getrandbits(64):x}@test",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def parse_reply(data: bytes) -> Reply:
    text = data.decode(errors="replace")
    head = text.split("\r\n\r\n", 1)[0]
    first, *rest = head.split("\r\n")
    _, code, *reason = first.split(" ", 2)
    headers: dict[str, str] = {}
    for line in rest:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return Reply(int(code), reason[0] if reason else "", headers, text)


def request(
    ip: str,
    port: int,
    method: str = "OPTIONS",
    ruri: str | None = None,
    headers: dict[str, str] | None = None,
    transport: str = "udp",
    timeout: float = 5.0,
) -> Reply:
    """Send one request and return the first final (>= 200) reply."""
    ruri = ruri or f"sip:{ip}:{port}"
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(timeout)
        sock.bind(("127.0.0.1", 0))
        if transport == "tcp":
            sock.connect((ip, port))
        data = build_request(method, ruri, sock.getsockname(), transport, headers or {})
        if transport == "udp":
            sock.sendto(data, (ip, port))
        else:
            sock.sendall(data)
        buf = b""
        while True:
            chunk = sock.recv(65535)
            if not chunk:
                raise ConnectionError("connection closed before a final reply")
            buf += chunk
            while b"\r\n\r\n" in buf:
                msg, _, buf = buf.partition(b"\r\n\r\n")
                reply = parse_reply(msg + b"\r\n\r\n")
                if reply.code >= 200:
                    return reply
