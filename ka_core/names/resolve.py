"""Host-name destinations (``KA_DNS 1``): which DNS queries to make, and from their answers
the addresses to probe, as RFC 3263 clients choose them.  Sans I/O: ``Lookup`` says what to
ask and takes the answers; ``kemi.dns_resolver`` sends the queries.

Theory of operation.  A destination given as a host name (``FLAG_NAME``) is never pinged
itself: each address it resolves to becomes a target destination of its own
(``FLAG_TARGET``), probed and reported like any other, and the name's state is derived from
its targets' (``derive_state``).  Target selection:

* a port in the URI: A and AAAA of the host, that port;
* no port and no transport, with ``KA_DNS_NAPTR 1`` (Kamailio's ``dns_try_naptr``): NAPTR
  of the host first (RFC 3263 4.1); the usable record with the lowest order, then
  preference, among ``SIP+D2U`` (UDP), ``SIP+D2T`` (TCP) and ``SIPS+D2T`` (TLS; the only
  one for ``sips:``) with flag ``S`` gives the transport and the SRV name to ask, then A
  and AAAA of each SRV target as below (``SIP+D2S``, SCTP, is skipped: pings cannot use
  it).  No usable NAPTR record: as without NAPTR;
* no port: SRV ``_sip._udp`` (``_sip._tcp`` for ``transport=tcp``, ``_sips._tcp`` for
  ``sips:`` or ``transport=tls``), then A and AAAA of each SRV target; when the name has no
  SRV records, A and AAAA of the name itself with the transport's default port.

A failed query (timeout, SERVFAIL, a malformed reply) fails the whole lookup: the caller
keeps the targets it had, since a flaky DNS server must not take healthy peers away.
NXDOMAIN and empty answers are answers: the name then has no targets (and is DOWN).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ka_core.names.dns_wire import (
    AAAA,
    CNAME,
    NAPTR,
    NOERROR,
    NXDOMAIN,
    SRV,
    A,
    Naptr,
    Record,
    rcode_name,
)
from ka_core.state import State
from ka_core.uri import SipUri

MIN_TTL_S = 5
NEGATIVE_TTL_S = 30
"""Re-ask this soon (or ``refresh``, if smaller) after NXDOMAIN, no records or a failure."""
MAX_TARGETS = 32
"""A huge answer must not fill the destination table."""
MAX_CNAMES = 8
STATE_MODES = ("any", "all")
NAPTR_SERVICES = {"sip+d2u": "udp", "sip+d2t": "tcp", "sips+d2t": "tls"}
"""RFC 3263 services a ping can use, and their transport."""

Query = tuple[str, int]
"""(name, type) of one DNS question."""


class Target(NamedTuple):
    address: str
    """An IP address, IPv6 without brackets."""
    port: int
    transport: str
    """``udp``, ``tcp`` or ``tls``: what the pings to it use."""


@dataclass(frozen=True, slots=True)
class Resolution:
    targets: tuple[Target, ...]
    ttl_s: int
    """Resolve again after this many seconds."""
    failed: bool = False
    """No usable answer: keep the targets from before."""
    reason: str = ""
    """Why there are no targets, or why the lookup failed; empty when there are targets."""


def transport_of(uri: SipUri) -> str:
    """``sips:`` is TLS whatever ``transport`` says (``tcp`` there means TLS over TCP)."""
    return "tls" if uri.scheme == "sips" else uri.transport or "udp"


def service_name(uri: SipUri) -> str | None:
    """The SRV name to ask (RFC 3263 4.2), or None when the URI gives a port."""
    if uri.port_given:
        return None
    transport = transport_of(uri)
    if transport == "tls":
        return f"_sips._tcp.{uri.host}"
    return f"_sip._{transport}.{uri.host}"


def asks_naptr(uri: SipUri) -> bool:
    """RFC 3263 4.1: NAPTR only for a name with neither port nor transport."""
    return is_name(uri) and not uri.port_given and not uri.transport


def pick_naptr(records: Sequence[Record], secure: bool) -> tuple[str, str] | None:
    """(transport, SRV name) of the most preferred usable NAPTR record, or None."""
    usable = [
        r.data for r in records
        if isinstance(r.data, Naptr) and r.data.flags == "s" and r.data.replacement
        and r.data.services in NAPTR_SERVICES and (not secure or r.data.services == "sips+d2t")
    ]  # fmt: skip
    if not usable:
        return None
    best = min(usable, key=lambda n: (n.order, n.preference))
    return NAPTR_SERVICES[best.services], best.replacement


def target_uri(name: SipUri, target: Target) -> str:
    """The target's URI text: the name's scheme, user and transport, the address and port
    (``sip:10.0.0.1:5060;transport=tcp``, ``sips:[2001:db8::1]:5061``)."""
    host = f"[{target.address}]" if ":" in target.address else target.address
    user = f"{name.user}@" if name.user else ""
    transport = name.transport or (
        target.transport if target.transport != transport_of(name) else ""
    )  # a transport chosen by NAPTR is spelled out
    params = f";transport={transport}" if transport else ""
    return f"{name.scheme}:{user}{host}:{target.port}{params}"


def is_name(uri: SipUri) -> bool:
    """True for a host name, False for an IP address (``host`` of a ``SipUri``)."""
    try:
        ipaddress.ip_address(uri.host.strip("[]"))
    except ValueError:
        return True
    return False


class Lookup:
    """One resolution of one name: ``next_query`` until None, feeding each reply to
    ``answer`` (or ``fail``), then ``result``."""

    def __init__(self, uri: SipUri, refresh_s: int, naptr: bool = False) -> None:
        """``naptr``: ``KA_DNS_NAPTR``, ask NAPTR first where RFC 3263 says so."""
        self._uri = uri
        self._transport = transport_of(uri)
        self._refresh = refresh_s
        self._queue: list[tuple[Query, str, int]] = []
        """(query, host it is for, CNAMEs followed so far)."""
        self._addresses: dict[str, dict[int, list[str]]] = {}
        self._hosts: list[tuple[int, int, int, str]] = []
        """(priority, weight, port, host) to probe, SRV order."""
        self._ttls: list[int] = []
        self._failure = ""
        self._why_empty = "no A/AAAA records"
        srv = service_name(uri)
        if srv is None:
            self._want_host(0, 0, uri.port, uri.host)
        elif naptr and asks_naptr(uri):
            self._queue.append(((uri.host, NAPTR), "", 0))
        else:
            self._queue.append(((srv, SRV), "", 0))

    def next_query(self) -> Query | None:
        if self._failure or not self._queue:
            return None
        return self._queue[0][0]

    def fail(self, query: Query, reason: str) -> None:
        """The query got no usable reply (timeout, malformed, truncated over TCP too)."""
        self._failure = f"{query[0]} {_type_name(query[1])}: {reason}"

    def answer(self, query: Query, rcode: int, records: Sequence[Record]) -> None:
        if not self._queue or self._queue[0][0] != query:
            raise ValueError(f"answer to {query} was not asked for")
        _, host, depth = self._queue.pop(0)
        name, qtype = query
        if rcode not in (NOERROR, NXDOMAIN):
            self._failure = f"{name} {_type_name(qtype)}: {rcode_name(rcode)}"
            return
        found, end = _follow(records, name, qtype, self._ttls)
        if not found and end != name and depth < MAX_CNAMES and rcode == NOERROR:
            self._queue.insert(0, ((end, qtype), host, depth + 1))  # CNAME not chased
            return
        if qtype == NAPTR:
            self._on_naptr(found)
            return
        if qtype == SRV:
            self._on_srv(found)
            return
        self._addresses.setdefault(host, {})[qtype] = [str(r.data) for r in found]
        if rcode == NXDOMAIN and host == self._uri.host:
            self._why_empty = "NXDOMAIN"

    def result(self) -> Resolution:
        negative = min(NEGATIVE_TTL_S, self._refresh)
        if self._failure:
            return Resolution((), negative, failed=True, reason=self._failure)
        targets: list[Target] = []
        transport = self._transport
        for _, _, port, host in self._hosts:
            by_type = self._addresses.get(host, {})
            for qtype in (A, AAAA):
                for address in sorted(by_type.get(qtype, []), key=ipaddress.ip_address):
                    target = Target(address, port, transport)
                    if target not in targets and len(targets) < MAX_TARGETS:
                        targets.append(target)
        if not targets:
            return Resolution((), negative, reason=self._why_empty)
        ttl = min(self._ttls, default=self._refresh)
        return Resolution(tuple(targets), max(MIN_TTL_S, min(ttl, self._refresh)))

    def _want_host(self, priority: int, weight: int, port: int, host: str) -> None:
        if any(h[3] == host and h[2] == port for h in self._hosts):
            return
        self._hosts.append((priority, weight, port, host))
        if host not in self._addresses:
            self._addresses[host] = {}
            self._queue += [((host, A), host, 0), ((host, AAAA), host, 0)]

    def _on_naptr(self, found: list[Record]) -> None:
        picked = pick_naptr(found, self._uri.scheme == "sips")
        if picked is None:  # none usable: SRV of the URI's own transport
            self._queue.insert(0, ((str(service_name(self._uri)), SRV), "", 0))
            return
        self._transport, srv = picked
        self._queue.insert(0, ((srv, SRV), "", 0))

    def _on_srv(self, found: list[Record]) -> None:
        if not found:  # no SRV: the name itself, on the transport's default port
            port = 5061 if self._transport == "tls" else 5060
            self._want_host(0, 0, port, self._uri.host)
            return
        entries = sorted(
            (r.data for r in found if isinstance(r.data, tuple) and not isinstance(r.data, Naptr)),
            key=lambda d: (d[0], -d[1], d[3], d[2]),
        )
        for priority, weight, port, host in entries:
            if host and port:  # "." (empty): the service is decidedly not available there
                self._want_host(priority, weight, port, host)
        self._why_empty = "no SRV target has an address" if self._hosts else "SRV target '.'"


def _follow(
    records: Sequence[Record], name: str, qtype: int, ttls: list[int]
) -> tuple[list[Record], str]:
    """Records of ``qtype`` for ``name`` through the answer's CNAME chain, and the name the
    chain ends at; TTLs of what was used go to ``ttls``."""
    for _ in range(MAX_CNAMES + 1):
        found = [r for r in records if r.name == name and r.rtype == qtype]
        if found:
            ttls.extend(r.ttl for r in found)
            return found, name
        alias = next((r for r in records if r.name == name and r.rtype == CNAME), None)
        if alias is None:
            break
        ttls.append(alias.ttl)
        name = str(alias.data)
    return [], name


def _type_name(qtype: int) -> str:
    return {A: "A", AAAA: "AAAA", SRV: "SRV", CNAME: "CNAME", NAPTR: "NAPTR"}.get(qtype, str(qtype))


def derive_state(states: Sequence[State], mode: str = "any") -> State:
    """A name's state from its targets' (``KA_DNS_STATE``); no targets: DOWN.

    ``any``: any target UP -> UP, else any DEGRADED -> DEGRADED, else all DOWN -> DOWN,
    else UNKNOWN.  ``all``: UP only if every target is; a target still UNKNOWN keeps the
    name UNKNOWN; all DOWN -> DOWN; a mix with some alive -> DEGRADED (usable, not whole).
    """
    if not states:
        return State.DOWN
    if mode == "all":
        if all(s is State.UP for s in states):
            return State.UP
        if any(s is State.UNKNOWN for s in states):
            return State.UNKNOWN
        return State.DOWN if all(s is State.DOWN for s in states) else State.DEGRADED
    if State.UP in states:
        return State.UP
    if State.DEGRADED in states:
        return State.DEGRADED
    return State.DOWN if all(s is State.DOWN for s in states) else State.UNKNOWN


def run_lookup(
    query: Callable[[str, int], tuple[int, list[Record]]],
    uri: SipUri,
    refresh_s: int,
    naptr: bool = False,
) -> Resolution:
    """Drive one ``Lookup`` to its end; ``query`` raises ``OSError`` or ``ValueError``;
    ``naptr``: ``KA_DNS_NAPTR``."""
    lookup = Lookup(uri, refresh_s, naptr)
    while (asked := lookup.next_query()) is not None:
        try:
            rcode, records = query(*asked)
        except (OSError, ValueError) as exc:
            lookup.fail(asked, str(exc) or type(exc).__name__)
        else:
            lookup.answer(asked, rcode, records)
    return lookup.result()
