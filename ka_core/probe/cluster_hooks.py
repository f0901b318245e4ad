"""The prober's cluster-mode hooks (``kemi.cluster``): another node probes a destination,
wrote its state, or left.  Kept apart from ``ka_core.probe.prober`` so each stays small;
``Prober`` inherits these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ka_core.probe.scheduler import Scheduler, next_due

if TYPE_CHECKING:
    from ka_core.store.table import SharedTable


class ClusterHooks:
    _table: SharedTable
    _schedule: Scheduler
    _dests: dict[int, Any]
    _unread: dict[int, int]
    _moved: dict[int, tuple[int, float, bool, bool]]

    def refresh(self, slot: int, gen: int) -> None:
        """Another node wrote this destination's state (cluster mode): read the record
        again at its next ping instead of going on from the copy held here."""
        dest = self._dests.get(slot)
        if dest is not None and dest.gen == gen:
            del self._dests[slot]
            self._unread[slot] = gen

    def expedite(self, slot: int, gen: int, due: float) -> None:
        """Cluster takeover (a node left): ping this destination at ``due`` rather than at
        its next due time, which may be an interval away; its schedule goes on from there
        (the entry it had is dropped when it comes up, so there is still one per slot)."""
        if slot not in self._moved and self._table.is_used(slot, gen):
            self._moved[slot] = (gen, due, False, False)
            self._schedule.schedule(due, slot, gen)

    def _superseded(self, due: float, slot: int, gen: int) -> bool:
        """True for the entry an ``expedite`` replaced: dropped, not rescheduled."""
        m_gen, m_due, new_seen, old_seen = self._moved[slot]
        if m_gen != gen or not self._table.is_used(slot, gen):
            del self._moved[slot]  # deleted since: nothing to drop
            return False
        if not new_seen and due == m_due:  # the expedited entry
            if old_seen:
                del self._moved[slot]
            else:
                self._moved[slot] = (gen, m_due, True, False)
            return False
        if old_seen:  # (cannot happen: only the expedited entry was left)
            del self._moved[slot]
            return False
        if new_seen:
            del self._moved[slot]
        else:
            self._moved[slot] = (gen, m_due, False, True)
        return True

    def _skipped(self, due: float, slot: int, gen: int, now: float) -> bool:
        """Keep a destination another node probes on its schedule, unpinged; its copy is
        dropped so that a takeover starts from the state that node wrote."""
        if not self._table.is_used(slot, gen):
            return False  # deleted: the normal path forgets it
        self.refresh(slot, gen)
        gap = self._table.interval_ms(slot) / 1000.0
        self._schedule.schedule(next_due(due, gap, now), slot, gen)
        return True
