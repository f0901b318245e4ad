"""The shared table's writes that are not adds and deletes: probe results (the pinger only)
and the operator's controls (pause, the current ``ping_interval``; any process, by RPC).

Kept apart from ``ka_core.table`` so each stays small; ``SharedTable`` inherits these.
"""

from __future__ import annotations

import struct
from contextlib import AbstractContextManager

from ka_core.layout import (
    FIXED,
    FLAG_OWN_INTERVAL,
    FLAG_PAUSED,
    FLAG_STOPPED,
    HOT,
    INTERVAL_AT,
    PAUSED_AT,
    SLOT_SIZE,
    USED,
    index,
    offset,
)
from ka_core.state import State

EWMA_WEIGHT = 0.2
"""Weight of the newest round trip in ``rtt_ewma`` (about the last 5 replies)."""
_U32, _F64 = struct.Struct("<I"), struct.Struct("<d")
_PINGS_AT, _NEXT_PING_AT, _INTERVAL_MS_AT = (
    offset(n) for n in ("pings", "next_ping", "interval_ms")
)
_FLAGS_AT, _USED_AT = offset("flags"), offset("used")
_I = {
    n: index(n)
    for n in (
        "state", "flags", "last_code", "failures", "successes", "timeouts", "replies",
        "last_checked", "last_up", "last_down", "rtt_ms", "rtt_sum", "rtt_ewma", "rtt_max",
    )
}  # fmt: skip


class PingerWrites:
    _buf: memoryview
    _lock: AbstractContextManager[object]
    _slots_at: int
    capacity: int

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
        """Store a probe result and its round trip; False when the slot was deleted.
        ``alive`` (the reply counted as alive; default: the new state is UP or DEGRADED)
        chooses between ``last_up`` and ``last_down``."""
        if alive is None:
            alive = state in (State.UP, State.DEGRADED)
        i = _I
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            off = self._slots_at + slot * SLOT_SIZE
            f = list(FIXED.unpack_from(self._buf, off))  # by index: once per probe result
            f[i["state"]] = int(state)
            f[i["flags"]] = (f[i["flags"]] & ~FLAG_STOPPED) | (FLAG_STOPPED if stopped else 0)
            f[i["last_code"]] = code
            f[i["failures"]], f[i["successes"]] = failures, successes
            f[i["last_checked"]] = wall
            f[i["last_up" if alive else "last_down"]] = wall
            if replied:
                first = f[i["replies"]] == 0
                f[i["replies"]] += 1
                f[i["rtt_ms"]] = rtt_ms
                f[i["rtt_sum"]] += rtt_ms
                ewma = f[i["rtt_ewma"]]
                f[i["rtt_ewma"]] = rtt_ms if first else ewma + EWMA_WEIGHT * (rtt_ms - ewma)
                f[i["rtt_max"]] = max(f[i["rtt_max"]], rtt_ms)
            else:
                f[i["timeouts"]] += 1
            FIXED.pack_into(self._buf, off, *f)
            return True

    # -- controls (any process) ------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """All probing paused (a one-byte read)."""
        return bool(self._buf[PAUSED_AT])

    def flags(self, slot: int) -> int:
        return int(self._buf[self._slots_at + slot * SLOT_SIZE + _FLAGS_AT])

    def pause_all(self, paused: bool) -> None:
        self._buf[PAUSED_AT] = 1 if paused else 0

    def pause_slot(self, slot: int, gen: int, paused: bool) -> bool:
        with self._lock:
            if not self.is_used(slot, gen):
                return False
            at = self._slots_at + slot * SLOT_SIZE + _FLAGS_AT
            flags = self._buf[at] & ~FLAG_PAUSED
            self._buf[at] = flags | (FLAG_PAUSED if paused else 0)
            return True

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
                off = self._slots_at + slot * SLOT_SIZE
                if self._buf[off + _USED_AT] == USED and not (
                    self._buf[off + _FLAGS_AT] & FLAG_OWN_INTERVAL
                ):
                    _U32.pack_into(self._buf, off + _INTERVAL_MS_AT, seconds * 1000)
                    changed += 1
        return changed
