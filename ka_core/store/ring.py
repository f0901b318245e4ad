"""The ring of 32-byte entries that tells the pinger what other processes saw.

``ADDED`` entries name slots any process filled; ``REPLY`` entries carry replies SIP workers
matched to a ping; ``REMOVED`` and ``FLUSHED`` tell cluster mode (``kemi.cluster``) what to
replicate (the prober ignores them: it checks generations); ``OUTCOME`` entries carry the
final codes of real requests a script reported (passive health).  The ring sits in the shared
table's buffer; its head and tail are in the table header, and the table's lock covers every
call.  It is bounded: a full ring makes an add fail cleanly and a reply be dropped (counted
as a timeout).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ka_core.store.layout import RING_POS_AT

ENTRY = struct.Struct("<BxHIIIdd")  # kind, code, slot, gen, seq, mono, wall
_POS = struct.Struct("<QQ")  # head, tail
KIND_ADDED = 1
KIND_REPLY = 2
KIND_REMOVED = 3
"""A slot freed by a delete (``gen``: the generation deleted); only cluster mode reads it."""
KIND_FLUSHED = 4
KIND_OUTCOME = 5
"""A real outcome (final code) a script reported for slot ``slot`` generation ``gen``;
``seq`` holds the seconds of its Retry-After (0: none)."""
KIND_RETRY_AFTER = 6
"""The Retry-After seconds (in ``code``) of the reply to ping ``seq``, queued just before it."""


@dataclass(frozen=True, slots=True)
class RingEntry:
    kind: int
    code: int
    slot: int
    """The slot for ``ADDED``; the reply's source ``address_tag`` for ``REPLY``."""
    gen: int
    seq: int
    mono: float
    wall: float


def capacity_for(max_destinations: int) -> int:
    """Ring entries for a table of ``max_destinations``.

    Between two drains (one 100 ms tick, longer only if the pinger stalls) the ring takes at
    most one ADDED entry per slot filled and the replies to pending pings, of which there is
    at most one per destination (two if a UDP retransmission is answered too); the rest is
    headroom for add/delete churn.  A fixed 64 Ki entries (2 MiB) made small tables cost
    20 KB per destination.
    """
    return 4 * max_destinations + 1024


class Ring:
    """Callers hold the table's lock."""

    def __init__(self, buf: memoryview, at: int, capacity: int) -> None:
        self._buf = buf
        self._at = at
        self.capacity = capacity

    def free(self) -> int:
        head, tail = _POS.unpack_from(self._buf, RING_POS_AT)
        return int(self.capacity - (head - tail))

    def push(self, entry: RingEntry) -> None:
        self.put(entry.kind, entry.code, entry.slot, entry.gen, entry.seq, entry.mono, entry.wall)

    def put(
        self, kind: int, code: int, slot: int, gen: int, seq: int, mono: float, wall: float
    ) -> bool:
        """One entry from its fields (a SIP worker's reply builds no ``RingEntry``); False
        when the ring is full."""
        head, tail = _POS.unpack_from(self._buf, RING_POS_AT)
        if head - tail >= self.capacity:
            return False
        at = self._at + (head % self.capacity) * ENTRY.size
        ENTRY.pack_into(self._buf, at, kind, code, slot, gen, seq, mono, wall)
        _POS.pack_into(self._buf, RING_POS_AT, head + 1, tail)
        return True

    def push_added(self, added: list[tuple[int, int]], wall: float) -> None:
        """One ``ADDED`` entry per (slot, gen), as ``push`` each would write them, with the
        head written once (the start-up list); the caller checked there is room."""
        head, tail = _POS.unpack_from(self._buf, RING_POS_AT)
        buf, at, cap, pack = self._buf, self._at, self.capacity, ENTRY.pack_into
        for i, (slot, gen) in enumerate(added, head):
            pack(buf, at + (i % cap) * ENTRY.size, KIND_ADDED, 0, slot, gen, 0, 0.0, wall)
        _POS.pack_into(self._buf, RING_POS_AT, head + len(added), tail)

    def offer(self, entry: RingEntry, keep_free: int) -> bool:
        """Push ``entry`` unless ``keep_free`` or fewer entries are left: passive health's
        entries keep room for adds and replies (``outcome``); False when not pushed."""
        if self.free() <= keep_free:
            return False
        self.push(entry)
        return True

    def drain(self) -> list[RingEntry]:
        head, tail = _POS.unpack_from(self._buf, RING_POS_AT)
        entries = [
            RingEntry(*ENTRY.unpack_from(self._buf, self._at + (i % self.capacity) * ENTRY.size))
            for i in range(tail, head)
        ]
        _POS.pack_into(self._buf, RING_POS_AT, head, head)
        return entries


def outcome(
    slot: int, gen: int, code: int, mono: float, wall: float, retry_after: int
) -> RingEntry:
    """A script's report of a real request's final code (``KIND_OUTCOME``)."""
    return RingEntry(KIND_OUTCOME, code, slot, gen, retry_after, mono, wall)


def retry_after(seq: int, seconds: int) -> RingEntry:
    """The Retry-After of ping ``seq``'s reply (``KIND_RETRY_AFTER``), queued before it."""
    return RingEntry(KIND_RETRY_AFTER, min(seconds, 0xFFFF), 0, 0, seq, 0.0, 0.0)
