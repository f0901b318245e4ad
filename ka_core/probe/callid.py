"""Call-IDs of our pings: ``ka<token>.<seq hex>.<slot hex>``.

The random per-start token tells our replies from anybody else's; the sequence number
matches the reply to its ping in the pinger; the slot lets the SIP worker that receives the
reply see the destination's current state and wake the pinger only when the reply changes
it (the pinger drains the other replies on its next 100 ms tick).
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdef")


def callid_prefix(token: str) -> str:
    return f"ka{token}."


def make_callid(prefix: str, seq: int, slot: int) -> str:
    return f"{prefix}{seq:x}.{slot:x}"


def parse_callid(callid: str, prefix: str) -> tuple[int, int] | None:
    """(seq, slot) of one of our Call-IDs, None for anything else."""
    if not callid.startswith(prefix):
        return None
    seq_hex, dot, slot_hex = callid[len(prefix) :].partition(".")
    if not dot or not 0 < len(seq_hex) <= 8 or not 0 < len(slot_hex) <= 8:
        return None
    if not _HEX.issuperset(seq_hex) or not _HEX.issuperset(slot_hex):
        return None
    return int(seq_hex, 16), int(slot_hex, 16)
