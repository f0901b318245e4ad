"""The DNS servers of ``KA_DNS``: which ones, and in which order a query tries them.

``KA_DNS_SERVER`` lists one or more (space- or comma-separated); empty: the nameservers of
/etc/resolv.conf (the first three, as glibc's ``MAXNS``), 127.0.0.1 when there is none (as
glibc).  A query goes to the server that gave the last answer (the first one at start); a
server that does not answer (timeout, socket error, a malformed reply) or answers SERVFAIL,
REFUSED, NOTIMP or FORMERR hands the query to the next one; NOERROR and NXDOMAIN are
answers.  Only when every server failed does the query fail.  Keeping the server that
answered means a dead first nameserver costs its timeout once, not at every query.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from ka_core.names.dns_wire import NOERROR, NXDOMAIN, Record, rcode_name

DNS_PORT = 53
MAX_NAMESERVERS = 3
Server = tuple[str, int]
"""(address, port); IPv6 without brackets."""


def parse_dns_server(text: str) -> Server:
    """``ip``, ``ip:port``, ``v6``, ``[v6]`` or ``[v6]:port`` to (address, port); empty
    text gives ("", 53): the nameservers of /etc/resolv.conf."""
    value = text.strip().strip('"').strip()
    if not value:
        return "", DNS_PORT
    bad = ValueError(f"bad DNS server {text!r} (ip, ip:port or [ipv6]:port)")
    host, port_text = value, None
    if value.startswith("["):
        host, closed, rest = value[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")) or ":" not in host:
            raise bad
        port_text = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise bad from None
    if port_text is None:
        return address.compressed, DNS_PORT
    if not port_text.isdecimal() or not 0 < int(port_text) < 65536:
        raise bad
    return address.compressed, int(port_text)


def parse_dns_servers(text: str) -> tuple[Server, ...]:
    """A space- or comma-separated list of servers; empty text: none (resolv.conf's)."""
    words = text.strip().strip('"').replace(",", " ").split()
    servers = tuple(parse_dns_server(word) for word in words)
    if len(set(servers)) != len(servers):
        raise ValueError(f"a DNS server is listed twice in {text!r}")
    return servers


def server_text(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def servers_text(servers: tuple[Server, ...]) -> str:
    return " ".join(server_text(*server) for server in servers)


def nameservers(resolv_conf: str) -> tuple[Server, ...]:
    """The first three ``nameserver`` lines of resolv.conf text; 127.0.0.1 when none."""
    found: list[Server] = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and len(found) < MAX_NAMESERVERS:
            try:
                found.append((ipaddress.ip_address(words[1].split("%")[0]).compressed, DNS_PORT))
            except ValueError:
                continue
    return tuple(found) or (("127.0.0.1", DNS_PORT),)


def server_list(dns_server: str, resolv_conf: Callable[[], str]) -> tuple[Server, ...]:
    """``KA_DNS_SERVER``'s servers, else the nameservers of ``resolv_conf()`` (which may
    raise ``OSError``: then the default, 127.0.0.1)."""
    servers = parse_dns_servers(dns_server)
    if servers:
        return servers
    try:
        return nameservers(resolv_conf())
    except OSError:
        return nameservers("")


Query = Callable[[str, int], tuple[int, list[Record]]]
"""One server's blocking query: (rcode, records); raises ``OSError`` or ``ValueError``."""


def ask_in_turn(
    queries: Sequence[tuple[str, Query]], failover: Failover, name: str, qtype: int
) -> tuple[int, list[Record]]:
    """Ask ``(server text, query)`` pairs in ``failover``'s order: the first answer; when
    every server failed, the last bad rcode, or ``OSError`` naming each server's error."""
    errors: list[str] = []
    refused: tuple[int, list[Record]] | None = None
    for index in failover.order():
        text, query = queries[index]
        try:
            rcode, records = query(name, qtype)
        except (OSError, ValueError) as exc:
            errors.append(str(exc) if text in str(exc) else f"{text}: {exc}")
            continue
        if is_answer(rcode):
            failover.answered(index)
            return rcode, records
        refused = (rcode, records)
        errors.append(f"{text}: {rcode_name(rcode)}")
    if refused is not None:
        return refused
    raise OSError("; ".join(errors))


def is_answer(rcode: int) -> bool:
    """NOERROR and NXDOMAIN end a query; any other code asks the next server."""
    return rcode in (NOERROR, NXDOMAIN)


class Failover:
    """The order in which one query tries ``count`` servers: the last one that answered
    first, then those listed after it, wrapping round."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._first = 0

    def order(self) -> list[int]:
        return [(self._first + i) % self._count for i in range(self._count)]

    def answered(self, index: int) -> None:
        self._first = index
