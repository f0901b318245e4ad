"""Sends the pinger's OPTIONS through Kamailio's sockets, without tm (``ka_core.wire``)."""

from __future__ import annotations

import functools
import json

from ka_core.callid import make_callid
from ka_core.prober import Ping
from ka_core.uri import parse_uri
from ka_core.wire import (
    BRANCH_MAGIC,
    Listener,
    Listeners,
    branch_for,
    options_request,
    parse_listeners,
)
from kemi.ksr_port import KsrPort

LIST_SOCKETS = json.dumps({"jsonrpc": "2.0", "method": "corex.list_sockets", "id": 1})


def user_agent(version: str) -> str:
    """tm's ``User-Agent`` from ``$version(full)``: ``kamailio 5.6.3 (x86_64/linux)`` ->
    ``kamailio (5.6.3 (x86_64/linux))``."""
    name, _, rest = version.strip().partition(" ")
    return f"{name} ({rest})" if rest else version


class Sender:
    """Owned by the pinger's core thread, the only thread of its process that calls KSR."""

    def __init__(self, ksr: KsrPort, key: bytes, prefix: str, ping_from: str) -> None:
        self._ksr = ksr
        self._key = key
        self._prefix = prefix
        self._from = ping_from
        self._listeners: Listeners | None = None
        self._agent = ""
        self._head = functools.lru_cache(maxsize=65536)(self._head_uncached)

    def listeners(self) -> Listeners:
        """Kamailio's sockets, read once (``corex.list_sockets`` through jsonrpcs)."""
        if self._listeners is None:
            code, body = self._ksr.jsonrpc_exec(LIST_SOCKETS)
            found: list[Listener] = []
            if str(code) == "200" and isinstance(body, str):
                found = parse_listeners(body)
            if not found:
                self._ksr.err(
                    f"no UDP/TCP/TLS listener from corex.list_sockets (code {code}): pings "
                    "cannot be sent (load corex.so and jsonrpcs.so)"
                )
            self._listeners = Listeners(found)
            self._agent = user_agent(self._ksr.version())
        return self._listeners

    def _head_uncached(
        self, uri: str, from_uri: str, transport: str, ipv6: bool, socket: str
    ) -> tuple[str, str, str] | None:
        """(next hop, socket, request with placeholders for the Call-ID and the branch
        hash).  The next hop names the transport: ``corex.sendx`` takes it from the
        ``transport`` parameter only (a ``sips:`` URI alone would go out over UDP)."""
        listener = self.listeners().pick(transport, ipv6, socket)
        if listener is None:
            return None
        text = options_request(uri, from_uri, "\0", BRANCH_MAGIC + "\1", listener, self._agent)
        target = parse_uri(uri)
        hop = f"sip:{target.host}:{target.port};transport={transport}"
        return hop, listener.spec, text

    def send(self, ping: Ping) -> bool:
        """One ping (or its retransmission: the same bytes); False if Kamailio refused it."""
        sender = ping.from_uri or self._from
        head = self._head(ping.uri, sender, ping.transport, ping.ipv6, ping.socket)
        if head is None:
            return False
        hop, socket, template = head
        callid = make_callid(self._prefix, ping.seq, ping.slot)
        digest = branch_for(self._key, callid)[len(BRANCH_MAGIC) :]
        text = template.replace("\1", digest).replace("\0", callid)
        return self._ksr.send_request(hop, socket, text) >= 0
