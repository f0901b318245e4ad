"""``FakeKsr``: the ``KsrPort`` for unit tests of kemi/, recording what the glue asks of
Kamailio and answering with values the test sets."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ka_core.ops.access import HttpRequest
from kemi.ksr_port import MessageConnection

LIST_SOCKETS = json.dumps(
    {
        "jsonrpc": "2.0",
        "result": [
            {"PROTO": proto, "NAME": name, "ADDRLIST": {"ADDR": addr}, "PORT": port,
             "MCAST": "no", "MHOMED": "no", "VIRTUAL": "no", "SOCKNAME": "-", "ADVERTISE": "-"}
            for proto, name, addr, port in (
                ("udp", "127.0.0.1", "127.0.0.1", "5060"),
                ("tcp", "127.0.0.1", "127.0.0.1", "5060"),
                ("udp", "::1", "::1", "5060"),
            )
        ],
        "id": 1,
    }
)  # fmt: skip
"""Kamailio's ``corex.list_sockets`` for ``listen=`` udp/tcp 127.0.0.1:5060, udp [::1]:5060."""


@dataclass
class FakeKsr:
    logs: list[tuple[str, str]] = field(default_factory=list)
    """(level, text) of every log line."""
    defines: dict[str, str] = field(default_factory=dict)
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    """(R-URI, From, Call-ID) of every OPTIONS sent."""
    sockets: list[str] = field(default_factory=list)
    """The socket of every OPTIONS sent."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(destination URI, request text) of every request sent."""
    local: tuple[str, int] = ("127.0.0.1", 5060)
    """Where the reply being processed arrived."""
    send_rc: int = 1
    reply: (
        tuple[str | None, int | None, str | None]
        | tuple[str | None, int | None, str | None, str | None]
    ) = (None, None, None)
    """($ci, $rs, $si[, $via0(branch)]) of the reply being processed; without a branch,
    the one of the request sent with that Call-ID (a peer echoes the Via)."""
    request: HttpRequest = field(
        default_factory=lambda: HttpRequest("POST", "/RPC", "127.0.0.1", None)
    )
    body: bytes | None = b""
    http_replies: list[tuple[int, str, str, str]] = field(default_factory=list)
    dispatched: int = 0
    rpc: dict[str, tuple[object, object]] = field(
        default_factory=lambda: {"corex.list_sockets": (200, LIST_SOCKETS)}
    )
    """jsonrpcs method -> ($jsonrpl(code), $jsonrpl(body))."""
    connection: MessageConnection = (None, None, None, None, None, None)
    tcpops: list[tuple[object, ...]] | None = field(default_factory=list)
    """Calls to tcpops; None: tcpops.so not loaded."""
    tcpops_rc: int = 1
    modules: set[str] = field(default_factory=lambda: {"corex", "jsonrpcs", "sl", "tm", "xhttp"})
    """Modules with KEMI functions that are loaded."""
    vars: dict[str, int | str] = field(default_factory=dict)
    """``$var`` values the glue set."""
    reply_headers: dict[str, str] = field(default_factory=dict)
    """Headers of the reply ``reply_header`` reads."""
    pvs: dict[str, str] = field(default_factory=dict)
    """Pseudo-variables ``set_pv`` set; a name in ``refused_pvs`` fails as Kamailio's would."""
    refused_pvs: set[str] = field(default_factory=lambda: {"$si", "$rs"})
    xavp_next: list[str] = field(default_factory=list)
    """``$xavp(ka_select=>next)`` values, the top one first."""

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

    def send_request(self, uri: str, socket: str, data: str) -> int:
        ruri = data.split(" ", 2)[1]
        from_uri = re.search(r"(?m)^From: <([^>]*)>", data)
        callid = re.search(r"(?m)^Call-ID: (\S+)", data)
        assert from_uri and callid, data
        self.sent.append((ruri, from_uri.group(1), callid.group(1)))
        self.sockets.append(socket)
        self.requests.append((uri, data))  # uri: the next hop
        return self.send_rc

    def version(self) -> str:
        return "kamailio 5.6.3 (x86_64/linux)"

    def reply_local(self) -> tuple[str, int]:
        return self.local

    def reply_header(self, name: str) -> str | None:
        return self.reply_headers.get(name)

    def reply_callid(self) -> str | None:
        return self.reply[0]

    def reply_fields(self) -> tuple[int | None, str | None, str | None]:
        if len(self.reply) == 4:
            return self.reply[1:]
        callid, code, source = self.reply
        branch = None
        for _, text in self.requests:
            if re.search(rf"(?m)^Call-ID: {re.escape(str(callid))}\r$", text):
                branch = re.search(r"branch=([^;\r]+)", text).group(1)  # type: ignore[union-attr]
        return code, source, branch

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

    def set_var(self, name: str, value: int | str) -> None:
        self.vars[name] = value

    def set_pv(self, name: str, value: str) -> bool:
        if name in self.refused_pvs:
            return False
        self.pvs[name] = value
        return True

    def push_candidates(self, text: str) -> None:
        self.xavp_next.insert(0, text)

    def candidates(self) -> object:
        return self.xavp_next[0] if self.xavp_next else None

    def replace_candidates(self, text: str) -> None:
        self.xavp_next[0] = text

    def message_connection(self) -> MessageConnection:
        return self.connection

    def module_loaded(self, name: str) -> bool:
        return name in self.modules

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
