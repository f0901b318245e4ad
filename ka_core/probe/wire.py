"""OPTIONS pings as bytes, and the Kamailio listener each one leaves from.

Why not tm: a tm transaction per ping costs shared memory (about 10 KB while in flight or in
the 5 s wait state), a retransmission timer, a final-response timer and, for every reply,
a transaction lookup, all of it in C that the pinger cannot make cheaper.  A ping needs none
of it: the pinger already matches replies by Call-ID and times them out itself.  So the
pinger writes the request itself (the same header lines tm writes) and hands it to one of
Kamailio's own sockets (``corex.sendx``); UDP retransmissions follow tm's timer E
(``RETRANSMIT_S``); the SIP worker that receives the reply checks the Via branch (a keyed
hash of the Call-ID, so nobody who has not seen the ping can forge one) and drops the reply
before tm looks for a transaction that does not exist.

The listeners come from Kamailio (``corex.list_sockets``); the Via names the one the ping
leaves from, or its advertised address, as tm does.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import json
from dataclasses import dataclass

from ka_core.errors import InvalidArgument
from ka_core.probe.scheduler import TICK_S, on_grid
from ka_core.settings import DEFAULT_METHOD, parse_socket, socket_text

BRANCH_MAGIC = "z9hG4bK"
T1_S, T2_S = 0.5, 4.0
"""tm's default ``retr_timer1`` / ``retr_timer2``: a UDP ping is sent again 0.5 s after the
first transmission, then 1 s, 2 s, 4 s, 4 s ... later, until its timeout."""
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


def retransmit_offsets(timeout_s: float) -> tuple[float, ...]:
    """Seconds after the first transmission at which a UDP ping is sent again."""
    offsets, at, gap = [], T1_S, T1_S
    while at < timeout_s - 1e-9:
        offsets.append(round(at, 6))
        gap = min(gap * 2, T2_S)
        at += gap
    return tuple(offsets)


class Resends:
    """UDP pings to send again: (when, seq, index into ``offsets``, due time) on a heap."""

    def __init__(self, offsets: tuple[float, ...]) -> None:
        self.offsets = offsets
        self._heap: list[tuple[float, int, int, float]] = []

    def plan(self, seq: int, index: int, due: float, deadline: float, grid: float) -> None:
        """The ``index``-th retransmission of ping ``seq``, on the grid, before its timeout."""
        if index < len(self.offsets):
            at = due + self.offsets[index]
            if grid > TICK_S:  # offsets are >= 0.5 s apart: never two on one tick
                at = on_grid(at, grid)
            if at < deadline:
                heapq.heappush(self._heap, (at, seq, index, due))

    def pop_due(self, now: float) -> list[tuple[int, int, float]]:
        """(seq, index, due time) of every retransmission due at ``now``."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            _, seq, index, due = heapq.heappop(self._heap)
            out.append((seq, index, due))
        return out

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None


@dataclass(frozen=True, slots=True)
class Listener:
    """One of Kamailio's sockets."""

    proto: str
    """``udp``, ``tcp`` or ``tls``."""
    address: str
    """IP as Kamailio prints it (IPv6 in brackets)."""
    port: int
    via: str
    """``host[:port]`` for the Via header: the advertised address when there is one (on
    5.6 ``corex.list_sockets`` prints no advertised port: the listener's is used)."""

    @property
    def spec(self) -> str:
        """``proto:address:port``, as ``corex.sendx`` and ``$uac_req(sock)`` take it."""
        return f"{self.proto}:{self.address}:{self.port}"

    @property
    def ipv6(self) -> bool:
        return self.address.startswith("[")


def _hostport(host: str, port: int, proto: str) -> str:
    return host if port == DEFAULT_PORTS[proto] else f"{host}:{port}"


def _advertised(text: str, port: int) -> tuple[str, int]:
    """An ``advertise`` of ``corex.list_sockets``: a host on 5.6, ``proto:host:port`` on 6.x."""
    head, sep, rest = text.partition(":")
    if sep and head.lower() in DEFAULT_PORTS:
        host, sep2, port_text = rest.rpartition(":")
        if sep2 and port_text.isdigit():
            return host, int(port_text)
        return rest, port
    if ":" in text and not text.startswith("["):
        return f"[{text}]", port  # a bare IPv6 address
    return text, port


def parse_listeners(result: object) -> list[Listener]:
    """The ``result`` of ``corex.list_sockets`` (JSON text or decoded) as listeners.

    Kamailio prints one entry per socket: PROTO, ADDRLIST/ADDR, PORT and ADVERTISE on 5.6;
    the same names in lower case on 6.x, where ``advertise`` is ``proto:host:port``.
    Protocols a ping cannot use (SCTP, WS) are left out.
    """
    data = json.loads(result) if isinstance(result, str | bytes) else result
    if isinstance(data, dict):
        data = data.get("result", data)
    if isinstance(data, dict):  # a single socket comes back as one struct
        data = [data]
    listeners = []
    for raw_entry in data if isinstance(data, list) else []:
        if not isinstance(raw_entry, dict):
            continue
        entry = {str(k).lower(): v for k, v in raw_entry.items()}
        proto = str(entry.get("proto", "")).lower()
        if proto not in DEFAULT_PORTS:
            continue
        addrs = entry.get("addrlist", {})
        addr = {str(k).lower(): v for k, v in addrs.items()} if isinstance(addrs, dict) else {}
        first = addr.get("addr", "")
        raw = str(first[0] if isinstance(first, list) and first else first)
        try:
            ip = ipaddress.ip_address(raw.strip("[]"))
        except ValueError:
            continue  # a name, not an address: Kamailio prints the address
        address = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
        port = int(entry.get("port", 0))
        advertise = str(entry.get("advertise", "-"))
        host, via_port = (address, port) if advertise in ("", "-") else _advertised(advertise, port)
        listeners.append(Listener(proto, address, port, _hostport(host, via_port, proto)))
    return listeners


class Listeners:
    """Picks the socket of each ping the way Kamailio would when none is forced: the first
    listener of the destination's protocol and address family."""

    def __init__(self, listeners: list[Listener]) -> None:
        self._all = listeners
        self._by_spec = {lst.spec: lst for lst in listeners}
        self._default: dict[tuple[str, bool], Listener] = {}
        for lst in listeners:
            self._default.setdefault((lst.proto, lst.ipv6), lst)

    def __len__(self) -> int:
        return len(self._all)

    def pick(self, proto: str, ipv6: bool, forced: str = "") -> Listener | None:
        """``forced``: a ``socket=`` setting (``proto:ip:port``); None when there is no
        such listener."""
        if forced:
            try:
                return self._by_spec.get(socket_text(*parse_socket(forced)))
            except InvalidArgument:
                return None
        return self._default.get((proto, ipv6)) or self._default.get((proto, not ipv6))


def branch_for(key: bytes, callid: str) -> str:
    """The Via branch of a ping: a keyed hash of its Call-ID (workers check replies with it)."""
    digest = hashlib.blake2s(callid.encode(), digest_size=8, key=key).hexdigest()
    return BRANCH_MAGIC + digest


def options_request(
    ruri: str,
    from_uri: str,
    callid: str,
    branch: str,
    listener: Listener,
    user_agent: str,
    method: str = DEFAULT_METHOD,
) -> str:
    """The OPTIONS tm's ``uac_req_send`` writes, header for header (the From tag is derived
    from the branch: unique per ping, stable across its retransmissions); ``method``: the
    ``method`` setting (``ka_core.probe.options``)."""
    tag = branch[len(BRANCH_MAGIC) :]
    agent = f"User-Agent: {user_agent}\r\n" if user_agent else ""
    return (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{listener.proto.upper()} {listener.via};branch={branch}\r\n"
        f"To: <{ruri}>\r\n"
        f"From: <{from_uri}>;tag={tag}\r\n"
        f"CSeq: 10 {method}\r\n"
        f"Call-ID: {callid}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n"
        f"{agent}\r\n"
    )
