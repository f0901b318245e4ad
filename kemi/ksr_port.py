"""The only module that imports ``KSR``: one thin function per Kamailio call we use."""

from __future__ import annotations

import KSR  # type: ignore[import-not-found]  # noqa: TID251 - this is the seam

from ka_core.access import HttpRequest

LOG_PREFIX = "keepalive: "


def info(text: str) -> None:
    KSR.info(LOG_PREFIX + text + "\n")


def warn(text: str) -> None:
    KSR.warn(LOG_PREFIX + text + "\n")


def err(text: str) -> None:
    KSR.err(LOG_PREFIX + text + "\n")


def pv_get(name: str) -> object:
    return KSR.pv.get(name)


def define(name: str) -> str | None:
    """Value of ``#!define name`` in kamailio.cfg, or None."""
    value = KSR.pv.get(f"$def({name})")
    return None if value is None else str(value)


def send_options(ruri: str, from_uri: str, callid: str) -> int:
    """OPTIONS through tm (Kamailio's own sockets); the same request layout as C keepalive."""
    KSR.pv.unset("$uac_req(all)")
    KSR.pv.sets("$uac_req(method)", "OPTIONS")
    KSR.pv.sets("$uac_req(ruri)", ruri)
    KSR.pv.sets("$uac_req(turi)", ruri)
    KSR.pv.sets("$uac_req(furi)", from_uri)
    KSR.pv.sets("$uac_req(callid)", callid)
    return int(KSR.uac.uac_req_send())


def reply_fields() -> tuple[str | None, int | None, str | None]:
    """(Call-ID, status code, source IP) of the reply being processed."""
    return KSR.pv.get("$ci"), KSR.pv.get("$rs"), KSR.pv.get("$si")


def reply_matches_transaction() -> bool:
    """tm's own match (Via branch) for the current reply."""
    return bool(KSR.tm.t_check_trans() > 0)


def http_request() -> HttpRequest:
    """The parts of the HTTP request the access check needs (the body is not read)."""
    pv = KSR.pv.get
    return HttpRequest(
        method=str(pv("$rm") or ""),
        url=str(pv("$hu") or ""),
        source=str(pv("$si") or ""),
        authorization=pv("$hdr(Authorization)"),
    )


def http_body() -> bytes | None:
    """The body as bytes; None when it is not UTF-8 (app_python3 cannot make a str of it)."""
    try:
        body = KSR.pv.get("$rb")
    except UnicodeDecodeError:
        return None
    return b"" if body is None else str(body).encode("utf-8", "surrogateescape")


def http_reply(code: int, reason: str, ctype: str, body: str) -> None:
    KSR.xhttp.xhttp_reply(code, reason, ctype, body)


def jsonrpc_dispatch() -> None:
    KSR.jsonrpcs.dispatch()


# ---- TCP keepalive (kemi/tcp_keepalive.py) -----------------------------------------------


def message_connection() -> tuple[object, object, object, object, object, object]:
    """($pr, $conid, $si, $sp, $Ri, $Rp) of the current message."""
    pv = KSR.pv.get
    return pv("$pr"), pv("$conid"), pv("$si"), pv("$sp"), pv("$Ri"), pv("$Rp")


def jsonrpc_exec(request: str) -> tuple[object, object]:
    """Run a built-in RPC through jsonrpcs: ($jsonrpl(code), $jsonrpl(body))."""
    KSR.jsonrpcs.exec(request)
    return KSR.pv.get("$jsonrpl(code)"), KSR.pv.get("$jsonrpl(body)")


def tcpops_loaded() -> bool:
    return hasattr(KSR, "tcpops")


def tcpops_keepalive_enable_cid(conid: int, idle: int, count: int, interval: int) -> int:
    return int(KSR.tcpops.tcp_keepalive_enable_cid(conid, idle, count, interval))


def tcpops_keepalive_disable_cid(conid: int) -> int:
    return int(KSR.tcpops.tcp_keepalive_disable_cid(conid))
