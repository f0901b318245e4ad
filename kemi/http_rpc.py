"""JSON-RPC over HTTP (the xhttp event callback), behind the access check.

Runs in whichever SIP worker received the request.  Refusals are logged at most a few times a
minute per worker (``LogLimiter``), so a scan of the SIP port cannot flood the log.
"""

from __future__ import annotations

from ka_core.ops import http_serving, jsonrpc, metrics
from ka_core.ops.access import HttpRequest, LogLimiter
from ka_core.ops.http_serving import JSON
from kemi.metrics_http import exposition
from kemi.runtime import Runtime

_log_limit = LogLimiter()


def serve(rt: Runtime) -> None:
    ksr = rt.ksr
    req = ksr.http_request()
    if http_serving.is_metrics(req, rt.config.metrics_path):
        _metrics(rt, req)
        return
    refusal = rt.http_guard.check(req)
    if refusal is not None:
        _log(rt, req, refusal.status, refusal.why)
        body = http_serving.refusal_answer(refusal).body
        ksr.http_reply(refusal.status, refusal.reason, JSON, body)
        return
    raw = ksr.http_body()
    answer = jsonrpc.NOT_UTF8 if raw is None else jsonrpc.answer(raw, rt.commands)
    if answer is None:
        ksr.jsonrpc_dispatch()
        return
    answer = http_serving.bounded(answer)
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
    if suppressed is not None:
        rt.ksr.warn(http_serving.refusal_line(req, status, why, what, suppressed))
