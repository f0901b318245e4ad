"""``FakeKsr``: the ``KsrPort`` for unit tests of kemi/, recording what the glue asks of
Kamailio and answering with values the test sets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ka_core.access import HttpRequest
from kemi.ksr_port import MessageConnection


@dataclass
class FakeKsr:
    logs: list[tuple[str, str]] = field(default_factory=list)
    """(level, text) of every log line."""
    defines: dict[str, str] = field(default_factory=dict)
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    """(R-URI, From, Call-ID) of every OPTIONS sent."""
    sockets: list[str] = field(default_factory=list)
    """The socket of every OPTIONS sent ("" = Kamailio's choice)."""
    local: tuple[str, int] = ("127.0.0.1", 5060)
    """Where the reply being processed arrived."""
    send_rc: int = 1
    reply: tuple[str | None, int | None, str | None] = (None, None, None)
    in_transaction: bool = True
    request: HttpRequest = field(
        default_factory=lambda: HttpRequest("POST", "/RPC", "127.0.0.1", None)
    )
    body: bytes | None = b""
    http_replies: list[tuple[int, str, str, str]] = field(default_factory=list)
    dispatched: int = 0
    rpc: dict[str, tuple[object, object]] = field(default_factory=dict)
    """jsonrpcs method -> ($jsonrpl(code), $jsonrpl(body))."""
    connection: MessageConnection = (None, None, None, None, None, None)
    tcpops: list[tuple[object, ...]] | None = field(default_factory=list)
    """Calls to tcpops; None: tcpops.so not loaded."""
    tcpops_rc: int = 1

    def info(self, text: str) -> None:
        self.logs.append(("info", text))

    def warn(self, text: str) -> None:
        self.logs.append(("warn", text))

    def err(self, text: str) -> None:
        self.logs.append(("err", text))

    def texts(self, level: str | None = None) -> list[str]:
        return [t for lv, t in self.logs if level in (None, lv)]

    def define(self, name: str) -> str | None:
        return self.defines.get(name)

    def send_options(self, ruri: str, from_uri: str, callid: str, socket: str = "") -> int:
        self.sent.append((ruri, from_uri, callid))
        self.sockets.append(socket)
        return self.send_rc

    def reply_local(self) -> tuple[str, int]:
        return self.local

    def reply_fields(self) -> tuple[str | None, int | None, str | None]:
        return self.reply

    def reply_matches_transaction(self) -> bool:
        return self.in_transaction

    def http_request(self) -> HttpRequest:
        return self.request

    def http_body(self) -> bytes | None:
        return self.body

    def http_reply(self, code: int, reason: str, ctype: str, body: str) -> None:
        self.http_replies.append((code, reason, ctype, body))

    def jsonrpc_dispatch(self) -> None:
        self.dispatched += 1

    def jsonrpc_exec(self, request: str) -> tuple[object, object]:
        return self.rpc.get(json.loads(request)["method"], (500, None))

    def message_connection(self) -> MessageConnection:
        return self.connection

    def tcpops_loaded(self) -> bool:
        return self.tcpops is not None

    def tcpops_keepalive_enable_cid(self, conid: int, idle: int, count: int, interval: int) -> int:
        assert self.tcpops is not None
        self.tcpops.append(("enable", conid, idle, count, interval))
        return self.tcpops_rc

    def tcpops_keepalive_disable_cid(self, conid: int) -> int:
        assert self.tcpops is not None
        self.tcpops.append(("disable", conid))
        return self.tcpops_rc
