"""The destination table, laid out in one shared buffer that every Kamailio process maps.

Theory of operation.  ``kemi`` creates an anonymous ``MAP_SHARED`` mmap and a process-shared
lock before Kamailio forks; every process then wraps the same memory in a ``SharedTable``.
Tests pass a ``bytearray`` and a ``threading.Lock``: this module never knows about fork.

* Records live in dense fixed-size slots, found through an open-addressing hash index keyed
  by the canonical URI (``ka_core.store.chains``): O(1) duplicates and ``ka_is_alive``
  lookups.  A freed slot is reused first (``ka_core.store.slots``); strings too long for the
  slot go to a pool of chunks (``ka_core.store.strings``).
* Every slot has a generation counter, bumped when the slot is taken or freed.  Readers that
  cached a slot (the routing-path cache, the pinger's schedule) compare generations instead of
  holding the lock.
* Writers (add/del/flush from any process, results from the pinger) take the lock.  Readers of
  a single field (``state_of``) do not: a one-byte read cannot tear.
* A bounded ring (``ka_core.store.ring``) carries ``ADDED`` slots and SIP workers' ``REPLY``
  outcomes to the pinger; a full ring makes ``add`` fail cleanly.  Fields: ``store.layout``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ka_core import ratelimit
from ka_core.errors import TableFull, UnknownDestination
from ka_core.events import StateChanged
from ka_core.state import State
from ka_core.store import codec, records, slot_writes
from ka_core.store.codec import USED_AT
from ka_core.store.header import Header, format_buffer
from ka_core.store.header import buffer_size as buffer_size
from ka_core.store.layout import (
    ADOPT,
    BUCKET_AT,
    EMPTY,
    FLAG_PAUSED,
    HEADER,
    HEADER_SIZE,
    HOT,
    MAGIC,
    ROUTE,
    SLOT_SIZE,
    STATE_FLAGS,
    STRINGS,
    USED,
)
from ka_core.store.placement import Placement
from ka_core.store.records import Record
from ka_core.store.ring import (
    KIND_ADDED,
    KIND_FLUSHED,
    KIND_REMOVED,
    KIND_REPLY,
    Ring,
    RingEntry,
)
from ka_core.uri import SipUri

HotRead = tuple[int, int, int]  # (gen, used, state) of a slot
Row = tuple[Any, ...]  # the fields a view asked ``rows`` for, in its order
(_U32, _PINGS_AT), (_F64, _NEXT_PING_AT) = codec.FIELDS["pings"], codec.FIELDS["next_ping"]
MAX_OWNER_BYTES = STRINGS["owner"] - 1
MAX_USER_BYTES = STRINGS["user"]
MAX_CALLBACK_BYTES = STRINGS["state_cb"]
SlotGen = tuple[int, int]
Seed = tuple[SipUri, str, int, int]
"""A start-up destination for ``insert_many``: URI, settings text, flags, interval ms."""


class SharedTable:
    """Destination records in a shared buffer; see the module docstring.  It composes its
    probe ``chains`` (``ka_core.store.chains``) and its ``Ring``; in-place slot writes are
    functions over the bytes (``ka_core.store.slot_writes``), fields come from the codec."""

    def __init__(self, buf: bytearray | memoryview, lock: AbstractContextManager[object]) -> None:
        self._buf = buf if isinstance(buf, memoryview) else memoryview(buf)
        self._lock = lock
        magic, self.capacity, self.max_destinations, _, self.ring_capacity, chunks, _, _ = (
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
        self._placement = Placement(self._buf, self.capacity, self.ring_capacity, chunks)
        self._slots_at = self._placement.slots_at
        self.chains, self.pool = self._placement.chains, self._placement.pool
        self._off = self.chains.off
        self.header = Header(self._buf)

    format_buffer = staticmethod(format_buffer)  # an empty header, once, before fork

    # -- reads -------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self.header.count

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

    def adoption(self, slot: int) -> tuple[int, int, int, int]:
        return ADOPT.unpack_from(self._buf, self._off(slot))  # layout.ADOPT

    def hot_reader(self, slot: int) -> Callable[[], tuple[int, int, int, int]]:
        """(gen, used, state, flags) for a per-process cache: one C call per lookup."""
        return functools.partial(ROUTE.unpack_from, self._buf, self._off(slot))

    def field_reader(self, slot: int, name: str) -> Callable[[], tuple[Any, ...]]:
        """One fixed field (``codec.FIELDS``) unlocked: a routing hint such as ``rtt_ewma``."""
        fmt, at = codec.FIELDS[name]
        return functools.partial(fmt.unpack_from, self._buf, self._off(slot) + at)

    def find(self, key: str, owner: str | None = None) -> int:
        """Slot of the first record with this key (and owner), or -1."""
        return self.chains.find(key, owner)

    def is_used(self, slot: int, gen: int) -> bool:
        g, used, _ = HOT.unpack_from(self._buf, self._slots_at + slot * SLOT_SIZE)
        return bool(g == gen and used == USED)

    def read(self, slot: int) -> Record:
        return records.decode(self._buf, self._off(slot), slot, self.pool)

    def records(self) -> Iterator[Record]:
        """Every used destination, in slot order (callers that want an order sort)."""
        for slot in range(self.capacity):
            if self._buf[self._off(slot) + USED_AT] == USED:
                yield self.read(slot)

    def get(self, key: str, owner: str) -> Record:
        slot = self.find(key, owner)
        if slot < 0:
            raise UnknownDestination(f"no destination {key} owned by {owner}")
        return self.read(slot)

    def rows(self, fields: Sequence[str], slots: Iterable[int] | None = None) -> list[Row]:
        """``fields`` (fixed fields, strings, ``slot``, ``metrics``) of every used slot, or of
        those in ``slots``: views build their own shapes from these (``ka_core.store.codec``)."""
        every = range(self.capacity) if slots is None else slots
        return codec.read_rows(self._buf, self._slots_at, every, self._lock, fields, self.pool)

    def newest_slots(self) -> list[int]:
        """Used slots, the newest added first (ties: the higher slot first), from two columns."""
        used = codec.column(self._buf, self._slots_at, self.capacity, "used")
        added = codec.column(self._buf, self._slots_at, self.capacity, "added")
        slots = [s for s in range(self.capacity - 1, -1, -1) if used[s] == USED]
        slots.sort(key=added.__getitem__, reverse=True)  # stable: ties keep the higher slot first
        return slots

    # -- writes (any process) ------------------------------------------------------------

    def insert(
        self, uri: SipUri, owner: str, *, interval_ms: int, wall: float, state_cb: str = "",
        response_cb: str = "", user: str = "", settings: str = "", flags: int = 0,
    ) -> SlotGen:  # fmt: skip
        """Add a destination and tell the pinger; returns (slot, gen).  ``settings``: the
        canonical text of ``ka_core.settings``; ``flags``: ``layout.FLAG_*`` it implies."""
        strings = (uri.display, uri.key, owner, state_cb, response_cb, settings, user)
        encoded = slot_writes.encode_strings(strings)
        with self._lock:
            count = self.count
            slot, gen = self._fill(encoded, flags, interval_ms, wall, count, 1)
            self.header.write_count(count + 1)
            self._ring.push(RingEntry(KIND_ADDED, 0, slot, gen, 0, 0.0, wall))
            return slot, gen

    def insert_many(self, seeds: Iterable[Seed], owner: str, *, wall: float) -> list[SlotGen]:
        """The start-up list (``registry.add_static``) under one lock: the same slots, records
        and ring entries as one ``insert`` each in order, and the same error at the same item
        (the ones before it added); the count and the ring's head are written once."""
        added: list[SlotGen] = []
        with self._lock:
            count = self.count
            try:
                owner_b = slot_writes.encode_strings(("", "", owner, "", "", "", ""))["owner"]
                for done, (uri, settings, flags, interval_ms) in enumerate(seeds):
                    encoded = slot_writes.seed_strings(uri.display, uri.key, owner_b, settings)
                    slot_gen = self._fill(encoded, flags, interval_ms, wall, count + done, done + 1)
                    added.append(slot_gen)
            finally:
                self.header.write_count(count + len(added), len(added))
                self._ring.push_added(added, wall)
        return added

    def _fill(
        self, encoded: dict[str, bytes], flags: int, interval_ms: int, wall: float, count: int,
        queued: int,
    ) -> SlotGen:  # fmt: skip
        """Place and write a new record (lock held); ``queued``: ring entries taken, its own in."""
        bucket, crc = self._placement.vet(encoded)  # DuplicateDestination first
        if count >= self.max_destinations:
            raise TableFull(f"max_destinations ({self.max_destinations}) reached")
        if self._ring.free() < queued:
            raise TableFull("pinger queue full, try again")
        return self._placement.put(encoded, bucket, crc, flags, interval_ms, wall)

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
                    self._placement.release(slot, to=EMPTY)
            self._placement.reset()
            self.header.write_count(0)
            self._note(KIND_FLUSHED, 0, 0)
            return removed

    def push_reply(
        self, seq: int, code: int, mono: float, wall: float, source: int = 0, local: int = 0
    ) -> bool:
        """Queue a SIP worker's reply (source, local tags: 0 = not read); False if full."""
        with self._lock:
            return self._ring.put(KIND_REPLY, code, source, local, seq, mono, wall)

    def push(self, entry: RingEntry, keep_free: int = 0) -> bool:
        """Queue ``entry`` unless ``keep_free`` or fewer entries are left (``Ring.offer``)."""
        with self._lock:
            return self._ring.offer(entry, keep_free)

    def drain(self) -> list[RingEntry]:
        """Take every queued entry (pinger only)."""
        with self._lock:
            return self._ring.drain()

    # -- probe results (pinger) and the one writer of state ------------------------------

    def record_pings(self, sent: list[tuple[int, int, float]]) -> None:
        """One lock for a step's pings: (slot, gen, next ping) each; deleted ones skipped."""
        buf = self._buf
        with self._lock:
            for slot, gen, next_ping in sent:
                if self.is_used(slot, gen):
                    off = self._off(slot)
                    (pings,) = _U32.unpack_from(buf, off + _PINGS_AT)
                    _U32.pack_into(buf, off + _PINGS_AT, (pings + 1) & 0xFFFFFFFF)
                    _F64.pack_into(buf, off + _NEXT_PING_AT, next_ping)

    def write_state(
        self,
        slot: int,
        gen: int,
        state: State,
        wall: float,
        *,
        code: int = 0,
        rtt_ms: float = 0.0,
        probe: slot_writes.Probe | None = None,
        restored: tuple[float, float] | None = None,
        ejected: slot_writes.Held | None = None,
    ) -> StateChanged | bool:
        """The one way a destination's state is written: probe results, peer reports,
        derived (DNS) states and restored states all pass here, and a change is counted
        here only (``slot_writes.store_state`` writes the bytes and what ``probe``,
        ``restored``, ``ejected`` store).  False when the slot was deleted, the
        ``StateChanged`` when the state changed, else True."""
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            off = self._off(slot)
            old = slot_writes.store_state(
                self._buf, off, state, wall, code, rtt_ms, probe, restored, ejected
            )
            if old == state:
                return True
            uri, owner, callback, user = (
                self.pool.text(off, n).decode("utf-8", "replace")
                for n in ("uri", "owner", "state_cb", "user")
            )
        return StateChanged(uri, owner, State(old), state, callback, user, code, rtt_ms)

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
        successes: int = 0,
        alive: bool | None = None,
    ) -> bool:
        """Store a probe result through ``write_state``; False when the slot was deleted.
        ``alive`` defaults to: the new state is UP or DEGRADED."""
        if alive is None:
            alive = state in (State.UP, State.DEGRADED)
        probe = (failures, successes, stopped, replied, alive)
        written = self.write_state(slot, gen, state, wall, code=code, rtt_ms=rtt_ms, probe=probe)
        return written is not False

    def set_state(
        self, slot: int, gen: int, state: State, wall: float, code: int = 0, rtt_ms: float = 0.0
    ) -> StateChanged | None:
        """Write a state from elsewhere than a probe (a peer's report, a host name's state
        derived from its targets, with the code and RTT that caused it), stamping last
        checked and last up or down; the change, or None when the slot was deleted or the
        state was already that."""
        written = self.write_state(slot, gen, state, wall, code=code, rtt_ms=rtt_ms)
        return written if isinstance(written, StateChanged) else None

    def restore_state(
        self, slot: int, gen: int, state: State, last_checked: float, last_up: float,
        last_down: float,
    ) -> bool:  # fmt: skip
        """Put back a destination's last state from the state file (at start-up, before the
        pinger reads the record), so routing sees it before the first probe; False if the
        slot changed."""
        restored = (last_up, last_down)
        return self.write_state(slot, gen, state, last_checked, restored=restored) is not False

    def fingerprint(self) -> bytes:
        """Changes with any add, delete, state, pause or stop (``slot_writes.fingerprint``)."""
        return slot_writes.fingerprint(self._buf, self._slots_at, self.capacity)

    # -- controls (any process, by RPC; the header's are in ``header``) ------------------

    def flags(self, slot: int) -> int:
        return int(codec.get(self._buf, self._off(slot), "flags"))

    def pause_slot(self, slot: int, gen: int, paused: bool) -> bool:
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            off = self._off(slot)
            flags = codec.get(self._buf, off, "flags") & ~FLAG_PAUSED
            codec.put(self._buf, off, "flags", flags | (FLAG_PAUSED if paused else 0))
            self.header.bump_controls()
            return True

    def set_ping_interval(self, seconds: int) -> int:
        """Set it, and the interval of every destination without its own; returns how many
        destinations follow it.  They take it from their next ping on."""
        with self._lock:
            self.header.write_ping_interval(seconds)
            changed = slot_writes.follow_interval(self._buf, self._slots_at, self.capacity, seconds)
            self.header.bump_controls()
        return changed

    def _note(self, kind: int, slot: int, gen: int) -> None:
        """Tell the pinger about a delete (cluster mode replicates it); skipped, never an
        error, when the ring is full (the cluster's digests repair it)."""
        if self.notes_deletes and self._ring.free() > 0:
            self._ring.push(RingEntry(kind, 0, slot, gen, 0, 0.0, 0.0))

    def _free(self, slot: int) -> None:
        self.header.write_count(self.count - 1)
        self._placement.release(slot)
