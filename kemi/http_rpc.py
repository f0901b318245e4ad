"""JSON-RPC over HTTP (the xhttp event callback), behind the access check.

Runs in whichever SIP worker received the request.  Refusals are logged at most a few times a
minute per worker (``LogLimiter``), so a scan of the SIP port cannot flood the log.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ka_core.ops import jsonrpc, metrics
from ka_core.ops.access import HttpRequest, LogLimiter
from kemi.metrics_http import exposition
from kemi.runtime import Runtime

JSON = "application/json"
_log_limit = LogLimiter()


MAX_REPLY_BYTES = 4 << 20
"""Kamailio builds an HTTP reply in pkg memory: a 10 MB listing (50,000 destinations) failed
there with ``-M 16`` and the client waited for nothing.  Past this, a clear 413 instead."""


def serve(rt: Runtime) -> None:
    ksr = rt.ksr
    req = ksr.http_request()
    if rt.config.metrics_path and urlsplit(req.url).path == rt.config.metrics_path:
        _metrics(rt, req)
        return
    refusal = rt.http_guard.check(req)
    if refusal is not None:
        _log(rt, req, refusal.status, refusal.why)
        body = jsonrpc.refused(refusal.status, refusal.reason, refusal.reason.lower()).body
        ksr.http_reply(refusal.status, refusal.reason, JSON, body)
        return
    raw = ksr.http_body()
    answer = jsonrpc.NOT_UTF8 if raw is None else jsonrpc.answer(raw, rt.commands)
    if answer is None:
        ksr.jsonrpc_dispatch()
        return
    if len(answer.body) > MAX_REPLY_BYTES:  # xhttp copies it into pkg memory (-M)
        answer = jsonrpc.refused(
            413, "Payload Too Large",
            f"result of {len(answer.body)} bytes is over {MAX_REPLY_BYTES}: ask for pages "
            '("params": [offset, count]) or use kamcmd',
        )  # fmt: skip
    if answer.status >= 400:
        _log(rt, req, answer.status, answer.reason)
    ksr.http_reply(answer.status, answer.reason, JSON, answer.body)


def _metrics(rt: Runtime, req: HttpRequest) -> None:
    refusal = rt.metrics_guard.check(req)
    if refusal is not None:
        _log(rt, req, refusal.status, refusal.why, "metrics scrape")
        rt.ksr.http_reply(refusal.status, refusal.reason, "text/plain", refusal.reason + "\n")
        return
    rt.ksr.http_reply(200, "OK", metrics.CONTENT_TYPE, exposition(rt))


def _log(rt: Runtime, req: HttpRequest, status: int, why: str, what: str = "JSON-RPC") -> None:
    suppressed = _log_limit.admit(rt.monotonic())
    if suppressed is None:
        return
    more = f" ({suppressed} more not logged)" if suppressed else ""
    rt.ksr.warn(
        f"{what} over HTTP from {req.source}: {status}, {why}: "
        f"{req.method[:16]} {req.url[:80]!r}{more}"
    )
