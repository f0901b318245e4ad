"""The prober's passive-health hooks: reported outcomes of real requests eject and reinstate
destinations (the rules are in ``ka_core.probe.outlier``).  Kept apart from
``ka_core.probe.prober`` so each stays small; ``Prober`` inherits these.

Every state they set goes through the table's one writer (``write_state``) with the
ejection fields, so events, ``keepalive.info`` and /metrics see it like a probe result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ka_core.config.settings import ejection_of, parse_settings
from ka_core.events import Event, StateChanged
from ka_core.probe.outlier import Ejection, Outlier, count, eject, may_eject, reinstate
from ka_core.state import State

if TYPE_CHECKING:
    from ka_core.store.ring import RingEntry
    from ka_core.store.table import SharedTable

Held = tuple[bool, int, int]
"""What ``write_state`` stores of an ejection: (held out, times ejected, end wall second)."""


class PassiveHooks:
    _table: SharedTable
    _dests: dict[int, Any]

    def _init_passive(self, ejection: Ejection) -> None:
        self._ejection = ejection
        self._outliers: dict[int, Outlier] = {}
        self._ejected: dict[int, Outlier] = {}
        """The ejected ones only: checked every step for their end."""
        self._groups: tuple[int, dict[str, int]] = (-1, {})
        """(the table's ``membership`` they were counted at, destinations per owner)."""

    def _reported(self, entry: RingEntry, now: float, wall: float) -> list[Event]:
        """A script's report (``KIND_OUTCOME``): count it, eject when due."""
        o = self._outlier(entry.slot, entry.gen)
        if o is None or not count(o, entry.code):
            return []
        group = [x for x in self._ejected.values() if x.owner == o.owner]
        if not may_eject(self._group_size(o.owner), len(group), o.policy.max_percent):
            return []  # the group's share is used up: it stays in service, counting on
        until = eject(o, now)
        self._ejected[entry.slot] = o
        held = (True, o.ejections, int(wall + (until - now)))
        return self._shown(entry.slot, o, State.DOWN, wall, entry.code, held)

    def _held(self, slot: int, gen: int, alive: bool) -> tuple[bool, Held | None]:
        """A probe result for ``slot``: (it stays out, so DOWN is shown; the ejection fields
        to store, None = unchanged).  An alive probe reinstates an ejected destination."""
        o = self._ejected.get(slot)
        if o is None or o.gen != gen:
            return False, None
        if not alive:
            return True, None
        reinstate(o)
        del self._ejected[slot]
        return False, (False, o.ejections, 0)

    def _reinstate_due(self, now: float, wall: float) -> list[Event]:
        """Ejections whose time is up: back to the state the probes gave it."""
        events: list[Event] = []
        for slot, o in list(self._ejected.items()):
            if o.until > now:
                continue
            reinstate(o)
            del self._ejected[slot]
            dest = self._dests.get(slot)
            state = dest.state if dest is not None and dest.gen == o.gen else State.UNKNOWN
            events += self._shown(slot, o, state, wall, 0, (False, o.ejections, 0))
        return events

    def _next_reinstatement(self) -> float | None:
        return min((o.until for o in self._ejected.values()), default=None)

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
        membership = self._table.membership
        if self._groups[0] != membership:
            sizes: dict[str, int] = {}
            for (name,) in self._table.rows(["owner"]):
                sizes[name] = sizes.get(name, 0) + 1
            self._groups = (membership, sizes)
        return self._groups[1].get(owner, 0)

    def _outlier(self, slot: int, gen: int) -> Outlier | None:
        """The slot's passive-health record (made at its first report), None when the slot
        is gone or passive health is off for it."""
        o = self._outliers.get(slot)
        if o is None or o.gen != gen:
            if not self._table.is_used(slot, gen):
                return None
            rec = self._table.read(slot)
            policy = ejection_of(parse_settings(rec.settings, internal=True), self._ejection)
            o = self._outliers[slot] = Outlier(gen, rec.owner, policy)
            self._ejected.pop(slot, None)
        return o if o.policy.on else None
