"""The shared table's header fields, which are not about one destination: the count, the
membership counter, the pause of all probing, the current ``ping_interval``, the controls
counter and the pinger's health.  ``SharedTable.header`` is one ``Header`` over the same
buffer; each field is one small read or write (lock-free: one writer each, or a torn read
retried by the next call)."""

from __future__ import annotations

import struct

from ka_core.errors import InvalidArgument
from ka_core.store.layout import (
    BUCKET,
    BUCKETS_PER_SLOT,
    CHUNK_SIZE,
    CONTROLS_AT,
    COUNT_AT,
    HEADER,
    HEADER_SIZE,
    INTERVAL_AT,
    LIFE,
    LIFE_AT,
    MAGIC,
    MEMBERSHIP_AT,
    PAUSED_AT,
    PINGER,
    PINGER_AT,
    SLOT_SIZE,
)
from ka_core.store.ring import ENTRY
from ka_core.store.strings import default_chunks

_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")


def regions(max_destinations: int, ring_capacity: int, chunks: int) -> tuple[int, ...]:
    """Byte offsets of the slots, the index, the free-slot stack, the pool and the end."""
    slots_at = HEADER_SIZE + ring_capacity * ENTRY.size
    index_at = slots_at + max_destinations * SLOT_SIZE
    stack_at = index_at + BUCKETS_PER_SLOT * max_destinations * BUCKET.size
    pool_at = stack_at + 4 * max_destinations
    return slots_at, index_at, stack_at, pool_at, pool_at + chunks * CHUNK_SIZE


def buffer_size(max_destinations: int, ring_capacity: int, string_chunks: int = 0) -> int:
    """Bytes a table for ``max_destinations`` needs (``string_chunks`` 0: the default pool)."""
    chunks = string_chunks or default_chunks(max_destinations)
    return regions(max_destinations, ring_capacity, chunks)[-1]


def format_buffer(
    buf: bytearray | memoryview,
    max_destinations: int,
    ring_capacity: int,
    ping_interval: int = 30,
    string_chunks: int = 0,
) -> None:
    """Write an empty table header into ``buf`` (zeroed, as a new mmap is)."""
    if max_destinations < 1 or ring_capacity < 1:
        raise InvalidArgument("max_destinations and ring_capacity must be positive")
    if len(buf) < buffer_size(max_destinations, ring_capacity, string_chunks):
        raise InvalidArgument("buffer too small for the table")
    chunks = string_chunks or default_chunks(max_destinations)
    HEADER.pack_into(
        buf, 0, MAGIC, max_destinations, max_destinations, 0, ring_capacity, chunks, 0, 0
    )
    _U32.pack_into(buf, INTERVAL_AT, ping_interval)


class Header:
    def __init__(self, buf: memoryview) -> None:
        self._buf = buf

    @property
    def count(self) -> int:
        return int(_U32.unpack_from(self._buf, COUNT_AT)[0])

    def write_count(self, count: int, changes: int = 1) -> None:
        """Every add and delete passes here (lock held): it also bumps ``membership``, once
        per destination (``changes``: a bulk insert's)."""
        _U32.pack_into(self._buf, COUNT_AT, count)
        _U32.pack_into(self._buf, MEMBERSHIP_AT, (self.membership + changes) & 0xFFFFFFFF)

    @property
    def membership(self) -> int:
        """Changes whenever a destination is added or deleted (any process)."""
        return int(_U32.unpack_from(self._buf, MEMBERSHIP_AT)[0])

    @property
    def paused(self) -> bool:
        """All probing paused (keepalive.pause; a one-byte read)."""
        return bool(self._buf[PAUSED_AT])

    def pause_all(self, paused: bool) -> None:
        self._buf[PAUSED_AT] = 1 if paused else 0

    @property
    def controls(self) -> int:
        """Changes when a destination's pause flag or interval may have changed: the pinger
        re-reads them only then, not for every ping (one 2-byte read per step)."""
        return int(_U16.unpack_from(self._buf, CONTROLS_AT)[0])

    def bump_controls(self) -> None:
        """Called with the table's lock held, after a pause or interval write."""
        _U16.pack_into(self._buf, CONTROLS_AT, (self.controls + 1) & 0xFFFF)

    @property
    def ping_interval(self) -> int:
        """The current ``ping_interval`` in seconds (``SharedTable.set_ping_interval``)."""
        return int(_U32.unpack_from(self._buf, INTERVAL_AT)[0])

    def write_ping_interval(self, seconds: int) -> None:
        _U32.pack_into(self._buf, INTERVAL_AT, seconds)

    def write_pinger_stats(self, lag_s: float, lag_max_s: float, in_flight: int) -> None:
        """The pinger's lag and pings in flight for /metrics (only the pinger writes it)."""
        PINGER.pack_into(self._buf, PINGER_AT, lag_s, lag_max_s, in_flight)

    def pinger_stats(self) -> tuple[float, float, int]:
        lag, lag_max, in_flight = PINGER.unpack_from(self._buf, PINGER_AT)
        return float(lag), float(lag_max), int(in_flight)

    def write_pinger_life(self, status: int, beat: float) -> None:
        """The pinger's status and last step (``ka_core.probe.liveness``; the pinger only)."""
        LIFE.pack_into(self._buf, LIFE_AT, status, beat)

    def pinger_life(self) -> tuple[int, float]:
        status, beat = LIFE.unpack_from(self._buf, LIFE_AT)
        return int(status), float(beat)
