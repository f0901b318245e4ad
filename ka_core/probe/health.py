"""The health model: which replies count as alive, how many in a row flip a state, when a
destination is DEGRADED, and how far apart a DOWN destination is probed.

Theory of operation.  Each probe ends in one of three outcomes: ``OK`` (a final reply whose
code is in the destination's alive set, within the latency threshold), ``SLOW`` (alive, but
its round trip took longer than ``degraded_ms``) or ``FAIL`` (any other final reply, or none
within the ping timeout).  Consecutive outcomes are counted: ``down_after`` FAILs in a row
make a destination DOWN, ``up_after`` alive replies in a row (OK or SLOW) take a DOWN or
UNKNOWN destination out of it.  An alive destination follows its latest reply at once: UP
on OK, DEGRADED on SLOW (or, with ``degraded_as_down``, a SLOW counts as a FAIL).

With the defaults (``2xx``, 1 and 1, no latency threshold) this is exactly the C module:
every 2xx makes a destination UP, every other outcome makes it DOWN.
"""

from __future__ import annotations

from dataclasses import dataclass

from ka_core.policy import Policy
from ka_core.state import TRANSITIONS, Outcome, State

MAX_BACKOFF_SHIFT = 16


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    successes: int
    failures: int


def transition(state: State, successes: int, failures: int, outcome: Outcome, p: Policy) -> Verdict:
    """The next state (looked up in ``TRANSITIONS``) and streaks after one outcome: what the
    table's one state writer (``SharedTable.write_state``) stores; it returns the event."""
    if outcome is Outcome.FAIL:
        failures, successes = failures + 1, 0
        return Verdict(TRANSITIONS[state, outcome, failures >= p.down_after], 0, failures)
    successes, failures = successes + 1, 0
    return Verdict(TRANSITIONS[state, outcome, successes >= p.up_after], successes, 0)


def backoff_interval(interval_s: float, failures: int, p: Policy, cap_s: float) -> float:
    """Seconds to the next ping of a destination: doubled for each failure past the one that
    made it DOWN, up to ``cap_s`` (0: never backs off)."""
    extra = failures - p.down_after
    if cap_s <= 0 or extra <= 0:
        return interval_s
    return max(interval_s, min(cap_s, interval_s * (1 << min(extra, MAX_BACKOFF_SHIFT))))
