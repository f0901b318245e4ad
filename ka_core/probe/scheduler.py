"""When each destination is due: a heap of absolute monotonic deadlines on a 100 ms grid.

Steady schedule: the next ping is due one interval after the previous *due time*, not after
the moment it was sent, so a slow tick never makes the schedule drift.  If the pinger falls
more than one interval behind, missed rounds are skipped rather than sent in a burst.

Grid: first pings are placed on multiples of ``TICK_S`` (of a divisor of it for very large
batches, see ``MAX_PER_TICK``), so (with whole-tick intervals, which every interval in seconds
is) every later ping lands on the grid too.  The pinger then wakes
at most once per tick and sends that tick's pings together: each wake-up costs tens of µs of
CPU on a virtual machine whatever it does, so one per ping made small lists expensive
(measured: ~600 µs per ping at 100 destinations, against ~55 µs for a bare wake-up).

Coarse grid at small rates: a wake-up costs about the same whatever it does, so when few pings
are due per second the grid is coarser (``grid_for``: 1 s up to 50 pings/s, then 0.5 s and
0.25 s), and a tick never holds more than ``BURST`` pings (the busiest 100 ms holds at most
max(2x the mean, ``BURST``)).  Batches (the start-up list, bulk
adds) are spread onto it, and retransmissions wait for its next tick, so pings,
retransmissions and timeouts share these wake-ups.  A destination added on its own keeps its
phase on the fine grid (first ping "about 0.5 s" after the add, as in C, then exactly every
interval), at the cost of its own wake-ups.

Spreading: destinations adopted together (the static list at start-up, a bulk RPC add) get
first-ping times spread evenly over their interval, so a large list never pings in one burst;
the start-up list starts at once, later additions ``FIRST_DELAY_S`` (rounded up to the grid,
so 0.35-0.45 s, "about 0.5 s" as in C).
"""

from __future__ import annotations

import heapq
import itertools
import math

TICK_S = 0.1
MAX_PER_TICK = 100
"""A large batch is placed on a finer grid (a divisor of ``TICK_S``, down to 10 ms) so that no
tick holds more than this many pings: sending 400 pings takes the pinger 10-15 ms, and any
preemption in that loop became interval error (p99 22 ms at 20,000 destinations)."""
BURST = 50
COARSE = ((BURST / 1.0, 1.0), (BURST / 0.5, 0.5), (BURST / 0.25, 0.25))
"""(pings per second at most, grid) from the coarsest; above them, ``TICK_S``."""
MAX_PINGS_PER_STEP = 2000
"""A step sends at most this many due pings; the rest stay due and the next step follows at
once.  Only a pinger that fell behind reaches it (1,000,000 destinations after the start-up
list's adoption had half an interval due at once: one step of 500,000 pings held the RPC
sockets, replies and timeouts for over a minute); on time, a tick holds ``MAX_PER_TICK``."""
FIRST_DELAY_S = 0.35
SMALL_BATCH = 10
"""Up to this many destinations adopted together are all pinged after ``FIRST_DELAY_S``
(a few quick ``ka_add_destination`` calls); larger batches are spread over the interval."""


def on_grid(t: float, tick: float = TICK_S) -> float:
    """The first grid point at or after ``t``."""
    return round(math.ceil(t / tick - 1e-6) * tick, 9)


def grid_for(rate: float) -> float:
    """The grid for ``rate`` pings per second: the coarsest whose ticks hold <= ``BURST``."""
    for limit, grid in COARSE:
        if rate <= limit + 1e-6:  # a sum of 1 / interval: float error
            return grid
    return TICK_S


def batch_tick(batch: int, interval_s: float) -> float:
    """The grid a spread batch is placed on: ``TICK_S`` unless that would put more than
    ``MAX_PER_TICK`` of its pings in one tick."""
    split = math.ceil(batch * TICK_S / interval_s / MAX_PER_TICK)
    return TICK_S / min(10, max(1, split))


def first_due(
    now: float, index: int, batch: int, interval_s: float, delay_s: float, grid: float = TICK_S
) -> float:
    """First ping time of the ``index``-th of ``batch`` destinations adopted together
    (``grid``: ``grid_for`` the rate with them)."""
    if batch <= SMALL_BATCH:
        return on_grid(now + delay_s)
    at = now + delay_s + interval_s * index / batch
    if grid > TICK_S:  # the same number on each coarse tick (the first may be a bit early)
        return round(math.floor(at / grid + 1e-6) * grid, 9)
    return on_grid(at, batch_tick(batch, interval_s))


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

    def pop_due(self, now: float, limit: int) -> list[tuple[float, int, int]]:
        """The entries due at or before ``now``, earliest first, at most ``limit``."""
        out: list[tuple[float, int, int]] = []
        while self._heap and self._heap[0][0] <= now and len(out) < limit:
            due, _, slot, gen = heapq.heappop(self._heap)
            out.append((due, slot, gen))
        return out

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()


class RateMeter:
    """Pings per second of the destinations scheduled (what ``grid_for`` is given)."""

    def __init__(self) -> None:
        self._by_slot: dict[int, tuple[int, float]] = {}
        """slot -> (gen, 1 / interval)."""
        self.rate = 0.0

    def count(self, slot: int, gen: int, interval_s: float | None) -> None:
        """Count a destination's pings (None: no longer)."""
        old = self._by_slot.pop(slot, None)
        if old is not None:
            self.rate -= old[1]
        if interval_s is not None and interval_s > 0:
            self._by_slot[slot] = (gen, 1.0 / interval_s)
            self.rate += 1.0 / interval_s
        if not self._by_slot:
            self.rate = 0.0  # no drift left over

    def forget(self, slot: int, gen: int) -> None:
        """Stop counting ``slot`` if it is still this generation's."""
        if self._by_slot.get(slot, (-1,))[0] == gen:
            self.count(slot, gen, None)
