"""The prober's passive-health hooks: reported outcomes of real requests eject and reinstate
destinations (the rules are in ``ka_core.probe.outlier``).  Kept apart from
``ka_core.probe.prober`` so each stays small; ``Prober`` inherits these.

Every state they set goes through the table's one writer (``write_state``) with the
ejection fields, so events, ``keepalive.info`` and /metrics see it like a probe result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ka_core.events import Event, StateChanged
from ka_core.policy import Ejection
from ka_core.probe.outlier import (
    Outlier,
    count,
    eject,
    may_eject,
    reinstate,
    retry_hold,
)
from ka_core.settings import ejection_of, parse_settings
from ka_core.state import State
from ka_core.store.ring import KIND_OUTCOME, KIND_RETRY_AFTER

if TYPE_CHECKING:
    from ka_core.store.ring import RingEntry
    from ka_core.store.table import SharedTable

Held = tuple[bool, int, int, bool]
"""What ``write_state`` stores of an ejection: (held out, times ejected, end wall second,
by a Retry-After)."""
MAX_PENDING_RETRY_AFTER = 4096
PASSIVE_KINDS = (KIND_OUTCOME, KIND_RETRY_AFTER)
"""Ring entries the prober hands to ``PassiveHooks._reported``."""


class PassiveHooks:
    _table: SharedTable
    _dests: dict[int, Any]

    def _init_passive(self, ejection: Ejection) -> None:
        self._ejection = ejection
        self._outliers: dict[int, Outlier] = {}
        self._ejected: dict[int, Outlier] = {}
        """The ejected (or held) ones only: checked every step for their end."""
        self._groups: tuple[int, dict[str, int]] = (-1, {})
        """(the table's ``membership`` they were counted at, destinations per owner)."""
        self._retry_after: dict[int, int] = {}
        """Ping seq -> Retry-After seconds of its reply, until the reply is applied."""

    def _reported(self, entry: RingEntry, now: float, wall: float) -> list[Event]:
        """A script's report (``KIND_OUTCOME``, its Retry-After in ``seq``): a hold if it
        says so, else count it and eject when due; or a ping's Retry-After
        (``KIND_RETRY_AFTER``), kept for its reply."""
        if entry.kind == KIND_RETRY_AFTER:
            if len(self._retry_after) >= MAX_PENDING_RETRY_AFTER:
                self._retry_after.clear()  # replies that never came (a full ring)
            self._retry_after[entry.seq] = entry.code
            return []
        o = self._record(entry.slot, entry.gen)
        if o is None:
            return []
        if retry_hold(o, entry.code, entry.seq, now):
            return self._out(entry.slot, o, now, wall, entry.code)
        if not o.policy.on or not count(o, entry.code):
            return []
        group = [x for x in self._ejected.values() if x.owner == o.owner and not x.retry]
        if not may_eject(self._group_size(o.owner), len(group), o.policy.max_percent):
            return []  # the group's share is used up: it stays in service, counting on
        eject(o, now)
        return self._out(entry.slot, o, now, wall, entry.code)

    def _held(
        self, seq: int, slot: int, gen: int, code: int, alive: bool, now: float, wall: float
    ) -> tuple[bool, Held | None]:
        """A probe result for ``slot``: (it stays out, so DOWN is shown; the ejection fields
        to store, None = unchanged).  A reply with Retry-After holds it out; an alive probe
        reinstates an ejected destination, but not one a Retry-After holds."""
        seconds = self._retry_after.pop(seq, 0)
        if seconds:
            o = self._record(slot, gen)
            if o is not None and retry_hold(o, code, seconds, now):
                self._ejected[slot] = o
                return True, self._fields(o, now, wall)
        o = self._ejected.get(slot)
        if o is None or o.gen != gen:
            return False, None
        if not alive or o.hold_until > now:
            return True, None
        reinstate(o)
        del self._ejected[slot]
        return False, (False, o.ejections, 0, False)

    def _reinstate_due(self, now: float, wall: float) -> list[Event]:
        """Ejections and holds whose time is up: back to the state the probes gave it."""
        events: list[Event] = []
        for slot, o in list(self._ejected.items()):
            if o.until > now:
                continue
            reinstate(o)
            del self._ejected[slot]
            dest = self._dests.get(slot)
            state = dest.state if dest is not None and dest.gen == o.gen else State.UNKNOWN
            events += self._shown(slot, o, state, wall, 0, (False, o.ejections, 0, False))
        return events

    def _next_reinstatement(self) -> float | None:
        return min((o.until for o in self._ejected.values()), default=None)

    def _out(self, slot: int, o: Outlier, now: float, wall: float, code: int) -> list[Event]:
        self._ejected[slot] = o
        return self._shown(slot, o, State.DOWN, wall, code, self._fields(o, now, wall))

    @staticmethod
    def _fields(o: Outlier, now: float, wall: float) -> Held:
        return True, o.ejections, int(wall + (o.until - now)), o.retry

    def _shown(
        self, slot: int, o: Outlier, state: State, wall: float, code: int, held: Held
    ) -> list[Event]:
        changed = self._table.write_state(slot, o.gen, state, wall, code=code, ejected=held)
        if changed is False:  # deleted meanwhile
            self._outliers.pop(slot, None)
            self._ejected.pop(slot, None)
        return [changed] if isinstance(changed, StateChanged) else []

    def _group_size(self, owner: str) -> int:
        """Destinations of ``owner``, counted again only after an add or a delete (a group
        whose share is used up asks on every failure it reports)."""
        membership = self._table.header.membership
        if self._groups[0] != membership:
            sizes: dict[str, int] = {}
            for (name,) in self._table.rows(["owner"]):
                sizes[name] = sizes.get(name, 0) + 1
            self._groups = (membership, sizes)
        return self._groups[1].get(owner, 0)

    def _record(self, slot: int, gen: int) -> Outlier | None:
        """The slot's passive-health record (made at its first report), None when the slot
        is gone or neither passive health nor Retry-After is on for it."""
        o = self._outliers.get(slot)
        if o is None or o.gen != gen:
            if not self._table.is_used(slot, gen):
                return None
            rec = self._table.read(slot)
            policy = ejection_of(parse_settings(rec.settings, internal=True), self._ejection)
            o = self._outliers[slot] = Outlier(gen, rec.owner, policy)
            self._ejected.pop(slot, None)
        return o if o.policy.on or o.policy.retry_max_s else None
