"""The real ``KsrPort``: the only module that imports ``KSR``, one thin method per call."""

from __future__ import annotations

import KSR  # type: ignore[import-not-found]  # noqa: TID251 - this is the seam

from ka_core.ops.access import HttpRequest
from kemi.ksr_port import LOG_PREFIX, MessageConnection


class KamailioKsr:
    def info(self, text: str) -> None:
        KSR.info(LOG_PREFIX + text + "\n")

    def warn(self, text: str) -> None:
        KSR.warn(LOG_PREFIX + text + "\n")

    def err(self, text: str) -> None:
        KSR.err(LOG_PREFIX + text + "\n")

    def define(self, name: str) -> str | None:
        value = KSR.pv.get(f"$def({name})")
        return None if value is None else str(value)

    def send_request(self, uri: str, socket: str, data: str) -> int:
        return int(KSR.corex.sendx(uri, socket, data))

    def version(self) -> str:
        return str(KSR.pv.get("$version(full)") or "")

    def reply_local(self) -> tuple[str, int]:
        return str(KSR.pv.get("$Ri") or ""), int(KSR.pv.get("$Rp") or 0)

    def reply_header(self, name: str) -> str | None:
        value = KSR.pv.get(f"$hdr({name})")
        return None if value is None else str(value)

    def reply_callid(self) -> str | None:
        return KSR.pv.get("$ci")  # type: ignore[no-any-return]

    def reply_fields(self) -> tuple[int | None, str | None, str | None]:
        pv = KSR.pv.get
        return pv("$rs"), pv("$si"), pv("$via0(branch)")

    def http_request(self) -> HttpRequest:
        pv = KSR.pv.get
        return HttpRequest(
            method=str(pv("$rm") or ""),
            url=str(pv("$hu") or ""),
            source=str(pv("$si") or ""),
            authorization=pv("$hdr(Authorization)"),
        )

    def http_body(self) -> bytes | None:
        try:
            body = KSR.pv.get("$rb")
        except UnicodeDecodeError:  # app_python3 cannot make a str of it
            return None
        return b"" if body is None else str(body).encode("utf-8", "surrogateescape")

    def http_reply(self, code: int, reason: str, ctype: str, body: str) -> None:
        KSR.xhttp.xhttp_reply(code, reason, ctype, body)

    def jsonrpc_dispatch(self) -> None:
        KSR.jsonrpcs.dispatch()

    def jsonrpc_exec(self, request: str) -> tuple[object, object]:
        KSR.jsonrpcs.exec(request)
        return KSR.pv.get("$jsonrpl(code)"), KSR.pv.get("$jsonrpl(body)")

    def set_var(self, name: str, value: int | str) -> None:
        if isinstance(value, int):
            KSR.pv.seti(f"$var({name})", value)
        else:
            KSR.pv.sets(f"$var({name})", value)

    def set_pv(self, name: str, value: str) -> bool:
        return bool(KSR.pv.sets(name, value))

    def push_candidates(self, text: str) -> None:
        KSR.pv.sets("$xavp(ka_select=>next)", text)

    def candidates(self) -> object:
        return KSR.pv.get("$xavp(ka_select=>next)")

    def replace_candidates(self, text: str) -> None:
        KSR.pv.sets("$xavp(ka_select[0]=>next)", text)

    def message_connection(self) -> MessageConnection:
        pv = KSR.pv.get
        return pv("$pr"), pv("$conid"), pv("$si"), pv("$sp"), pv("$Ri"), pv("$Rp")

    def module_loaded(self, name: str) -> bool:
        return hasattr(KSR, name)

    def tcpops_loaded(self) -> bool:
        return hasattr(KSR, "tcpops")

    def tcpops_keepalive_enable_cid(self, conid: int, idle: int, count: int, interval: int) -> int:
        return int(KSR.tcpops.tcp_keepalive_enable_cid(conid, idle, count, interval))

    def tcpops_keepalive_disable_cid(self, conid: int) -> int:
        return int(KSR.tcpops.tcp_keepalive_disable_cid(conid))
