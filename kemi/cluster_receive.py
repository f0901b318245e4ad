"""KDMQ requests in SIP workers: ``ka_cluster_request()``, called early in the request route.

Theory of operation.  A KEMI script cannot register a dmq peer callback, so ka-kemi takes its
channel's KDMQ requests in the routing script itself.  For a KDMQ whose R-URI user is our
channel this worker, in order: checks that dmq knows the source address as a node
(``is_from_node``, 403 otherwise), checks the body (``ka_core.cluster.admission``: size, JSON
shape, every URI, owner and setting; 413/400 otherwise) and that the node it names is the
source address (403), then queues the body for the pinger (``ka_core.cluster.inbox``; 503
when full), wakes it and answers 200.  Every other KDMQ goes to ``dmq.handle_message()``
(dmq's own pings and node lists, other modules' channels).  Refusals are logged at most 10
times a minute per worker.  Nothing is applied here: the pinger is the one writer of cluster
state.
"""

from __future__ import annotations

from ka_core.cluster import admission
from ka_core.cluster.admission import Refusal
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
        return _refuse(rt, admission.not_a_node(source))
    body = port.request_body()
    node = admission.check_body(body, source)
    if isinstance(node, Refusal):
        return _refuse(rt, node)
    if node != cluster.node:  # a node whose notification peer is itself hears itself
        assert body is not None
        if not cluster.inbox.push(body):
            return _refuse(rt, admission.inbox_full(source))
        rt.wake()
    port.reply(200, "OK")
    return HANDLED


def _refuse(rt: Runtime, refusal: Refusal) -> int:
    assert rt.cluster is not None
    rt.cluster.kamailio().reply(refusal.code, refusal.reason)
    suppressed = _log_limit.admit(rt.monotonic())
    if suppressed is not None:
        rt.ksr.warn(admission.refusal_line(refusal, suppressed))
    return HANDLED
