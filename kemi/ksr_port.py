"""Everything kemi/ needs from Kamailio, as one small interface.

``kemi.kamailio_ksr.KamailioKsr`` is the real adapter (the only code that imports ``KSR``);
``tests/unit/fake_ksr.FakeKsr`` records calls and serves canned values, so the glue is
unit-tested without a Kamailio.  The runtime holds the port and passes it down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ka_core.ops.access import HttpRequest

LOG_PREFIX = "keepalive: "
Clock = Callable[[], float]

MessageConnection = tuple[object, object, object, object, object, object]
"""($pr, $conid, $si, $sp, $Ri, $Rp) of the current message."""


class KsrPort(Protocol):
    def info(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def err(self, text: str) -> None: ...

    def define(self, name: str) -> str | None:
        """Value of ``#!define name`` in kamailio.cfg, or None."""
        ...

    def send_request(self, uri: str, socket: str, data: str) -> int:
        """``data`` to ``uri`` through Kamailio's socket ``socket`` (``udp:10.0.0.1:5060``,
        ``corex.sendx``); < 0 if not sent."""
        ...

    def version(self) -> str:
        """Kamailio's ``$version(full)``, e.g. ``kamailio 5.6.3 (x86_64/linux)``."""
        ...

    def reply_local(self) -> tuple[str, int]:
        """(local IP, port) the reply being processed arrived on."""
        ...

    def reply_header(self, name: str) -> str | None:
        """The first ``name`` header of the reply being processed (``$hdr``), or None."""
        ...

    def reply_callid(self) -> str | None:
        """The Call-ID of the reply being processed: read alone first, so a reply that is
        not to a ping costs one call into Kamailio."""
        ...

    def reply_fields(self) -> tuple[int | None, str | None, str | None]:
        """(status code, source IP, top Via branch) of the reply being processed."""
        ...

    def http_request(self) -> HttpRequest: ...

    def http_body(self) -> bytes | None:
        """The body as bytes; None when it is not UTF-8."""
        ...

    def http_reply(self, code: int, reason: str, ctype: str, body: str) -> None: ...
    def jsonrpc_dispatch(self) -> None: ...

    def jsonrpc_exec(self, request: str) -> tuple[object, object]:
        """Run a built-in RPC through jsonrpcs: (code, body)."""
        ...

    def set_var(self, name: str, value: int | str) -> None:
        """``$var(name) = value`` in this process (native cfg event routes read it)."""
        ...

    def set_pv(self, name: str, value: str) -> bool:
        """``name = value`` for the current message (``$du``, ``$var(x)``); False when
        Kamailio refuses the name."""
        ...

    def push_candidates(self, text: str) -> None:
        """A new ``$xavp(ka_select=>next)`` on top (tm keeps xavps with the transaction)."""
        ...

    def candidates(self) -> object:
        """The top ``$xavp(ka_select=>next)``, or None."""
        ...

    def replace_candidates(self, text: str) -> None:
        """``$xavp(ka_select[0]=>next) = text``."""
        ...

    def message_connection(self) -> MessageConnection: ...

    def module_loaded(self, name: str) -> bool:
        """A module with KEMI functions (``corex``, ``jsonrpcs``) is loaded."""
        ...

    def tcpops_loaded(self) -> bool: ...
    def tcpops_keepalive_enable_cid(
        self, conid: int, idle: int, count: int, interval: int
    ) -> int: ...
    def tcpops_keepalive_disable_cid(self, conid: int) -> int: ...
