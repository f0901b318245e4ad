"""Which dense slot a new destination takes: the last one freed (a stack of u32 slot numbers
after the index), else the first never taken.  Nothing is written at format time, so a table
of a million slots starts at once.  Every call is made with the table's lock held; slots keep
their generation while free, so a reused slot's ``gen`` moves on and cached (slot, gen) pairs
go stale as before."""

from __future__ import annotations

import struct

from ka_core.store.layout import FREE_SLOTS, FREE_SLOTS_AT

_U32 = struct.Struct("<I")


class FreeSlots:
    """The slot allocator over ``capacity`` slots; its stack starts at byte ``stack_at``."""

    def __init__(self, buf: memoryview, stack_at: int, capacity: int) -> None:
        self._buf = buf
        self._stack_at = stack_at
        self.capacity = capacity

    def take(self) -> int:
        """A free slot (the caller checked the count: there is one)."""
        taken, stacked = FREE_SLOTS.unpack_from(self._buf, FREE_SLOTS_AT)
        if stacked:
            FREE_SLOTS.pack_into(self._buf, FREE_SLOTS_AT, taken, stacked - 1)
            return int(_U32.unpack_from(self._buf, self._stack_at + 4 * (stacked - 1))[0])
        FREE_SLOTS.pack_into(self._buf, FREE_SLOTS_AT, taken + 1, 0)
        return int(taken)

    def give(self, slot: int) -> None:
        taken, stacked = FREE_SLOTS.unpack_from(self._buf, FREE_SLOTS_AT)
        _U32.pack_into(self._buf, self._stack_at + 4 * stacked, slot)
        FREE_SLOTS.pack_into(self._buf, FREE_SLOTS_AT, taken, stacked + 1)

    def reset(self) -> None:
        """Every slot free (a flush): new ones are taken from slot 0 again."""
        FREE_SLOTS.pack_into(self._buf, FREE_SLOTS_AT, 0, 0)
