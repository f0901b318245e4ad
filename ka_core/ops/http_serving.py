"""What an HTTP request to ka-kemi gets, past the access check (``kemi/http_rpc.py`` reads
the request and sends the reply): the room it goes to, the bound on a reply's size, and the
one warning line a refusal is logged with.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ka_core.ops import jsonrpc
from ka_core.ops.access import HttpRequest, Refusal
from ka_core.ops.jsonrpc import HttpAnswer

JSON = "application/json"
MAX_REPLY_BYTES = 4 << 20
"""Kamailio builds an HTTP reply in pkg memory: a 10 MB listing (50,000 destinations) failed
there with ``-M 16`` and the client waited for nothing.  Past this, a clear 413 instead."""


def is_metrics(req: HttpRequest, metrics_path: str) -> bool:
    """Whether a request is a scrape (``KA_METRICS_PATH`` set and its path asked)."""
    return bool(metrics_path) and urlsplit(req.url).path == metrics_path


def refusal_answer(refusal: Refusal) -> HttpAnswer:
    return jsonrpc.refused(refusal.status, refusal.reason, refusal.reason.lower())


def bounded(answer: HttpAnswer) -> HttpAnswer:
    """``answer``, or a 413 saying how to ask for less when its body is over
    ``MAX_REPLY_BYTES`` (xhttp copies it into pkg memory, ``-M``)."""
    if len(answer.body) <= MAX_REPLY_BYTES:
        return answer
    return jsonrpc.refused(
        413, "Payload Too Large",
        f"result of {len(answer.body)} bytes is over {MAX_REPLY_BYTES}: ask for pages "
        '("params": [offset, count]) or use kamcmd',
    )  # fmt: skip


def refusal_line(req: HttpRequest, status: int, why: str, what: str, suppressed: int) -> str:
    """The warning for a refused request; ``suppressed`` lines were left out before it."""
    more = f" ({suppressed} more not logged)" if suppressed else ""
    return (
        f"{what} over HTTP from {req.source}: {status}, {why}: "
        f"{req.method[:16]} {req.url[:80]!r}{more}"
    )
