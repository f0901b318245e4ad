"""Which KDMQ requests a SIP worker takes for the pinger (``kemi/cluster_receive.py`` reads
the request and sends the answer).

After dmq says the source is one of its nodes, the body decides: its size (413 over
``MAX_BODY_BYTES``, 400 when empty or not UTF-8), its shape (``ka_core.cluster.codec``, 400)
and the node it names, which must be the source address (403).  Nothing is applied here.
"""

from __future__ import annotations

from typing import NamedTuple

from ka_core.cluster.codec import MAX_BODY_BYTES, BadMessage, decode, node_host


class Refusal(NamedTuple):
    code: int
    reason: str
    why: str


def not_a_node(source: object) -> Refusal:
    return Refusal(403, "Forbidden", f"from {source}: not a dmq node")


def check_body(body: bytes | None, source: object) -> Refusal | str:
    """The node the body comes from, or why it is refused."""
    if body is None or len(body) > MAX_BODY_BYTES:
        size = "not UTF-8" if body is None else f"{len(body)} bytes"
        return Refusal(413 if body else 400, "Bad Body", f"from {source}: body {size}")
    try:
        message = decode(body)
    except BadMessage as exc:
        return Refusal(400, "Bad Message", f"from {source}: {exc}")
    if node_host(message.node) != str(source):
        return Refusal(403, "Forbidden", f"from {source}: claims to be {message.node}")
    return message.node


def inbox_full(source: object) -> Refusal:
    return Refusal(503, "Busy", f"from {source}: cluster inbox full")


def refusal_line(refusal: Refusal, suppressed: int) -> str:
    more = f" ({suppressed} more not logged)" if suppressed else ""
    return f"cluster: KDMQ refused with {refusal.code} {refusal.why}{more}"
