"""The destination table, laid out in one shared buffer that every Kamailio process maps.

Theory of operation.  ``kemi`` creates an anonymous ``MAP_SHARED`` mmap and a process-shared
lock before Kamailio forks; every process then wraps the same memory in a ``SharedTable``.
Tests pass a ``bytearray`` and a ``threading.Lock``: this module never knows about fork.

* Records live in fixed-size slots of an open-addressing hash table keyed by the canonical
  URI (``crc32``, linear probing), so (URI, owner) duplicates and ``ka_is_alive`` lookups are
  O(1) instead of C's linear scan under a global lock.  Several owners of one URI sit on the
  same probe chain.
* Every slot has a generation counter, bumped when the slot is taken or freed.  Readers that
  cached a slot (the routing-path cache, the pinger's schedule) compare generations instead of
  holding the lock.
* Writers (add/del/flush from any process, results from the pinger) take the lock.  Readers of
  a single field (``state_of``) do not: a one-byte read cannot tear.
* A ring (``ka_core.store.ring``) carries what the pinger must learn: ``ADDED`` slots and ``REPLY``
  outcomes seen by SIP workers.  It is bounded; a full ring makes ``add`` fail cleanly.

Field names, offsets and sizes are in ``ka_core.store.layout``.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ka_core import ratelimit
from ka_core.errors import DuplicateDestination, InvalidArgument, TableFull, UnknownDestination
from ka_core.state import State
from ka_core.store import codec
from ka_core.store.chains import ProbeChains
from ka_core.store.codec import USED_AT
from ka_core.store.layout import (
    BUCKET_AT,
    COUNT_AT,
    EMPTY,
    FIXED,
    FLAG_PAUSED,
    FLAG_STOPPED,
    HEADER,
    HEADER_SIZE,
    HOT,
    INTERVAL_AT,
    MAGIC,
    MEMBERSHIP_AT,
    SLOT_SIZE,
    STATE_FLAGS,
    STRINGS,
    TOMB,
    USED,
    Fixed,
    index,
    length_field,
)
from ka_core.store.pinger_writes import PingerWrites
from ka_core.store.records import Record, Summary
from ka_core.store.ring import (
    ENTRY,
    KIND_ADDED,
    KIND_FLUSHED,
    KIND_REMOVED,
    KIND_REPLY,
    Ring,
    RingEntry,
)
from ka_core.uri import SipUri

HotRead = tuple[int, int, int]
Row = tuple[Any, ...]
"""The fields a view asked ``rows`` for, in its order."""
"""(gen, used, state) of a slot."""
_U32 = struct.Struct("<I")
# keepalive.list touches these by position (a hot path): named here
_I_STATE, _I_CHECKED, _I_UP, _I_DOWN, _I_ADDED, _I_URI_LEN, _I_OWNER_LEN = (
    index(n)
    for n in ("state", "last_checked", "last_up", "last_down", "added", "uri_len", "owner_len")
)
_I_LEN = {name: length_field(name) for name in STRINGS}
_I_GEN, _I_USED, _I_FLAGS, _I_CRC, _I_INTERVAL = (
    index(n) for n in ("gen", "used", "flags", "crc", "interval_ms")
)
_NEW_FIXED = tuple(FIXED.unpack(bytes(FIXED.size)))
"""A fresh record's fixed fields: zeros, state UNKNOWN (0)."""
_ZERO_SLOT = bytes(SLOT_SIZE)
MAX_OWNER_BYTES = STRINGS["owner"][1] - 1
MAX_USER_BYTES = STRINGS["user"][1]
MAX_CALLBACK_BYTES = STRINGS["state_cb"][1]


def buffer_size(max_destinations: int, ring_capacity: int) -> int:
    """Bytes a table for ``max_destinations`` needs (two slots per destination)."""
    return HEADER_SIZE + ring_capacity * ENTRY.size + 2 * max_destinations * SLOT_SIZE


class SharedTable(ProbeChains, PingerWrites):
    """Destination records in a shared buffer; see the module docstring.  What only the
    pinger writes (results, pause, the current interval) is in ``ka_core.store.pinger_writes``."""

    def __init__(self, buf: bytearray | memoryview, lock: AbstractContextManager[object]) -> None:
        self._buf = buf if isinstance(buf, memoryview) else memoryview(buf)
        self._lock = lock
        magic, self.capacity, self.max_destinations, _, self.ring_capacity, _, _ = (
            HEADER.unpack_from(self._buf, 0)
        )
        if magic != MAGIC:
            raise ValueError("buffer is not an initialised SharedTable (call format_buffer)")
        self.add_bucket = ratelimit.SharedBucket(
            self._buf[BUCKET_AT : BUCKET_AT + ratelimit.SIZE], lock
        )
        self._ring = Ring(self._buf, HEADER_SIZE, self.ring_capacity)
        self.notes_deletes = False
        """Cluster mode: deletes and flushes also go through the ring (set before fork)."""
        self._slots_at = HEADER_SIZE + self.ring_capacity * ENTRY.size

    @staticmethod
    def format_buffer(
        buf: bytearray | memoryview,
        max_destinations: int,
        ring_capacity: int,
        ping_interval: int = 30,
    ) -> None:
        """Write an empty table header; done once, before fork."""
        if max_destinations < 1 or ring_capacity < 1:
            raise InvalidArgument("max_destinations and ring_capacity must be positive")
        if len(buf) < buffer_size(max_destinations, ring_capacity):
            raise InvalidArgument("buffer too small for the table")
        HEADER.pack_into(
            buf, 0, MAGIC, 2 * max_destinations, max_destinations, 0, ring_capacity, 0, 0
        )
        struct.pack_into("<I", buf, INTERVAL_AT, ping_interval)

    # -- reads -------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return int(HEADER.unpack_from(self._buf, 0)[3])

    def hot(self, slot: int) -> HotRead:
        """(gen, used, state) of a slot without locking: the ``ka_is_alive`` fast path."""
        gen, used, state = HOT.unpack_from(self._buf, self._off(slot))
        return int(gen), int(used), int(state)

    def state_at(self, slot: int) -> State:
        """The state of a slot, without locking (a one-byte read cannot tear)."""
        return State(self.hot(slot)[2])

    def state_flags(self, slot: int) -> tuple[int, int]:
        """(state, flags) without locking: what a SIP worker reads for a reply."""
        state, flags = STATE_FLAGS.unpack_from(self._buf, self._off(slot))
        return int(state), int(flags)

    def interval_ms(self, slot: int) -> int:
        return int(codec.get(self._buf, self._off(slot), "interval_ms"))

    def hot_reader(self, slot: int) -> Callable[[], HotRead]:
        """A ready-made ``hot(slot)`` for a per-process cache: one C call per lookup."""
        return functools.partial(HOT.unpack_from, self._buf, self._off(slot))

    def read(self, slot: int) -> Record:
        off = self._off(slot)
        f = Fixed._make(FIXED.unpack_from(self._buf, off))
        text = {name: self._str(off, name).decode("utf-8", "replace") for name in STRINGS}
        return Record(
            slot=slot,
            gen=f.gen,
            state=State(f.state),
            stopped=bool(f.flags & FLAG_STOPPED),
            paused=bool(f.flags & FLAG_PAUSED),
            failures=f.failures,
            successes=f.successes,
            timeouts=f.timeouts,
            interval_ms=f.interval_ms,
            pings=f.pings,
            replies=f.replies,
            last_code=f.last_code,
            last_checked=f.last_checked,
            last_up=f.last_up,
            last_down=f.last_down,
            rtt_ms=f.rtt_ms,
            rtt_avg_ms=f.rtt_sum / f.replies if f.replies else 0.0,
            rtt_ewma_ms=f.rtt_ewma,
            rtt_max_ms=f.rtt_max,
            next_ping=f.next_ping,
            added=f.added,
            **text,
        )

    def records(self) -> Iterator[Record]:
        """Every used record, newest slot order not guaranteed (callers sort)."""
        for slot in range(self.capacity):
            if self._buf[self._off(slot) + USED_AT] == USED:
                yield self.read(slot)

    def summaries(self, slots: Iterable[int] | None = None) -> list[Summary]:
        """What ``keepalive.list`` shows of every used record (or of those in ``slots``):
        only the fields it prints, so listing 10,000 destinations does not decode every
        string of every slot."""
        out = []
        buf, unpack, at = self._buf, FIXED.unpack_from, self._slots_at
        uri_at, owner_at = STRINGS["uri"][0], STRINGS["owner"][0]
        for slot in range(self.capacity) if slots is None else slots:
            off = at + slot * SLOT_SIZE
            if buf[off + USED_AT] != USED:
                continue
            f = unpack(buf, off)
            uri = bytes(buf[off + uri_at : off + uri_at + f[_I_URI_LEN]]).decode("utf-8", "replace")
            owner_end = off + owner_at + f[_I_OWNER_LEN]
            owner = bytes(buf[off + owner_at : owner_end]).decode("utf-8", "replace")
            out.append(
                Summary(slot, uri, owner, f[_I_STATE], f[_I_CHECKED], f[_I_UP], f[_I_DOWN],
                        f[_I_ADDED])
            )  # fmt: skip
        return out

    def rows(self, fields: Sequence[str], slots: Iterable[int] | None = None) -> list[Row]:
        """``fields`` (fixed fields, strings, ``slot``, ``metrics``) of every used slot, or of
        those in ``slots``: views build their own shapes from these (``ka_core.store.codec``)."""
        every = range(self.capacity) if slots is None else slots
        return codec.read_rows(self._buf, self._slots_at, every, self._lock, fields)

    def get(self, key: str, owner: str) -> Record:
        slot = self.find(key, owner)
        if slot < 0:
            raise UnknownDestination(f"no destination {key} owned by {owner}")
        return self.read(slot)

    # -- writes (any process) ------------------------------------------------------------

    def insert(
        self,
        uri: SipUri,
        owner: str,
        *,
        interval_ms: int,
        wall: float,
        state_cb: str = "",
        response_cb: str = "",
        user: str = "",
        settings: str = "",
        flags: int = 0,
    ) -> tuple[int, int]:
        """Add a destination and tell the pinger; returns (slot, gen).  ``settings``: the
        canonical text of ``ka_core.settings``; ``flags``: ``layout.FLAG_*`` it implies."""
        values = {
            "uri": uri.display,
            "key": uri.key,
            "owner": owner,
            "state_cb": state_cb,
            "response_cb": response_cb,
            "settings": settings,
            "user": user,
        }
        encoded = {name: v.encode("utf-8") for name, v in values.items()}
        for name, data in encoded.items():
            if len(data) > STRINGS[name][1]:
                raise InvalidArgument(f"{name} longer than {STRINGS[name][1]} bytes")
        key_b, owner_b = encoded["key"], encoded["owner"]
        with self._lock:
            free = -1
            for slot in self._chain(key_b):
                off = self._off(slot)
                used = self._buf[off + USED_AT]
                if used == USED:
                    if self._str(off, "key") == key_b and self._str(off, "owner") == owner_b:
                        raise DuplicateDestination(f"{uri.display} already added by {owner}")
                    continue
                if free < 0:
                    free = slot
                if used == EMPTY:
                    break
            count = self.count
            if count >= self.max_destinations or free < 0:
                raise TableFull(f"max_destinations ({self.max_destinations}) reached")
            if self._ring.free() < 1:
                raise TableFull("pinger queue full, try again")
            off = self._off(free)
            gen = (HOT.unpack_from(self._buf, off)[0] + 1) & 0xFFFFFFFF
            self._buf[off : off + SLOT_SIZE] = _ZERO_SLOT
            fixed = list(_NEW_FIXED)  # by index: 100,000 static destinations at start-up
            fixed[_I_GEN], fixed[_I_USED], fixed[_I_FLAGS] = gen, USED, flags
            for name, data in encoded.items():
                fixed[_I_LEN[name]] = len(data)
            fixed[_I_CRC], fixed[_I_INTERVAL] = zlib.crc32(key_b), interval_ms
            fixed[_I_ADDED] = wall
            FIXED.pack_into(self._buf, off, *fixed)
            for name, data in encoded.items():
                at = off + STRINGS[name][0]
                self._buf[at : at + len(data)] = data
            self._set_count(count + 1)
            self._ring.push(RingEntry(KIND_ADDED, 0, free, gen, 0, 0.0, wall))
            return free, gen

    def remove(self, key: str, owner: str) -> Record:
        """Delete one destination; the pinger notices through the generation."""
        with self._lock:
            slot = self.find(key, owner)
            if slot < 0:
                raise UnknownDestination(f"no destination {key} owned by {owner}")
            record = self.read(slot)
            self._free(slot)
            self._note(KIND_REMOVED, slot, record.gen)
            return record

    def remove_slot(self, slot: int, gen: int) -> bool:
        """Delete the destination in ``slot`` only if it is still generation ``gen`` (a DNS
        target whose name went away): a destination added there meanwhile stays."""
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            self._free(slot)
            return True

    def flush(self) -> int:
        """Delete every destination; returns how many there were."""
        with self._lock:
            removed = 0
            for slot in range(self.capacity):
                used = self._buf[self._off(slot) + USED_AT]
                if used == USED:
                    removed += 1
                if used != EMPTY:
                    self._free(slot, to=EMPTY)
            self._set_count(0)
            self._note(KIND_FLUSHED, 0, 0)
            return removed

    def push_reply(
        self, seq: int, code: int, mono: float, wall: float, source: int = 0, local: int = 0
    ) -> bool:
        """Queue a reply seen by a SIP worker for the pinger; False if the ring is full.

        ``source`` is the ``address_tag`` of the reply's source IP (carried in the slot
        field), ``local`` the ``socket_tag`` it arrived on (in the gen field; 0 = not read).
        """
        with self._lock:
            if self._ring.free() < 1:
                return False
            self._ring.push(RingEntry(KIND_REPLY, code, source, local, seq, mono, wall))
            return True

    def drain(self) -> list[RingEntry]:
        """Take every queued entry (pinger only)."""
        with self._lock:
            return self._ring.drain()

    # -- internals -------------------------------------------------------------------------

    def _note(self, kind: int, slot: int, gen: int) -> None:
        """Tell the pinger about a delete (cluster mode replicates it); skipped, never an
        error, when the ring is full (the cluster's digests repair it)."""
        if self.notes_deletes and self._ring.free() > 0:
            self._ring.push(RingEntry(kind, 0, slot, gen, 0, 0.0, 0.0))

    def _free(self, slot: int, to: int = TOMB) -> None:
        off = self._off(slot)
        gen = (HOT.unpack_from(self._buf, off)[0] + 1) & 0xFFFFFFFF
        struct.pack_into("<IB", self._buf, off, gen, to)
        if to == TOMB:
            self._set_count(self.count - 1)
            self._sweep(slot)

    def _set_count(self, count: int) -> None:
        """Every add and delete passes here: it also bumps ``membership``."""
        _U32.pack_into(self._buf, COUNT_AT, count)
        (seen,) = _U32.unpack_from(self._buf, MEMBERSHIP_AT)
        _U32.pack_into(self._buf, MEMBERSHIP_AT, (seen + 1) & 0xFFFFFFFF)

    @property
    def membership(self) -> int:
        """Changes whenever a destination is added or deleted (any process)."""
        return int(_U32.unpack_from(self._buf, MEMBERSHIP_AT)[0])
