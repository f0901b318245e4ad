"""Sends the pinger's OPTIONS through Kamailio's sockets, without tm (``ka_core.probe.wire``)."""

from __future__ import annotations

from ka_core.probe.ping_text import LIST_SOCKETS, PingTexts, listeners_from, user_agent
from ka_core.probe.prober import Ping
from ka_core.probe.wire import Listeners
from kemi.ksr_port import KsrPort
from kemi.udp_gate import GATE, UdpGate


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
        self._texts: PingTexts | None = None

    def _ping_texts(self) -> PingTexts:
        """Kamailio's sockets, read once (``corex.list_sockets`` through jsonrpcs)."""
        if self._texts is None:
            found, error = listeners_from(*self._ksr.jsonrpc_exec(LIST_SOCKETS))
            if error is not None:
                self._ksr.err(error)
            agent = user_agent(self._ksr.version())
            self._texts = PingTexts(Listeners(found), agent, self._key, self._prefix)
        return self._texts

    def send(self, ping: Ping) -> bool:
        """One ping (or its retransmission: the same bytes); False if Kamailio refused it."""
        texts = self._ping_texts()
        found = texts.template(
            ping.from_uri or self._from, ping.transport, ping.ipv6, ping.socket, ping.method
        )
        if found is None:
            return False
        socket, template = found
        if not self._gate.writable_spec(socket):
            self.busy += 1
            return False
        return self._ksr.send_request(ping.hop, socket, texts.text(template, ping)) >= 0
