"""The shared table's writes that are not adds and deletes: probe results (the pinger only),
the operator's controls (pause, the current ``ping_interval``; any process, by RPC) and the
outcomes SIP workers queue for passive health.

Kept apart from ``ka_core.store.table`` so each stays small; ``SharedTable`` inherits these.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from contextlib import AbstractContextManager

from ka_core.events import StateChanged
from ka_core.state import State
from ka_core.store import codec
from ka_core.store.layout import (
    CODE_CLASSES,
    CONTROLS_AT,
    EJECTED_BY_RETRY_AFTER,
    FIXED,
    FLAG_EJECTED,
    FLAG_OWN_INTERVAL,
    FLAG_PAUSED,
    FLAG_STOPPED,
    HOT,
    INTERVAL_AT,
    LIFE,
    LIFE_AT,
    METRICS,
    METRICS_AT,
    PAUSED_AT,
    PINGER,
    PINGER_AT,
    RTT_BUCKETS_MS,
    SLOT_SIZE,
    STRINGS,
    USED,
    code_class,
    index,
    offset,
    rtt_bucket,
)
from ka_core.store.ring import KIND_OUTCOME, KIND_RETRY_AFTER, Ring, RingEntry

EWMA_WEIGHT = 0.2
"""Weight of the newest round trip in ``rtt_ewma`` (about the last 5 replies)."""
_U16, _U32, _F64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<d")
_PINGS_AT, _NEXT_PING_AT = offset("pings"), offset("next_ping")
_FLAGS_AT = offset("flags")
_I = {
    n: index(n)
    for n in (
        "state", "flags", "last_code", "failures", "successes", "timeouts", "replies",
        "last_checked", "last_up", "last_down", "rtt_ms", "rtt_sum", "rtt_ewma", "rtt_max",
    )
}  # fmt: skip
_EJECTIONS, _OUT_UNTIL = index("ejections"), index("out_until")
# record_result runs once per ping: positions as constants, not dict lookups
(_STATE, _FLAGS, _CODE, _FAILURES, _SUCCESSES, _TIMEOUTS, _REPLIES, _CHECKED, _UP, _DOWN,
 _RTT, _RTT_SUM, _EWMA, _RTT_MAX) = _I.values()  # fmt: skip

_FINGERPRINT_BYTES = _FLAGS_AT + 1
"""gen, used, state and flags: the first bytes of a slot."""
_SAVED_STRINGS = tuple(
    (STRINGS[n][0], index(f"{n}_len"))
    for n in ("uri", "owner", "settings", "state_cb", "response_cb", "user")
)
_I_USED, _I_INTERVAL = index("used"), index("interval_ms")


class PingerWrites:
    _buf: memoryview
    _lock: AbstractContextManager[object]
    _slots_at: int
    capacity: int
    ring_capacity: int
    _ring: Ring
    _str: Callable[[int, str], bytes]  # ka_core.store.chains
    _off: Callable[[int], int]

    def is_used(self, slot: int, gen: int) -> bool:
        g, used, _ = HOT.unpack_from(self._buf, self._slots_at + slot * SLOT_SIZE)
        return bool(g == gen and used == USED)

    # -- probe results (pinger) ----------------------------------------------------------

    def record_ping(self, slot: int, gen: int, next_ping: float) -> bool:
        """Count a ping sent; False when the slot was deleted meanwhile."""
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            off = self._slots_at + slot * SLOT_SIZE
            (pings,) = _U32.unpack_from(self._buf, off + _PINGS_AT)
            _U32.pack_into(self._buf, off + _PINGS_AT, (pings + 1) & 0xFFFFFFFF)
            _F64.pack_into(self._buf, off + _NEXT_PING_AT, next_ping)
            return True

    def write_state(
        self,
        slot: int,
        gen: int,
        state: State,
        wall: float,
        *,
        code: int = 0,
        rtt_ms: float = 0.0,
        probe: tuple[int, int, bool, bool, bool] | None = None,
        restored: tuple[float, float] | None = None,
        ejected: tuple[bool, int, int, bool] | None = None,
    ) -> StateChanged | bool:
        """The one writer of a destination's state: probe results, peer reports, derived
        (DNS) states and restored states all pass here, and a change is counted here only.

        ``probe`` = (failures, successes, stopped, replied, alive) of a probe result: it also
        stores the code, the streaks, the round trip and the /metrics counters; ``alive``
        chooses between ``last_up`` and ``last_down``.  ``restored`` = (last_up, last_down)
        from the state file: put back as they were, not counted as a change.  Otherwise last
        up or down is stamped from the state (UNKNOWN stamps neither).  ``ejected`` =
        (held out, times ejected, wall second it ends, by a Retry-After) of passive health
        (``FLAG_EJECTED``); None keeps them as they are.  Returns False when
        the slot was deleted, the ``StateChanged`` when the state changed, else True."""
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            off = self._slots_at + slot * SLOT_SIZE
            f = list(FIXED.unpack_from(self._buf, off))  # by index: once per probe result
            old = f[_STATE]
            changed = old != state
            replied = probe is not None and probe[3]
            if replied or changed:  # the /metrics counters: one read and one write
                m = list(METRICS.unpack_from(self._buf, off + METRICS_AT))
                counted = [len(m) - 1] if changed and restored is None else []
                if replied:
                    if (cls := code_class(code)) >= 0:
                        counted.append(cls)
                    if (bucket := rtt_bucket(rtt_ms)) < len(RTT_BUCKETS_MS):
                        counted.append(len(CODE_CLASSES) + bucket)
                for at in counted:
                    m[at] = (m[at] + 1) & 0xFFFFFFFF
                METRICS.pack_into(self._buf, off + METRICS_AT, *m)
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
            FIXED.pack_into(self._buf, off, *f)
            if not changed:
                return True
            uri, owner, callback, user = (
                self._str(off, n).decode("utf-8", "replace")
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

    # -- passive health (SIP workers) --------------------------------------------------

    def push_outcome(
        self, slot: int, gen: int, code: int, mono: float, wall: float, retry_after: int = 0
    ) -> bool:
        """Queue a real outcome a script reported for a destination (passive health, see
        ``ka_core.probe.outlier``; ``retry_after``: its seconds, 0 = none); False when the
        ring is more than half full, which keeps
        the rest for adds and ping replies."""
        with self._lock:
            if self._ring.free() <= self.ring_capacity // 2:
                return False
            self._ring.push(RingEntry(KIND_OUTCOME, code, slot, gen, retry_after, mono, wall))
            return True

    def push_retry_after(self, seq: int, seconds: int) -> bool:
        """Queue the Retry-After of ping ``seq``'s reply, just before ``push_reply`` queues
        the reply; False if the ring is full (the reply then counts as one without it)."""
        with self._lock:
            if self._ring.free() < 2:
                return False
            self._ring.push(RingEntry(KIND_RETRY_AFTER, min(seconds, 0xFFFF), 0, 0, seq, 0, 0))
            return True

    def write_pinger_stats(self, lag_s: float, lag_max_s: float, in_flight: int) -> None:
        """The pinger's health for /metrics (no lock: only the pinger writes it)."""
        PINGER.pack_into(self._buf, PINGER_AT, lag_s, lag_max_s, in_flight)

    def pinger_stats(self) -> tuple[float, float, int]:
        lag, lag_max, in_flight = PINGER.unpack_from(self._buf, PINGER_AT)
        return float(lag), float(lag_max), int(in_flight)

    def write_pinger_life(self, status: int, beat: float) -> None:
        """The pinger's status and last step (``ka_core.probe.liveness``); only the pinger writes
        it, other processes read it without the lock (a torn read is retried next call)."""
        LIFE.pack_into(self._buf, LIFE_AT, status, beat)

    def pinger_life(self) -> tuple[int, float]:
        status, beat = LIFE.unpack_from(self._buf, LIFE_AT)
        return int(status), float(beat)

    # -- controls (any process) ------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """All probing paused (a one-byte read)."""
        return bool(self._buf[PAUSED_AT])

    def flags(self, slot: int) -> int:
        return int(codec.get(self._buf, self._off(slot), "flags"))

    def pause_all(self, paused: bool) -> None:
        self._buf[PAUSED_AT] = 1 if paused else 0

    def set_state(
        self, slot: int, gen: int, state: State, wall: float, code: int = 0, rtt_ms: float = 0.0
    ) -> StateChanged | None:
        """Write a state from elsewhere than a probe (a peer's report, a host name's state
        derived from its targets, with the code and RTT that caused it), stamping last
        checked and last up or down; the change, or None when the slot was deleted or the
        state was already that."""
        written = self.write_state(slot, gen, state, wall, code=code, rtt_ms=rtt_ms)
        return written if isinstance(written, StateChanged) else None

    def pause_slot(self, slot: int, gen: int, paused: bool) -> bool:
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            off = self._off(slot)
            flags = codec.get(self._buf, off, "flags") & ~FLAG_PAUSED
            codec.put(self._buf, off, "flags", flags | (FLAG_PAUSED if paused else 0))
            self._bump_controls()
            return True

    @property
    def controls(self) -> int:
        """Changes when a destination's pause flag or interval may have changed: the pinger
        re-reads them only then, not for every ping (one 2-byte read per step)."""
        return int(_U16.unpack_from(self._buf, CONTROLS_AT)[0])

    def _bump_controls(self) -> None:
        _U16.pack_into(self._buf, CONTROLS_AT, (self.controls + 1) & 0xFFFF)

    @property
    def ping_interval(self) -> int:
        """The current ``ping_interval`` in seconds (``keepalive.interval`` changes it)."""
        return int(_U32.unpack_from(self._buf, INTERVAL_AT)[0])

    def set_ping_interval(self, seconds: int) -> int:
        """Set it, and the interval of every destination without its own; returns how many
        destinations follow it.  They take it from their next ping on."""
        changed = 0
        with self._lock:
            _U32.pack_into(self._buf, INTERVAL_AT, seconds)
            for slot in range(self.capacity):
                off = self._off(slot)
                get = codec.get
                if get(self._buf, off, "used") == USED and not (
                    get(self._buf, off, "flags") & FLAG_OWN_INTERVAL
                ):
                    codec.put(self._buf, off, "interval_ms", seconds * 1000)
                    changed += 1
            self._bump_controls()
        return changed

    # -- the state file (kemi.persistence) -------------------------------------------------

    def restore_state(
        self,
        slot: int,
        gen: int,
        state: State,
        last_checked: float,
        last_up: float,
        last_down: float,
    ) -> bool:
        """Put back a destination's last state (at start-up, before the pinger reads the
        record), so routing sees it before the first probe; False if the slot changed."""
        restored = (last_up, last_down)
        return self.write_state(slot, gen, state, last_checked, restored=restored) is not False

    def fingerprint(self) -> bytes:
        """Every slot's gen, used, state and flags (~2 ms at 10,000 destinations): it
        differs after an add, a delete, a state change, a pause or a stop, not after a probe
        that changed nothing, so the state file is rewritten only when that is worth it."""
        start = self._slots_at
        end = start + self.capacity * SLOT_SIZE
        return b"".join(
            self._buf[start + k : end : SLOT_SIZE].tobytes() for k in range(_FINGERPRINT_BYTES)
        )
