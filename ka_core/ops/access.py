"""Who may use ka-kemi's network-facing entry points, decided without I/O.

Kamailio hands every HTTP request that reaches a SIP TCP or TLS listener to the xhttp event
callback, whatever its path and source.  ``HttpGuard.check`` decides before anything reads the
body: a source outside the allow-list gets 403, any path but the configured one 404, another
method than POST 405, a missing or wrong bearer token 403.  Only what passes reaches the
``keepalive.*`` commands or Kamailio's jsonrpcs.

``LogLimiter`` keeps a scan from flooding the log: a few lines per window, the rest counted
and reported with the next line that gets through.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ka_core.errors import InvalidArgument

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = "127.0.0.0/8 ::1"
MIN_TOKEN_CHARS = 16


def parse_allow(name: str, text: str) -> tuple[Network, ...]:
    """Addresses and CIDRs separated by spaces or commas; empty = nobody."""
    networks = []
    for item in text.strip().strip('"').replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
        except ValueError:
            raise InvalidArgument(f"parameter {name}: not an address or CIDR: {item!r}") from None
    return tuple(networks)


def source_allowed(allow: tuple[Network, ...], source: str) -> bool:
    """True if ``source`` (as Kamailio's ``$si`` prints it) lies in one of ``allow``."""
    try:
        addr = ipaddress.ip_address(source.strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in allow)


def parse_token(name: str, text: str) -> str:
    """A bearer token: empty (none required) or at least 16 visible ASCII characters."""
    value = text.strip().strip('"')
    if value and (len(value) < MIN_TOKEN_CHARS or not all(33 <= ord(c) < 127 for c in value)):
        raise InvalidArgument(
            f"parameter {name}: needs {MIN_TOKEN_CHARS} or more visible ASCII characters"
        )
    return value


def parse_path(name: str, text: str) -> str:
    value = text.strip().strip('"')
    if not value.startswith("/") or any(c.isspace() or c in "?#" for c in value):
        raise InvalidArgument(f"parameter {name}: needs a path such as /RPC: {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What the guard needs of an HTTP request: nothing from the body."""

    method: str
    url: str
    source: str
    authorization: str | None


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str
    why: str
    """For the log line: what was wrong."""


@dataclass(frozen=True, slots=True)
class HttpGuard:
    path: str = "/RPC"
    allow: tuple[Network, ...] = field(default_factory=lambda: parse_allow("", LOOPBACK))
    token: str = ""
    method: str = "POST"

    def check(self, req: HttpRequest) -> Refusal | None:
        """None if ``req`` may go on; the refusal to send otherwise (source checked first,
        so a host outside the allow-list learns nothing about paths or tokens)."""
        if not source_allowed(self.allow, req.source):
            return Refusal(403, "Forbidden", "source not in the allow-list")
        if urlsplit(req.url).path != self.path:
            return Refusal(404, "Not Found", f"path {req.url[:80]!r}")
        if req.method != self.method:
            return Refusal(405, "Method Not Allowed", f"method {req.method[:16]!r}")
        if self.token and not hmac.compare_digest(
            (req.authorization or "").encode("utf-8", "replace"),
            f"Bearer {self.token}".encode(),
        ):
            return Refusal(403, "Forbidden", "missing or wrong bearer token")
        return None


class LogLimiter:
    """At most ``burst`` lines per ``window_s`` seconds; later ones are counted."""

    def __init__(self, burst: int = 10, window_s: float = 60.0) -> None:
        self._burst = burst
        self._window_s = window_s
        self._start = float("-inf")
        self._used = 0
        self._suppressed = 0

    def admit(self, now: float) -> int | None:
        """None: do not log.  Otherwise log, mentioning the returned count of lines
        suppressed since the last one logged."""
        if now - self._start >= self._window_s:
            self._start, self._used = now, 0
        if self._used >= self._burst:
            self._suppressed += 1
            return None
        self._used += 1
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed
