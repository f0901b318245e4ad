"""Where a record goes and what it gives back: the hash index (``chains``), the free slots
(``slots``) and the string pool (``strings``), changed together with the table's lock held.
``SharedTable`` holds one ``Placement`` and keeps the count, the ring and the checks between
them; this module keeps the three regions consistent with each other.
"""

from __future__ import annotations

import struct
import zlib

from ka_core.errors import DuplicateDestination
from ka_core.store import codec, slot_writes
from ka_core.store.chains import Chains
from ka_core.store.header import regions
from ka_core.store.layout import BUCKETS_PER_SLOT, HOT, INLINE_SIZE, TOMB
from ka_core.store.slots import FreeSlots
from ka_core.store.strings import Pool, pack

SlotGen = tuple[int, int]


class Placement:
    """The regions after the ring of a table of ``capacity`` slots and ``chunks`` chunks."""

    def __init__(self, buf: memoryview, capacity: int, ring_capacity: int, chunks: int) -> None:
        self._buf = buf
        self.slots_at, index_at, stack_at, pool_at, _ = regions(capacity, ring_capacity, chunks)
        self.pool = Pool(buf, pool_at, chunks)
        self._free = FreeSlots(buf, stack_at, capacity)
        buckets = BUCKETS_PER_SLOT * capacity
        self.chains = Chains(buf, self.slots_at, index_at, buckets, self.pool)

    def vet(self, encoded: dict[str, bytes]) -> tuple[int, int]:
        """(bucket, crc) of a new record; raises ``DuplicateDestination`` if it is there."""
        key_b, owner_b = encoded["key"], encoded["owner"]
        crc = zlib.crc32(key_b)
        bucket, duplicate = self.chains.place(key_b, owner_b, crc)
        if duplicate:
            uri = encoded["uri"].decode()
            raise DuplicateDestination(f"{uri} already added by {owner_b.decode()}")
        return bucket, crc

    def put(
        self, encoded: dict[str, bytes], bucket: int, crc: int, flags: int, interval_ms: int,
        wall: float,
    ) -> SlotGen:  # fmt: skip
        """Write a vetted record (the table checked count and ring): its long strings first,
        the one step that can fail (``StringPoolFull``, nothing changed), then a slot."""
        packed = pack(encoded)
        chunk = self.pool.store(packed[0][INLINE_SIZE:])
        slot = self._free.take()
        off = self.chains.off(slot)
        gen = (HOT.unpack_from(self._buf, off)[0] + 1) & 0xFFFFFFFF
        slot_writes.fill(self._buf, off, gen, flags, interval_ms, wall, packed, chunk, crc)
        self.chains.put(bucket, crc, slot)
        return slot, gen

    def release(self, slot: int, to: int = TOMB) -> None:
        """Bump the slot's generation and mark it; a delete (``TOMB``) also gives back its
        bucket, chunks and the slot itself (a flush ends with ``reset`` instead)."""
        buf, off = self._buf, self.chains.off(slot)
        gen = (HOT.unpack_from(buf, off)[0] + 1) & 0xFFFFFFFF
        struct.pack_into("<IB", buf, off, gen, to)
        if to == TOMB:
            self.chains.remove(slot, codec.get(buf, off, "crc"))
            self.pool.release(codec.get(buf, off, "chunk"))
            self._free.give(slot)

    def reset(self) -> None:
        """After a flush: every bucket, slot and chunk free (slots keep their generations)."""
        self.chains.clear()
        self._free.reset()
        self.pool.reset()
