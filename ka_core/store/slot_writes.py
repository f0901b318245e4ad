"""What changes a slot's bytes in place, as functions over the buffer: a new destination
(``fill``), the one write of a destination's state (``store_state``), the interval sweep of
``keepalive.interval``, and the state file's fingerprint (a read).  ``SharedTable`` calls these with
its lock held; they know bytes and the layout, never the table.
"""

from __future__ import annotations

from ka_core.errors import InvalidArgument
from ka_core.state import State
from ka_core.store import codec
from ka_core.store.layout import (
    CODE_CLASSES,
    EJECTED_BY_RETRY_AFTER,
    FIXED,
    FLAG_EJECTED,
    FLAG_OWN_INTERVAL,
    FLAG_STOPPED,
    INLINE_AT,
    INLINE_SIZE,
    METRICS,
    METRICS_AT,
    RTT_BUCKETS_MS,
    SLOT_SIZE,
    STRINGS,
    USED,
    code_class,
    index,
    offset,
    rtt_bucket,
)

EWMA_WEIGHT = 0.2
"""Weight of the newest round trip in ``rtt_ewma`` (about the last 5 replies)."""
Probe = tuple[int, int, bool, bool, bool]
"""(failures, successes, stopped, replied, alive) of a probe result."""
Held = tuple[bool, int, int, bool]
"""(held out, times ejected, wall second it ends, by a Retry-After) of passive health."""
# store_state runs once per ping: positions as constants, not dict lookups
(_STATE, _FLAGS, _CODE, _FAILURES, _SUCCESSES, _TIMEOUTS, _REPLIES, _CHECKED, _UP, _DOWN,
 _RTT, _RTT_SUM, _EWMA, _RTT_MAX) = (index(n) for n in (
    "state", "flags", "last_code", "failures", "successes", "timeouts", "replies",
    "last_checked", "last_up", "last_down", "rtt_ms", "rtt_sum", "rtt_ewma", "rtt_max",
))  # fmt: skip
_EJECTIONS, _OUT_UNTIL = index("ejections"), index("out_until")
_GEN, _USED, _NEW_FLAGS, _CRC, _INTERVAL, _ADDED, _CHUNK = (
    index(n) for n in ("gen", "used", "flags", "crc", "interval_ms", "added", "chunk")
)
_LEN = tuple(index(f"{name}_len") for name in STRINGS)
if tuple(range(_LEN[0], _LEN[0] + len(_LEN))) != _LEN:
    raise AssertionError("the string lengths are not contiguous in FIXED")
_NEW_FIXED = tuple(FIXED.unpack(bytes(FIXED.size)))
"""A fresh record's fixed fields: zeros, state UNKNOWN (0)."""
_ZERO_SLOT = bytes(SLOT_SIZE)
_CHANGES = METRICS.size // 4 - 1
"""The last /metrics counter of a slot counts its state changes."""
# the fingerprint reads gen, used, state, flags and ejections as a slot's first 8-byte word
assert offset("ejections") + 1 == 8 and SLOT_SIZE % 8 == 0


def store_state(
    buf: memoryview,
    off: int,
    state: State,
    wall: float,
    code: int,
    rtt_ms: float,
    probe: Probe | None,
    restored: tuple[float, float] | None,
    ejected: Held | None = None,
) -> int:
    """Write ``state`` into the slot at ``off`` (lock held, slot checked): the only write
    of a state field; returns the state it replaced.

    ``probe`` = (failures, successes, stopped, replied, alive) of a probe result: it also
    stores the code, the streaks, the round trip and the /metrics counters; ``alive``
    chooses between ``last_up`` and ``last_down``.  ``restored`` = (last_up, last_down)
    from the state file: put back as they were, not counted as a change.  Otherwise last
    up or down is stamped from the state (UNKNOWN stamps neither).  ``ejected``: passive
    health's fields and ``FLAG_EJECTED`` (``ka_core.probe.outlier``); None keeps them."""
    f = list(FIXED.unpack_from(buf, off))  # by index: once per probe result
    old: int = f[_STATE]
    changed = old != state
    replied = probe is not None and probe[3]
    if replied or changed:  # the /metrics counters: one read and one write
        m = list(METRICS.unpack_from(buf, off + METRICS_AT))
        counted = [_CHANGES] if changed and restored is None else []
        if replied:
            if (cls := code_class(code)) >= 0:
                counted.append(cls)
            if (bucket := rtt_bucket(rtt_ms)) < len(RTT_BUCKETS_MS):
                counted.append(len(CODE_CLASSES) + bucket)
        for at in counted:
            m[at] = (m[at] + 1) & 0xFFFFFFFF
        METRICS.pack_into(buf, off + METRICS_AT, *m)
    f[_STATE], f[_CHECKED] = state, wall
    if ejected is not None:
        out, count, f[_OUT_UNTIL], retry = ejected
        f[_EJECTIONS] = min(count, 127) | (EJECTED_BY_RETRY_AFTER if retry else 0)
        f[_FLAGS] = (f[_FLAGS] & ~FLAG_EJECTED) | (FLAG_EJECTED if out else 0)
    if probe is not None:
        failures, successes, stopped, replied, alive = probe
        f[_FLAGS] = (f[_FLAGS] & ~FLAG_STOPPED) | (FLAG_STOPPED if stopped else 0)
        f[_CODE], f[_FAILURES], f[_SUCCESSES] = code, failures, successes
        f[_UP if alive else _DOWN] = wall
        if replied:
            first = f[_REPLIES] == 0
            f[_REPLIES] += 1
            f[_RTT] = rtt_ms
            f[_RTT_SUM] += rtt_ms
            ewma = f[_EWMA]
            f[_EWMA] = rtt_ms if first else ewma + EWMA_WEIGHT * (rtt_ms - ewma)
            f[_RTT_MAX] = max(f[_RTT_MAX], rtt_ms)
        else:
            f[_TIMEOUTS] += 1
    elif restored is not None:
        f[_UP], f[_DOWN] = restored
    elif state is not State.UNKNOWN:
        f[_DOWN if state is State.DOWN else _UP] = wall
    FIXED.pack_into(buf, off, *f)
    return old


NEW_STRINGS = ("uri", "key", "owner", "state_cb", "response_cb", "settings", "user")
_OPTIONAL = NEW_STRINGS[3:]


def encode_strings(values: tuple[str, str, str, str, str, str, str]) -> dict[str, bytes]:
    """A new record's strings (in ``NEW_STRINGS`` order) encoded and checked against their
    capacities: what ``fill`` takes (an empty callback, settings or user data is left out,
    as ``seed_strings`` does)."""
    uri, key, owner, *rest = values
    encoded = {"uri": uri.encode(), "key": key.encode(), "owner": owner.encode()}
    for name, value in zip(_OPTIONAL, rest, strict=True):
        if value:
            encoded[name] = value.encode()
    for name, data in encoded.items():
        if len(data) > STRINGS[name]:
            raise InvalidArgument(f"{name} longer than {STRINGS[name]} bytes")
    return encoded


def seed_strings(uri: str, key: str, owner_b: bytes, settings: str) -> dict[str, bytes]:
    """``encode_strings`` of a start-up destination (no callbacks, no user data) whose
    owner is already encoded and checked: what ``fill`` takes, made cheaply."""
    encoded = {"uri": uri.encode(), "key": key.encode(), "owner": owner_b}
    if settings:
        encoded["settings"] = settings.encode()
    for name, data in encoded.items():
        if len(data) > STRINGS[name]:
            raise InvalidArgument(f"{name} longer than {STRINGS[name]} bytes")
    return encoded


def fill(
    buf: memoryview,
    off: int,
    gen: int,
    flags: int,
    interval_ms: int,
    wall: float,
    packed: tuple[bytes, list[int]],
    chunk: int,
    crc: int,
) -> None:
    """Write a new destination into the free slot at ``off`` (lock held): ``packed`` is its
    strings' run and lengths (``strings.pack``), ``chunk`` the pool chunk holding what does
    not fit inline (already stored), ``crc`` the ``crc32`` of its key."""
    buf[off : off + SLOT_SIZE] = _ZERO_SLOT
    fixed = list(_NEW_FIXED)  # by index: 100,000 static destinations at start-up
    fixed[_GEN], fixed[_USED], fixed[_NEW_FLAGS] = gen, USED, flags
    fixed[_CRC], fixed[_INTERVAL], fixed[_ADDED] = crc, interval_ms, wall
    run, lengths = packed
    fixed[_LEN[0] : _LEN[0] + len(_LEN)] = lengths  # contiguous (layout's check)
    fixed[_CHUNK] = chunk
    head = run[:INLINE_SIZE]
    buf[off + INLINE_AT : off + INLINE_AT + len(head)] = head
    FIXED.pack_into(buf, off, *fixed)


def follow_interval(buf: memoryview, slots_at: int, capacity: int, seconds: int) -> int:
    """Give every used slot without its own interval ``seconds`` (lock held); how many."""
    changed = 0
    for slot in range(capacity):
        off = slots_at + slot * SLOT_SIZE
        if codec.get(buf, off, "used") == USED and not (
            codec.get(buf, off, "flags") & FLAG_OWN_INTERVAL
        ):
            codec.put(buf, off, "interval_ms", seconds * 1000)
            changed += 1
    return changed


def fingerprint(buf: memoryview, slots_at: int, capacity: int) -> bytes:
    """Every slot's gen, used, state, flags and ejection count (one strided copy of a word
    per slot: ~2 ms at 100,000 destinations, 8 passes of a byte took 12): it differs after
    an add, a delete, a state change, a pause, a stop or an ejection, not after a probe that
    changed nothing, so the state file is rewritten only when that is worth it."""
    words = buf[slots_at : slots_at + capacity * SLOT_SIZE].cast("Q")
    return words[:: SLOT_SIZE // 8].tobytes()
