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
* A ring of 32-byte entries carries what the pinger must learn: ``ADDED`` slots and ``REPLY``
  outcomes seen by SIP workers.  It is bounded; a full ring makes ``add`` fail cleanly.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ka_core import ratelimit
from ka_core.errors import DuplicateDestination, InvalidArgument, TableFull, UnknownDestination
from ka_core.state import State
from ka_core.uri import SipUri

MAGIC = 0x314B414B  # "KAK1"
HEADER = struct.Struct("<IIIIIxxxxQQ")  # magic, capacity, max, count, ring_cap, head, tail
HEADER_SIZE = 64
_BUCKET_AT = HEADER.size  # then the RPC add rate bucket (ka_core/ratelimit.py)
RING_ENTRY = struct.Struct("<BxHIIIdd")  # kind, code, slot, gen, seq, mono, wall
FIXED = struct.Struct("<IBBBBHBBB3xHHIIIIIdddddd")
SLOT_SIZE = 1280
_STR_FIELDS = (  # name, offset, capacity in bytes
    ("uri", 96, 256),
    ("key", 352, 272),
    ("owner", 624, 64),
    ("state_cb", 688, 128),
    ("response_cb", 816, 128),
    ("user", 944, 256),
)
_STR_AT = {name: (off, cap) for name, off, cap in _STR_FIELDS}
_LEN_INDEX = {"uri": 4, "key": 5, "owner": 6, "state_cb": 7, "response_cb": 8, "user": 9}
_HOT = struct.Struct("<IBB")  # gen, used, state: the routing-path read
_U32, _F64 = struct.Struct("<I"), struct.Struct("<d")


def _field_offset(index: int) -> int:
    """Byte offset of field ``index`` of ``FIXED``, so one field can be updated in place."""
    offset = field = 0
    repeat = ""
    for code in FIXED.format.lstrip("<"):
        if code.isdigit():
            repeat += code
            continue
        count, repeat = int(repeat or 1), ""
        if code == "x":
            offset += count
            continue
        for _ in range(count):
            if field == index:
                return offset
            offset += struct.calcsize("<" + code)
            field += 1
    raise IndexError(index)


_INTERVAL_AT, _PINGS_AT, _NEXT_PING_AT = _field_offset(13), _field_offset(14), _field_offset(20)
_EMPTY, _USED, _TOMB = 0, 1, 2
_FLAG_STOPPED = 1

KIND_ADDED = 1
KIND_REPLY = 2
MAX_OWNER_BYTES = _STR_AT["owner"][1] - 1
MAX_USER_BYTES = _STR_AT["user"][1]
MAX_CALLBACK_BYTES = _STR_AT["state_cb"][1]


class Summary(NamedTuple):
    """The ``keepalive.list`` view of a record (``state`` as the raw table value)."""

    slot: int
    uri: str
    owner: str
    state: int
    last_checked: float
    last_up: float
    last_down: float
    added: float


class Lock(Protocol):
    def __enter__(self) -> object: ...
    def __exit__(self, *exc: object) -> bool | None: ...


@dataclass(frozen=True, slots=True)
class Record:
    """A snapshot of one destination, as RPC and the API show it."""

    slot: int
    gen: int
    uri: str
    key: str
    owner: str
    state: State
    stopped: bool
    failures: int
    interval_ms: int
    pings: int
    replies: int
    last_code: int
    last_checked: float
    last_up: float
    last_down: float
    rtt_ms: float
    next_ping: float
    added: float
    state_cb: str
    response_cb: str
    user: str


@dataclass(frozen=True, slots=True)
class RingEntry:
    kind: int
    code: int
    slot: int
    gen: int
    seq: int
    mono: float
    wall: float


def ring_capacity_for(max_destinations: int) -> int:
    """Ring entries for a table of ``max_destinations``.

    Between two drains (one 100 ms tick, longer only if the pinger stalls) the ring takes at
    most one ADDED entry per slot filled and the replies to pending pings, of which there is
    at most one per destination (two if a UDP retransmission is answered too); the rest is
    headroom for add/delete churn.  A fixed 64 Ki entries (2 MiB) made small tables cost
    20 KB per destination.
    """
    return 4 * max_destinations + 1024


def buffer_size(max_destinations: int, ring_capacity: int) -> int:
    """Bytes a table for ``max_destinations`` needs (two slots per destination)."""
    return HEADER_SIZE + ring_capacity * RING_ENTRY.size + 2 * max_destinations * SLOT_SIZE


class SharedTable:
    """Destination records in a shared buffer; see the module docstring."""

    def __init__(self, buf: bytearray | memoryview, lock: AbstractContextManager[object]) -> None:
        self._buf = buf if isinstance(buf, memoryview) else memoryview(buf)
        self._lock = lock
        magic, self.capacity, self.max_destinations, _, self.ring_capacity, _, _ = (
            HEADER.unpack_from(self._buf, 0)
        )
        if magic != MAGIC:
            raise ValueError("buffer is not an initialised SharedTable (call format_buffer)")
        self.add_bucket = ratelimit.SharedBucket(
            self._buf[_BUCKET_AT : _BUCKET_AT + ratelimit.SIZE], lock
        )
        self._ring_at = HEADER_SIZE
        self._slots_at = HEADER_SIZE + self.ring_capacity * RING_ENTRY.size

    @staticmethod
    def format_buffer(
        buf: bytearray | memoryview, max_destinations: int, ring_capacity: int
    ) -> None:
        """Write an empty table header; done once, before fork."""
        if max_destinations < 1 or ring_capacity < 1:
            raise InvalidArgument("max_destinations and ring_capacity must be positive")
        if len(buf) < buffer_size(max_destinations, ring_capacity):
            raise InvalidArgument("buffer too small for the table")
        HEADER.pack_into(
            buf, 0, MAGIC, 2 * max_destinations, max_destinations, 0, ring_capacity, 0, 0
        )

    # -- reads -------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return int(HEADER.unpack_from(self._buf, 0)[3])

    def find(self, key: str, owner: str | None = None) -> int:
        """Slot of the first record with this key (and owner), or -1."""
        key_b = key.encode()
        owner_b = None if owner is None else owner.encode()
        for slot in self._chain(key_b):
            off = self._off(slot)
            used = self._buf[off + 4]
            if used == _EMPTY:
                return -1
            if (
                used == _USED
                and self._str(off, "key") == key_b
                and (owner_b is None or self._str(off, "owner") == owner_b)
            ):
                return slot
        return -1

    def hot(self, slot: int) -> tuple[int, int, int]:
        """(gen, used, state) of a slot without locking: the ``ka_is_alive`` fast path."""
        gen, used, state = _HOT.unpack_from(self._buf, self._off(slot))
        return int(gen), int(used), int(state)

    def interval_ms(self, slot: int) -> int:
        return int(_U32.unpack_from(self._buf, self._off(slot) + _INTERVAL_AT)[0])

    def hot_reader(self, slot: int) -> Callable[[], tuple[int, int, int]]:
        """A ready-made ``hot(slot)`` for a per-process cache: one C call per lookup."""
        return functools.partial(_HOT.unpack_from, self._buf, self._off(slot))

    def is_used(self, slot: int, gen: int) -> bool:
        g, used, _ = self.hot(slot)
        return g == gen and used == _USED

    def read(self, slot: int) -> Record:
        off = self._off(slot)
        f = FIXED.unpack_from(self._buf, off)
        text = {name: self._str(off, name).decode("utf-8", "replace") for name, _, _ in _STR_FIELDS}
        return Record(
            slot=slot,
            gen=f[0],
            state=State(f[2]),
            stopped=bool(f[3] & _FLAG_STOPPED),
            failures=f[12],
            interval_ms=f[13],
            pings=f[14],
            replies=f[15],
            last_code=f[10],
            last_checked=f[16],
            last_up=f[17],
            last_down=f[18],
            rtt_ms=f[19],
            next_ping=f[20],
            added=f[21],
            **text,
        )

    def records(self) -> Iterator[Record]:
        """Every used record, newest slot order not guaranteed (callers sort)."""
        for slot in range(self.capacity):
            if self._buf[self._off(slot) + 4] == _USED:
                yield self.read(slot)

    def summaries(self) -> list[Summary]:
        """What ``keepalive.list`` shows of every used record: only the fields it prints,
        so listing 10,000 destinations does not decode every string of every slot."""
        out = []
        buf, unpack, at = self._buf, FIXED.unpack_from, self._slots_at
        uri_at, owner_at = _STR_AT["uri"][0], _STR_AT["owner"][0]
        for slot in range(self.capacity):
            off = at + slot * SLOT_SIZE
            if buf[off + 4] != _USED:
                continue
            f = unpack(buf, off)
            uri = bytes(buf[off + uri_at : off + uri_at + f[4]]).decode("utf-8", "replace")
            owner = bytes(buf[off + owner_at : off + owner_at + f[6]]).decode("utf-8", "replace")
            out.append(Summary(slot, uri, owner, f[2], f[16], f[17], f[18], f[21]))
        return out

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
    ) -> tuple[int, int]:
        """Add a destination and tell the pinger; returns (slot, gen)."""
        values = {
            "uri": uri.display,
            "key": uri.key,
            "owner": owner,
            "state_cb": state_cb,
            "response_cb": response_cb,
            "user": user,
        }
        encoded = {name: v.encode("utf-8") for name, v in values.items()}
        for name, data in encoded.items():
            if len(data) > _STR_AT[name][1]:
                raise InvalidArgument(f"{name} longer than {_STR_AT[name][1]} bytes")
        key_b, owner_b = encoded["key"], encoded["owner"]
        with self._lock:
            free = -1
            for slot in self._chain(key_b):
                off = self._off(slot)
                used = self._buf[off + 4]
                if used == _USED:
                    if self._str(off, "key") == key_b and self._str(off, "owner") == owner_b:
                        raise DuplicateDestination(f"{uri.display} already added by {owner}")
                    continue
                if free < 0:
                    free = slot
                if used == _EMPTY:
                    break
            count = self.count
            if count >= self.max_destinations or free < 0:
                raise TableFull(f"max_destinations ({self.max_destinations}) reached")
            if self._ring_free() < 1:
                raise TableFull("pinger queue full, try again")
            off = self._off(free)
            gen = (FIXED.unpack_from(self._buf, off)[0] + 1) & 0xFFFFFFFF
            self._buf[off : off + SLOT_SIZE] = bytes(SLOT_SIZE)
            FIXED.pack_into(
                self._buf, off, gen, _USED, State.UNKNOWN, 0,
                len(encoded["uri"]), len(key_b), len(owner_b),
                len(encoded["state_cb"]), len(encoded["response_cb"]), len(encoded["user"]),
                0, zlib.crc32(key_b), 0, interval_ms, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, wall,
            )  # fmt: skip
            for name, data in encoded.items():
                at = off + _STR_AT[name][0]
                self._buf[at : at + len(data)] = data
            self._set_count(count + 1)
            self._ring_push(RingEntry(KIND_ADDED, 0, free, gen, 0, 0.0, wall))
            return free, gen

    def remove(self, key: str, owner: str) -> Record:
        """Delete one destination; the pinger notices through the generation."""
        with self._lock:
            slot = self.find(key, owner)
            if slot < 0:
                raise UnknownDestination(f"no destination {key} owned by {owner}")
            record = self.read(slot)
            self._free(slot)
            return record

    def flush(self) -> int:
        """Delete every destination; returns how many there were."""
        with self._lock:
            removed = 0
            for slot in range(self.capacity):
                used = self._buf[self._off(slot) + 4]
                if used == _USED:
                    removed += 1
                if used != _EMPTY:
                    self._free(slot, to=_EMPTY)
            self._set_count(0)
            return removed

    def push_reply(self, seq: int, code: int, mono: float, wall: float, source: int = 0) -> bool:
        """Queue a reply seen by a SIP worker for the pinger; False if the ring is full.

        ``source`` is the ``address_tag`` of the reply's source IP (carried in the slot field).
        """
        with self._lock:
            if self._ring_free() < 1:
                return False
            self._ring_push(RingEntry(KIND_REPLY, code, source, 0, seq, mono, wall))
            return True

    def drain(self) -> list[RingEntry]:
        """Take every queued entry (pinger only)."""
        with self._lock:
            head, tail = self._ring_pos()
            entries = []
            for i in range(tail, head):
                at = self._ring_at + (i % self.ring_capacity) * RING_ENTRY.size
                entries.append(RingEntry(*RING_ENTRY.unpack_from(self._buf, at)))
            self._set_ring_pos(head, head)
            return entries

    # -- writes (pinger only) --------------------------------------------------------------

    def record_ping(self, slot: int, gen: int, next_ping: float) -> bool:
        """Count a ping sent; False when the slot was deleted meanwhile."""
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            off = self._off(slot)
            (pings,) = _U32.unpack_from(self._buf, off + _PINGS_AT)
            _U32.pack_into(self._buf, off + _PINGS_AT, (pings + 1) & 0xFFFFFFFF)
            _F64.pack_into(self._buf, off + _NEXT_PING_AT, next_ping)
            return True

    def record_result(
        self,
        slot: int,
        gen: int,
        *,
        state: State,
        failures: int,
        stopped: bool,
        code: int,
        wall: float,
        rtt_ms: float,
        replied: bool,
    ) -> bool:
        """Store a probe result; False when the slot was deleted meanwhile."""
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            off = self._off(slot)
            f = list(FIXED.unpack_from(self._buf, off))
            f[2] = int(state)
            f[3] = (f[3] & ~_FLAG_STOPPED) | (_FLAG_STOPPED if stopped else 0)
            f[10] = code
            f[12] = failures
            f[15] += 1 if replied else 0
            f[16] = wall
            if state is State.UP:
                f[17] = wall
            else:
                f[18] = wall
            if replied:
                f[19] = rtt_ms
            FIXED.pack_into(self._buf, off, *f)
            return True

    # -- internals -------------------------------------------------------------------------

    def _off(self, slot: int) -> int:
        return int(self._slots_at + slot * SLOT_SIZE)

    def _chain(self, key_b: bytes) -> Iterator[int]:
        start = zlib.crc32(key_b) % self.capacity
        for i in range(self.capacity):
            yield (start + i) % self.capacity

    def _str(self, off: int, name: str) -> bytes:
        at, _ = _STR_AT[name]
        length = FIXED.unpack_from(self._buf, off)[_LEN_INDEX[name]]
        return bytes(self._buf[off + at : off + at + length])

    def _free(self, slot: int, to: int = _TOMB) -> None:
        off = self._off(slot)
        gen = (FIXED.unpack_from(self._buf, off)[0] + 1) & 0xFFFFFFFF
        struct.pack_into("<IB", self._buf, off, gen, to)
        if to == _TOMB:
            self._set_count(self.count - 1)

    def _set_count(self, count: int) -> None:
        struct.pack_into("<I", self._buf, 12, count)

    def _ring_pos(self) -> tuple[int, int]:
        head, tail = struct.unpack_from("<QQ", self._buf, 24)
        return int(head), int(tail)

    def _set_ring_pos(self, head: int, tail: int) -> None:
        struct.pack_into("<QQ", self._buf, 24, head, tail)

    def _ring_free(self) -> int:
        head, tail = self._ring_pos()
        return int(self.ring_capacity) - (head - tail)

    def _ring_push(self, entry: RingEntry) -> None:
        head, tail = self._ring_pos()
        at = self._ring_at + (head % self.ring_capacity) * RING_ENTRY.size
        RING_ENTRY.pack_into(
            self._buf, at, entry.kind, entry.code, entry.slot, entry.gen, entry.seq,
            entry.mono, entry.wall,
        )  # fmt: skip
        self._set_ring_pos(head + 1, tail)
