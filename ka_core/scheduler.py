"""When each destination is due: a heap of absolute monotonic deadlines.

Steady schedule: the next ping is due one interval after the previous *due time*, not after
the moment it was sent, so a slow tick never makes the schedule drift.  If the pinger falls
more than one interval behind, missed rounds are skipped rather than sent in a burst.

Spreading: destinations added in one batch (the static list at start-up, a bulk RPC add) get
first-ping times spread evenly over their interval, so a large list never pings in one burst.
A destination added alone is pinged ``FIRST_DELAY_S`` after it was added, as in C.
"""

from __future__ import annotations

import heapq
import itertools

FIRST_DELAY_S = 0.5


def first_due(now: float, index: int, batch: int, interval_s: float) -> float:
    """First ping time of the ``index``-th of ``batch`` destinations added together."""
    if batch <= 1:
        return now + FIRST_DELAY_S
    return now + FIRST_DELAY_S + interval_s * index / batch


def next_due(previous_due: float, interval_s: float, now: float) -> float:
    """The due time after ``previous_due``, skipping rounds already missed."""
    due = previous_due + interval_s
    if due <= now:
        missed = int((now - previous_due) // interval_s)
        due = previous_due + interval_s * (missed + 1)
    return due


class Scheduler:
    """A min-heap of (due, slot, gen); stale generations are dropped by the caller."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, int]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, due: float, slot: int, gen: int) -> None:
        heapq.heappush(self._heap, (due, next(self._order), slot, gen))

    def pop_due(self, now: float) -> list[tuple[float, int, int]]:
        """Every entry due at or before ``now``, earliest first."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            due, _, slot, gen = heapq.heappop(self._heap)
            out.append((due, slot, gen))
        return out

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()
