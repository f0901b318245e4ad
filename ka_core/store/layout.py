"""Byte layout of the shared table: header, slot fields, index and string pool, named once.

Every other module reads and writes fields by these names; ``SLOT_FIELDS`` lists the fixed
fields once, and ``FIXED`` (the struct) and ``FIELD_NAMES`` are derived from it.

The buffer: the header, the ring, ``max_destinations`` dense slots of ``SLOT_SIZE``, the hash
index (``BUCKETS_PER_SLOT`` buckets per slot), the stack of freed slots (a u32 each), then the
pool of ``CHUNK_SIZE`` string chunks (``ka_core.store.strings``).
"""

from __future__ import annotations

import bisect
import struct

MAGIC = 0x324B414B  # "KAK2": dense slots, a hash index and a string pool
HEADER = struct.Struct("<IIIIIIQQ")  # magic, capacity, max, count, ring_cap, chunks, head, tail
HEADER_SIZE = 128
COUNT_AT = 12
RING_POS_AT = 24
BUCKET_AT = HEADER.size  # then the RPC add rate bucket (ka_core/ratelimit.py)
PAUSED_AT = 56  # u8: 1 while all probing is paused (keepalive.pause)
CONTROLS_AT = 58  # u16: bumped by every per-destination pause and interval change
INTERVAL_AT = 60  # u32: the current ping_interval in seconds (keepalive.interval)
PINGER = struct.Struct("<ddI")
"""The pinger's own health, written by it each step: loop lag, max lag (10 s), in flight."""
PINGER_AT = 64
MEMBERSHIP_AT = 88  # u32: bumped by every add and delete (cached list orders check it)
LIFE = struct.Struct("<Id")
"""The pinger's life (``ka_core.probe.liveness``): its status and the monotonic time of its last
step, so the main process sees it start and SIP workers see it stop."""
LIFE_AT = 96
FREE_SLOTS = struct.Struct("<II")
"""Where a new slot comes from (``ka_core.store.slots``): slots ever taken, freed ones stacked."""
FREE_SLOTS_AT = 108
POOL = struct.Struct("<III")
"""The string pool's (``ka_core.store.strings``): chunks ever taken, the first free chunk
(1-based, 0 = none), chunks in use."""
POOL_AT = 116

SLOT_SIZE = 384
SLOT_FIELDS: tuple[tuple[str, str], ...] = (
    # (name, struct code) in slot order; "" is padding.  A new field takes padding or goes
    # at the end (the check below keeps the fields clear of the metrics).
    ("gen", "I"), ("used", "B"), ("state", "B"), ("flags", "B"), ("ejections", "B"),
    ("uri_len", "H"), ("key_len", "H"), ("owner_len", "H"), ("state_cb_len", "H"),
    ("response_cb_len", "H"), ("settings_len", "H"), ("user_len", "H"), ("last_code", "H"),
    ("crc", "I"), ("failures", "I"), ("successes", "I"), ("timeouts", "I"),
    ("interval_ms", "I"), ("pings", "I"), ("replies", "I"), ("out_until", "I"),
    ("last_checked", "d"), ("last_up", "d"), ("last_down", "d"), ("rtt_ms", "d"),
    ("next_ping", "d"), ("added", "d"), ("rtt_sum", "d"), ("rtt_ewma", "d"), ("rtt_max", "d"),
    ("chunk", "I"),
)  # fmt: skip
"""The fixed-size fields at the start of a slot: the one place a field is named.
``ejections``: times passive health ejected it (``ka_core.probe.outlier``), at most 127,
the top bit (``EJECTED_BY_RETRY_AFTER``) set while the hold in force is a Retry-After's;
``out_until``: the wall-clock second an ejection ends (``FLAG_EJECTED``), 0 = none;
``key_len`` 0: the key is the URI (stored once); ``chunk``: the first pool chunk of the
strings that do not fit inline (1-based, 0 = none)."""
FIXED = struct.Struct("<" + "".join(code for _, code in SLOT_FIELDS))
FIELD_NAMES = tuple(name for name, _ in SLOT_FIELDS if name)
"""The names of ``FIXED``'s values, in order."""


STRINGS = {  # name -> the most bytes it may take (the limits users see)
    "uri": 256,
    "key": 272,
    "owner": 64,
    "state_cb": 128,
    "response_cb": 128,
    "settings": 256,
    "user": 256,
}
"""A slot's strings, stored one after the other in this order (the key only when it is not
the URI): the first ``INLINE_SIZE`` bytes in the slot, the rest in pool chunks."""
METRICS = struct.Struct("<16I")
"""Counters for /metrics after the fixed fields: replies per code class (``CODE_CLASSES``), replies
per RTT bucket (``RTT_BUCKETS_MS``), state changes."""
RTT_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
"""Upper bounds of the round-trip histogram (ms); an RTT above the last one is only in +Inf."""
CODE_CLASSES = ("2xx", "3xx", "4xx", "5xx", "6xx")


def rtt_bucket(rtt_ms: float) -> int:
    """Index of the first bucket holding ``rtt_ms``; ``len(RTT_BUCKETS_MS)`` = above all."""
    return bisect.bisect_left(RTT_BUCKETS_MS, rtt_ms)


def code_class(code: int) -> int:
    """Index into ``CODE_CLASSES`` of a final reply code (-1 for anything else)."""
    return code // 100 - 2 if 200 <= code <= 699 else -1


METRICS_AT = 132
INLINE_AT = METRICS_AT + METRICS.size
INLINE_SIZE = SLOT_SIZE - INLINE_AT
"""The strings' first bytes, in the slot: a typical URI, its key and owner fit."""
CHUNK_SIZE = 128
CHUNK_DATA = CHUNK_SIZE - 4
"""A pool chunk: the next chunk of the same strings (u32, 1-based, 0 = last), then data."""
BUCKET = struct.Struct("<II")
"""An index bucket: (crc32 of the key, slot + 1); slot 0 = empty, ``BUCKET_TOMB`` = deleted."""
BUCKET_TOMB = 0xFFFFFFFF
BUCKETS_PER_SLOT = 2
LENGTHS = struct.Struct("<4xB3xHHH")
"""(used, uri_len, key_len, owner_len): what a lookup compares a candidate by, in one read."""
HOT = struct.Struct("<IBB")
"""(gen, used, state): the first fields, read together on the routing path."""
ROUTE = struct.Struct("<IBBB")
"""(gen, used, state, flags): what ``ka_is_alive`` reads (an ejection is a flag)."""
STATE_FLAGS = struct.Struct("<5xBB")
"""(state, flags): what a SIP worker reads for each reply to a ping."""

EMPTY, USED, TOMB = 0, 1, 2
"""Values of ``used``."""
FLAG_STOPPED = 1
FLAG_CUSTOM_POLICY = 2
"""Health settings of its own: ``state.changes_state`` (C's rule) does not predict its
changes, so SIP workers never wake the pinger for its replies (applied at the next tick)."""
FLAG_SOCKET = 4
"""A ``socket`` setting: the worker tags replies with the socket they arrived on."""
FLAG_PAUSED = 8
FLAG_OWN_INTERVAL = 16
"""An ``interval`` setting: ``keepalive.interval`` leaves this destination alone."""
FLAG_NAME = 32
"""A host name resolved by ka-kemi (``KA_DNS 1``): never pinged itself, its state is derived
from its targets' (``ka_core.names.resolve``)."""
FLAG_TARGET = 64
"""An address a name resolved to, added and removed by ka-kemi (``kemi.dns_resolver``)."""
FLAG_EJECTED = 128
"""Held out by real traffic (passive health, ``ka_core.probe.outlier``): the state is DOWN
and ``ka_is_alive`` answers ``EJECTED_VALUE`` (or 2); only ``store_state`` sets it."""
EJECTED_BY_RETRY_AFTER = 128
"""In ``ejections``: the hold in force came from a Retry-After header."""


def index(name: str) -> int:
    """Position of field ``name`` in a ``FIXED`` tuple."""
    return FIELD_NAMES.index(name)


def _offsets() -> dict[str, int]:
    at, out = 0, {}
    for name, code in SLOT_FIELDS:
        if name:
            out[name] = at
        at += struct.calcsize("<" + code)
    return out


_OFFSETS = _offsets()


def offset(name: str) -> int:
    """Byte offset of field ``name`` in a slot, to update one field in place."""
    return _OFFSETS[name]


ADOPT = struct.Struct(f"<IB{offset('flags') - 5}xB{offset('interval_ms') - offset('flags') - 1}xI")
"""(gen, used, flags, interval_ms): what the pinger adopts an added slot by, in one read."""


def length_field(name: str) -> int:
    """Index of the length of string ``name``."""
    return index(f"{name}_len")


if (
    HEADER.size + 16 > PAUSED_AT
    or INTERVAL_AT + 4 > PINGER_AT
    or PINGER_AT + PINGER.size > MEMBERSHIP_AT
    or MEMBERSHIP_AT + 4 > LIFE_AT
    or LIFE_AT + LIFE.size > FREE_SLOTS_AT
    or FREE_SLOTS_AT + FREE_SLOTS.size > POOL_AT
    or POOL_AT + POOL.size > HEADER_SIZE
    or FIXED.size > METRICS_AT
    or INLINE_SIZE < 128
    or LENGTHS.unpack(FIXED.pack(*range(len(FIELD_NAMES)))[: LENGTHS.size])
    != tuple(index(n) for n in ("used", "uri_len", "key_len", "owner_len"))
    or len(CODE_CLASSES) + len(RTT_BUCKETS_MS) + 1 != METRICS.size // 4
):
    raise AssertionError("layout overlaps")
