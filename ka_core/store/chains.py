"""The shared table's hash index: open addressing over buckets of (crc32 of the key, slot + 1),
``BUCKETS_PER_SLOT`` per slot, linear probing; a lookup reads one bucket per step and a
candidate slot's lengths, compares only on an equal crc, and the records never move.  After
a delete ``sweep`` keeps chains short.  ``SharedTable`` holds one ``Chains`` (composition: it
knows buckets and the slots' strings, not the table).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from ka_core.store.layout import (
    BUCKET,
    BUCKET_TOMB,
    INLINE_AT,
    INLINE_SIZE,
    LENGTHS,
    SLOT_SIZE,
    USED,
    offset,
)
from ka_core.store.strings import Pool

_EMPTY = 0
CHUNK_AT = offset("chunk")


class Chains:
    """``buckets`` index buckets from byte ``index_at`` over the slots from ``slots_at``."""

    def __init__(
        self, buf: memoryview, slots_at: int, index_at: int, buckets: int, pool: Pool
    ) -> None:
        self._buf = buf
        self._slots_at = slots_at
        self._at = index_at
        self.buckets = buckets
        self._pool = pool

    def off(self, slot: int) -> int:
        """Byte offset of ``slot`` in the buffer."""
        return self._slots_at + slot * SLOT_SIZE

    def _holds(self, slot: int, key_b: bytes, owner_b: bytes | None) -> bool:
        """Whether used ``slot`` has this key (and owner): from the slot alone when they are
        inline (one read of the lengths), else through the pool."""
        buf, off = self._buf, self._slots_at + slot * SLOT_SIZE
        used, uri_len, key_len, owner_len = LENGTHS.unpack_from(buf, off)
        start, length = (uri_len, key_len) if key_len else (0, uri_len)
        if used != USED or length != len(key_b):
            return False
        end = uri_len + key_len + owner_len
        if end <= INLINE_SIZE:
            at = off + INLINE_AT
            run: bytes | memoryview = buf[at : at + end]
        else:
            chunk = int.from_bytes(buf[off + CHUNK_AT : off + CHUNK_AT + 4], "little")
            run = self._pool.run(buf[off + INLINE_AT : off + SLOT_SIZE], chunk, end)
        if run[start : start + length] != key_b:
            return False
        return owner_b is None or run[end - owner_len : end] == owner_b

    def find(self, key: str, owner: str | None = None) -> int:
        """Slot of the first record with this key (and owner), or -1."""
        key_b = key.encode()
        owner_b = None if owner is None else owner.encode()
        crc = zlib.crc32(key_b)
        buf, at, n, unpack = self._buf, self._at, self.buckets, BUCKET.unpack_from
        pos = crc % n
        for _ in range(n):
            got, ref = unpack(buf, at + pos * 8)
            if ref == _EMPTY:
                return -1
            if got == crc and ref != BUCKET_TOMB and self._holds(ref - 1, key_b, owner_b):
                return int(ref - 1)
            pos = pos + 1 if pos + 1 < n else 0
        return -1

    def place(self, key_b: bytes, owner_b: bytes, crc: int) -> tuple[int, bool]:
        """Where a new record's bucket goes (lock held): (the first free bucket on its chain,
        whether the chain already holds (key, owner)).  ``crc``: ``crc32(key_b)``."""
        buf, at, n, unpack, free = self._buf, self._at, self.buckets, BUCKET.unpack_from, -1
        pos = crc % n
        for _ in range(n):
            got, ref = unpack(buf, at + pos * 8)
            if ref == _EMPTY:
                return (pos if free < 0 else free), False
            if ref == BUCKET_TOMB:
                free = pos if free < 0 else free
            elif got == crc and self._holds(ref - 1, key_b, owner_b):
                return free, True
            pos = pos + 1 if pos + 1 < n else 0
        return free, False

    def put(self, pos: int, crc: int, slot: int) -> None:
        BUCKET.pack_into(self._buf, self._at + pos * 8, crc, slot + 1)

    def remove(self, slot: int, crc: int) -> None:
        """Tombstone ``slot``'s bucket and sweep its run (lock held)."""
        for pos in self.walk(crc):
            got, ref = BUCKET.unpack_from(self._buf, self._at + pos * 8)
            if ref == slot + 1:
                BUCKET.pack_into(self._buf, self._at + pos * 8, got, BUCKET_TOMB)
                self.sweep(pos)
                return
            if ref == _EMPTY:
                return

    def clear(self) -> None:
        """Every bucket empty (a flush)."""
        self._buf[self._at : self._at + self.buckets * 8] = bytes(self.buckets * 8)

    def walk(self, crc: int) -> Iterator[int]:
        """The buckets a lookup of a key with this crc visits, in order (callers stop at an
        empty one)."""
        start = crc % self.buckets
        for i in range(self.buckets):
            yield (start + i) % self.buckets

    def _ref(self, pos: int) -> int:
        return int(BUCKET.unpack_from(self._buf, self._at + pos * 8)[1])

    def slot_usage(self) -> tuple[int, int, int]:
        """(used, tombstones, empty) buckets: how long probe chains can get (benchmarks)."""
        refs = [self._ref(pos) for pos in range(self.buckets)]
        empty, tombs = refs.count(_EMPTY), refs.count(BUCKET_TOMB)
        return len(refs) - empty - tombs, tombs, empty

    def probe_length(self, key: str) -> int:
        """Buckets a lookup of ``key`` visits (benchmarks: a miss stops at an empty one)."""
        key_b = key.encode()
        crc = zlib.crc32(key_b)
        for visited, pos in enumerate(self.walk(crc), 1):
            got, ref = BUCKET.unpack_from(self._buf, self._at + pos * 8)
            if ref == _EMPTY or (
                ref != BUCKET_TOMB and got == crc and self._holds(ref - 1, key_b, None)
            ):
                return visited
        return self.buckets

    def sweep(self, pos: int) -> None:
        """Empty the tombstones of bucket ``pos``'s run that no probe chain needs (lock held).

        A tombstone is needed only while a live bucket after it in the run has its home at or
        before it.  Emptying the others keeps chains as short as on day one after any churn
        (a million adds and deletes); slots never move, so cached (slot, gen) pairs stay valid.
        Cost: the length of one run."""
        n = self.buckets
        start = pos
        while self._ref((start - 1) % n) != _EMPTY and (start - 1) % n != pos:
            start = (start - 1) % n
        run: list[int] = []
        at = start
        while self._ref(at) != _EMPTY and len(run) < n:
            run.append(at)
            at = (at + 1) % n
        lowest_home = n  # run-relative home of the live buckets seen after this point
        for i in range(len(run) - 1, -1, -1):
            crc, ref = BUCKET.unpack_from(self._buf, self._at + run[i] * 8)
            if ref != BUCKET_TOMB:
                lowest_home = min(lowest_home, (crc % n - start) % n)
            elif i < lowest_home:
                BUCKET.pack_into(self._buf, self._at + run[i] * 8, 0, _EMPTY)
