"""The probe chains of the shared table's open addressing: finding a key, walking a chain,
and keeping chains short after deletes (``sweep``).  ``SharedTable`` holds one ``Chains``
over its slots (composition: the chains know the slots' bytes, not the table).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from ka_core.store.codec import USED_AT, text
from ka_core.store.layout import EMPTY, SLOT_SIZE, TOMB, USED


class Chains:
    """Open-addressing chains (``crc32`` of the key, linear probing) over ``capacity``
    slots starting at byte ``slots_at`` of ``buf``."""

    def __init__(self, buf: memoryview, slots_at: int, capacity: int) -> None:
        self._buf = buf
        self._slots_at = slots_at
        self.capacity = capacity

    def off(self, slot: int) -> int:
        """Byte offset of ``slot`` in the buffer."""
        return self._slots_at + slot * SLOT_SIZE

    def find(self, key: str, owner: str | None = None) -> int:
        """Slot of the first record with this key (and owner), or -1."""
        key_b = key.encode()
        owner_b = None if owner is None else owner.encode()
        buf = self._buf
        for slot in self.walk(key_b):
            off = self.off(slot)
            used = buf[off + USED_AT]
            if used == EMPTY:
                return -1
            if (
                used == USED
                and text(buf, off, "key") == key_b
                and (owner_b is None or text(buf, off, "owner") == owner_b)
            ):
                return slot
        return -1

    def place(self, key_b: bytes, owner_b: bytes, crc: int) -> tuple[int, bool]:
        """Where a new record (key, owner) goes (lock held): (the first free slot on its
        chain or -1, whether the chain already holds it).  ``crc``: ``crc32(key_b)``, computed
        once for the chain and the record."""
        buf, cap, free = self._buf, self.capacity, -1
        start = crc % cap
        for i in range(cap):
            slot = (start + i) % cap
            off = self._slots_at + slot * SLOT_SIZE
            used = buf[off + USED_AT]
            if used == USED:
                if text(buf, off, "key") == key_b and text(buf, off, "owner") == owner_b:
                    return free, True
                continue
            if free < 0:
                free = slot
            if used == EMPTY:
                break
        return free, False

    def walk(self, key_b: bytes) -> Iterator[int]:
        """The slots a lookup of ``key_b`` visits, in order (callers stop at EMPTY)."""
        start = zlib.crc32(key_b) % self.capacity
        for i in range(self.capacity):
            yield (start + i) % self.capacity

    def slot_usage(self) -> tuple[int, int, int]:
        """(used, tombstones, empty) slots: how long probe chains can get (benchmarks)."""
        marks = [self._buf[self.off(slot) + USED_AT] for slot in range(self.capacity)]
        return marks.count(USED), marks.count(TOMB), marks.count(EMPTY)

    def probe_length(self, key: str) -> int:
        """Slots a lookup of ``key`` visits (benchmarks: a miss stops at an empty slot)."""
        key_b = key.encode()
        for visited, slot in enumerate(self.walk(key_b), 1):
            off = self.off(slot)
            used = self._buf[off + USED_AT]
            if used == EMPTY or (used == USED and text(self._buf, off, "key") == key_b):
                return visited
        return self.capacity

    def sweep(self, slot: int) -> None:
        """Empty the tombstones of ``slot``'s run that no probe chain needs (lock held).

        A tombstone is needed only while a live record after it in the run has its home
        slot at or before it.  Emptying the others keeps chains as short as on day one
        after any churn (a million adds and deletes), and no record moves: slots and
        generations that readers cached stay valid.  Cost: the length of one run."""
        cap, buf, at = self.capacity, self._buf, USED_AT
        start = slot
        while buf[self.off((start - 1) % cap) + at] != EMPTY and (start - 1) % cap != slot:
            start = (start - 1) % cap
        run: list[int] = []
        pos = start
        while buf[self.off(pos) + at] != EMPTY and len(run) < cap:
            run.append(pos)
            pos = (pos + 1) % cap
        lowest_home = cap  # run-relative home of the live records seen after this point
        for i in range(len(run) - 1, -1, -1):
            off = self.off(run[i])
            mark = buf[off + at]
            if mark == USED:
                home = zlib.crc32(text(buf, off, "key")) % cap
                lowest_home = min(lowest_home, (home - start) % cap)
            elif mark == TOMB and i < lowest_home:
                buf[off + at] = EMPTY  # its generation was bumped when it was freed
