"""Byte layout of the shared table: header, slot fields and string areas, named once.

Every other module reads and writes fields by these names; ``FIXED`` is the one struct
format, and ``Fixed`` names its values in the same order.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

MAGIC = 0x314B414B  # "KAK1"
HEADER = struct.Struct("<IIIIIxxxxQQ")  # magic, capacity, max, count, ring_cap, head, tail
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

SLOT_SIZE = 1552
FIXED = struct.Struct("<IBBBBHHHHHHHHIIIIIIIIddddddddd")


class Fixed(NamedTuple):
    """The fixed-size fields at the start of a slot, in ``FIXED`` order."""

    gen: int
    used: int
    state: int
    flags: int
    ejections: int
    """Times passive health ejected it (``ka_core.probe.outlier``), at most 127; the top
    bit (``EJECTED_BY_RETRY_AFTER``) says the current hold is a Retry-After's."""
    uri_len: int
    key_len: int
    owner_len: int
    state_cb_len: int
    response_cb_len: int
    settings_len: int
    user_len: int
    last_code: int
    crc: int
    failures: int
    successes: int
    timeouts: int
    interval_ms: int
    pings: int
    replies: int
    out_until: int
    """Wall-clock second an ejection ends (``FLAG_EJECTED``); 0 = none."""
    last_checked: float
    last_up: float
    last_down: float
    rtt_ms: float
    next_ping: float
    added: float
    rtt_sum: float
    rtt_ewma: float
    rtt_max: float


STRINGS = {  # name -> (offset in the slot, capacity in bytes)
    "uri": (128, 256),
    "key": (384, 272),
    "owner": (656, 64),
    "state_cb": (720, 128),
    "response_cb": (848, 128),
    "settings": (976, 256),
    "user": (1232, 256),
}
METRICS = struct.Struct("<16I")
"""Counters for /metrics after the strings: replies per code class (``CODE_CLASSES``), replies
per RTT bucket (``RTT_BUCKETS_MS``), state changes."""
RTT_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
"""Upper bounds of the round-trip histogram (ms); an RTT above the last one is only in +Inf."""
CODE_CLASSES = ("2xx", "3xx", "4xx", "5xx", "6xx")


def rtt_bucket(rtt_ms: float) -> int:
    """Index of the first bucket holding ``rtt_ms``; ``len(RTT_BUCKETS_MS)`` = above all."""
    for i, bound in enumerate(RTT_BUCKETS_MS):
        if rtt_ms <= bound:
            return i
    return len(RTT_BUCKETS_MS)


def code_class(code: int) -> int:
    """Index into ``CODE_CLASSES`` of a final reply code (-1 for anything else)."""
    return code // 100 - 2 if 200 <= code <= 699 else -1


METRICS_AT = 1488
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
EJECTED_BY_RETRY_AFTER = 128
"""In ``ejections``: the hold in force came from a Retry-After header."""
FLAG_EJECTED = 128
"""Held out by real traffic (passive health, ``ka_core.probe.outlier``): the state is DOWN
and ``ka_is_alive`` answers ``EJECTED_VALUE`` (or 2); only ``write_state`` sets it."""


def index(name: str) -> int:
    """Position of field ``name`` in a ``FIXED`` tuple."""
    return Fixed._fields.index(name)


def offset(name: str) -> int:
    """Byte offset of field ``name`` in a slot, to update one field in place."""
    wanted, at, field = index(name), 0, 0
    repeat = ""
    for code in FIXED.format.lstrip("<"):
        if code.isdigit():
            repeat += code
            continue
        count, repeat = int(repeat or 1), ""
        if code == "x":
            at += count
            continue
        for _ in range(count):
            if field == wanted:
                return at
            at += struct.calcsize("<" + code)
            field += 1
    raise KeyError(name)


def length_field(name: str) -> int:
    """Index of the length of string ``name``."""
    return index(f"{name}_len")


if len(Fixed._fields) != len(FIXED.unpack(bytes(FIXED.size))):
    raise AssertionError("Fixed and FIXED disagree")
if (
    HEADER.size + 16 > PAUSED_AT
    or INTERVAL_AT + 4 > PINGER_AT
    or PINGER_AT + PINGER.size > MEMBERSHIP_AT
    or MEMBERSHIP_AT + 4 > LIFE_AT
    or LIFE_AT + LIFE.size > HEADER_SIZE
    or FIXED.size > min(off for off, _ in STRINGS.values())
    or max(off + size for off, size in STRINGS.values()) > METRICS_AT
    or METRICS_AT + METRICS.size > SLOT_SIZE
    or len(CODE_CLASSES) + len(RTT_BUCKETS_MS) + 1 != METRICS.size // 4
):
    raise AssertionError("layout overlaps")
