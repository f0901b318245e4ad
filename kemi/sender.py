"""Sends the pinger's OPTIONS through Kamailio's sockets, without tm (``ka_core.probe.wire``)."""

from __future__ import annotations

import json

from ka_core.probe.callid import make_callid
from ka_core.probe.prober import Ping
from ka_core.probe.wire import (
    BRANCH_MAGIC,
    Listener,
    Listeners,
    branch_for,
    options_request,
    parse_listeners,
)
from kemi.ksr_port import KsrPort
from kemi.udp_gate import GATE, UdpGate

LIST_SOCKETS = json.dumps({"jsonrpc": "2.0", "method": "corex.list_sockets", "id": 1})


def user_agent(version: str) -> str:
    """tm's ``User-Agent`` from ``$version(full)``: ``kamailio 5.6.3 (x86_64/linux)`` ->
    ``kamailio (5.6.3 (x86_64/linux))``."""
    name, _, rest = version.strip().partition(" ")
    return f"{name} ({rest})" if rest else version


class Sender:
    """Owned by the pinger's core thread, the only thread of its process that calls KSR."""

    def __init__(
        self, ksr: KsrPort, key: bytes, prefix: str, ping_from: str, gate: UdpGate = GATE
    ) -> None:
        self._ksr = ksr
        self._gate = gate
        self.busy = 0
        """Pings not sent because their UDP socket's buffer was full (``kemi.udp_gate``)."""
        self._key = key
        self._prefix = prefix
        self._from = ping_from
        self._listeners: Listeners | None = None
        self._agent = ""
        self._templates: dict[tuple[str, str, bool, str, str], tuple[str, str] | None] = {}

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

    def _template(
        self, from_uri: str, transport: str, ipv6: bool, socket: str, method: str
    ) -> tuple[str, str] | None:
        """(socket, the request with placeholders for the R-URI, Call-ID and branch hash):
        one per sender, protocol, family, socket and method, so a handful in all."""
        key = (from_uri, transport, ipv6, socket, method)
        if key not in self._templates:
            listener = self.listeners().pick(transport, ipv6, socket)
            self._templates[key] = None if listener is None else (
                listener.spec,
                options_request(
                    "\2", from_uri, "\0", BRANCH_MAGIC + "\1", listener, self._agent, method
                ),
            )  # fmt: skip
        return self._templates[key]

    def send(self, ping: Ping) -> bool:
        """One ping (or its retransmission: the same bytes); False if Kamailio refused it."""
        found = self._template(
            ping.from_uri or self._from, ping.transport, ping.ipv6, ping.socket, ping.method
        )
        if found is None:
            return False
        socket, template = found
        if not self._gate.writable_spec(socket):
            self.busy += 1
            return False
        callid = make_callid(self._prefix, ping.seq, ping.slot)
        digest = branch_for(self._key, callid)[len(BRANCH_MAGIC) :]
        text = template.replace("\2", ping.uri).replace("\1", digest).replace("\0", callid)
        if ping.auth:  # an answer to a challenge (ka_core.probe.auth_hooks)
            text = f"{text[:-2]}{ping.auth}\r\n\r\n"
        return self._ksr.send_request(ping.hop, socket, text) >= 0
