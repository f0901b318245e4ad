"""KDMQ requests in SIP workers: ``ka_cluster_request()``, called early in the request route.

Theory of operation.  A KEMI script cannot register a dmq peer callback, so ka-kemi takes its
channel's KDMQ requests in the routing script itself.  For a KDMQ whose R-URI user is our
channel this worker, in order: checks that dmq knows the source address as a node
(``is_from_node``, 403 otherwise), checks the body (``ka_core.cluster.codec``: size, JSON
shape, every URI, owner and setting; 413/400 otherwise) and that the node it names is the
source address (403), then queues the body for the pinger (``ka_core.cluster.inbox``; 503
when full), wakes it and answers 200.  Every other KDMQ goes to ``dmq.handle_message()``
(dmq's own pings and node lists, other modules' channels).  Refusals are logged at most 10
times a minute per worker.  Nothing is applied here: the pinger is the one writer of cluster
state.
"""

from __future__ import annotations

from ka_core.cluster.codec import MAX_BODY_BYTES, BadMessage, decode, node_host
from ka_core.ops.access import LogLimiter
from kemi.runtime import Runtime

METHOD = "KDMQ"
HANDLED, NOT_KDMQ = 1, -1
_log_limit = LogLimiter()


def handle(rt: Runtime) -> int:
    """1: a KDMQ, answered (stop routing); -1: not a KDMQ, or cluster mode is off."""
    cluster = rt.cluster
    if cluster is None:
        return NOT_KDMQ
    port = cluster.kamailio()
    method, channel, source = port.request_fields()
    if method != METHOD:
        return NOT_KDMQ
    if channel != cluster.channel:
        port.handle_message()
        return HANDLED
    if not port.is_from_node():
        return _refuse(rt, 403, "Forbidden", f"from {source}: not a dmq node")
    body = port.request_body()
    if body is None or len(body) > MAX_BODY_BYTES:
        size = "not UTF-8" if body is None else f"{len(body)} bytes"
        return _refuse(rt, 413 if body else 400, "Bad Body", f"from {source}: body {size}")
    try:
        message = decode(body)
    except BadMessage as exc:
        return _refuse(rt, 400, "Bad Message", f"from {source}: {exc}")
    if node_host(message.node) != str(source):
        return _refuse(rt, 403, "Forbidden", f"from {source}: claims to be {message.node}")
    if message.node != cluster.node:  # a node whose notification peer is itself hears itself
        if not cluster.inbox.push(body):
            return _refuse(rt, 503, "Busy", f"from {source}: cluster inbox full")
        rt.wake()
    port.reply(200, "OK")
    return HANDLED


def _refuse(rt: Runtime, code: int, reason: str, why: str) -> int:
    assert rt.cluster is not None
    rt.cluster.kamailio().reply(code, reason)
    suppressed = _log_limit.admit(rt.monotonic())
    if suppressed is not None:
        more = f" ({suppressed} more not logged)" if suppressed else ""
        rt.ksr.warn(f"cluster: KDMQ refused with {code} {why}{more}")
    return HANDLED
