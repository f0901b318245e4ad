"""When each host name is resolved next: the resolver thread's timetable, sans I/O.

A name is due at once when it is watched, then again when its answer expires: the
``Resolution.ttl_s`` that ``ka_core.names.resolve.Lookup`` already clamped to
``[MIN_TTL_S, KA_DNS_REFRESH]``; ``next_due`` clamps once more so a resolver that
hands back a zero or negative TTL cannot spin.  Time is always an argument (``now``:
the monotonic clock), so tests run the timetable in virtual time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from ka_core.names.resolve import MIN_TTL_S, Resolution
from ka_core.uri import SipUri

INTERNAL_ERROR_TTL_S = 30
"""A lookup that raised (a bug) is tried again this much later."""

Key = tuple[int, int]
"""(slot, gen) of a name in the table."""


def next_due(now: float, ttl_s: float) -> float:
    """When a name answered with ``ttl_s`` is asked again (never sooner than ``MIN_TTL_S``)."""
    return now + max(MIN_TTL_S, ttl_s)


class ResolveSchedule:
    """Names to resolve and when: a heap of due times, stale entries skipped lazily
    (forgetting or rescheduling a name leaves its old heap entry behind, which is
    cheaper than a heap delete and is dropped when it comes up)."""

    def __init__(self) -> None:
        self._names: dict[Key, tuple[SipUri, float]] = {}
        self._due: list[tuple[float, Key]] = []

    def __len__(self) -> int:
        return len(self._names)

    def watch(self, key: Key, uri: SipUri, now: float) -> None:
        """Resolve ``uri`` at ``now`` (again, if it was already watched)."""
        self._at(key, uri, now)

    def forget(self, key: Key) -> None:
        """Never resolve this name again (unknown keys are ignored)."""
        self._names.pop(key, None)

    def pop_due(self, now: float) -> tuple[Key, SipUri] | None:
        """The next name due at ``now``, taken off the timetable until ``answered``; None
        when nothing is due."""
        while self._due and self._due[0][0] <= now:
            due, key = heapq.heappop(self._due)
            entry = self._names.get(key)
            if entry is not None and entry[1] == due:
                return key, entry[0]
        return None

    def answered(self, key: Key, uri: SipUri, ttl_s: float, now: float) -> None:
        """The lookup of ``key`` ended at ``now`` with ``ttl_s``: due again when it expires.
        A name forgotten while it was being resolved stays forgotten."""
        entry = self._names.get(key)
        if entry is not None and entry[0] is uri:
            self._at(key, uri, next_due(now, ttl_s))

    def take(self, key: Key, uri: SipUri | None, now: float) -> None:
        """A resolver thread message: watch ``uri``, or forget ``key`` when it is None."""
        if uri is None:
            self.forget(key)
        else:
            self.watch(key, uri, now)

    def run_due(
        self,
        clock: Callable[[], float],
        resolve: Callable[[SipUri], Resolution],
        deliver: Callable[[Key, Resolution], object],
    ) -> float | None:
        """Resolve every name that is due (``resolve`` blocks), ``deliver`` each answer;
        returns when the next one is due.  A lookup that raises (a bug) fails that name
        only, and it is tried again ``INTERNAL_ERROR_TTL_S`` later."""
        while (due := self.pop_due(clock())) is not None:
            key, uri = due
            try:
                result = resolve(uri)
            except Exception as exc:  # a bug here must not stop resolving the others
                result = Resolution(
                    (), INTERNAL_ERROR_TTL_S, failed=True, reason=f"internal error: {exc!r}"
                )
            deliver(key, result)
            self.answered(key, uri, result.ttl_s, clock())
        return self.next_at()

    def next_at(self) -> float | None:
        """When the earliest watched name is due, or None when no name is watched."""
        while self._due:
            due, key = self._due[0]
            entry = self._names.get(key)
            if entry is not None and entry[1] == due:
                return due
            heapq.heappop(self._due)
        return None

    def _at(self, key: Key, uri: SipUri, due: float) -> None:
        self._names[key] = (uri, due)
        heapq.heappush(self._due, (due, key))
