"""Destination states, and what a script and a SIP worker read of them.

A destination starts UNKNOWN; ``ka_core.probe.health`` decides every later state from the probe
outcomes.  With the default policy (C's) any 2xx makes it UP and anything else DOWN.  When
more than ``delete_counter`` probes in a row failed (and ``delete_counter`` is not 0, and
probing while down is off) probing stops: the destination stays listed as DOWN and only
re-adding it resumes probing (C: "5071 got 6 OPTIONS and then no more").  A reply that
arrives after probing stopped is never applied (C bug #3028: a late 200 made a stopped
destination "alive forever").
"""

from __future__ import annotations

import enum


class State(enum.IntEnum):
    """Values match the C module (``KA_STATE_*``) and the RPC ``state:`` field; DEGRADED
    (alive but slower than its latency threshold) is ka-kemi's own."""

    UNKNOWN = 0
    UP = 1
    DOWN = 2
    DEGRADED = 3


class Outcome(enum.Enum):
    """What one probe says (``ka_core.probe.health.Policy.judge`` decides it)."""

    OK = "ok"
    SLOW = "slow"
    FAIL = "fail"


def _diagram() -> dict[tuple[State, Outcome, bool], State]:
    table = {}
    for state in State:
        alive = state in (State.UP, State.DEGRADED)
        for met in (False, True):
            table[state, Outcome.FAIL, met] = State.DOWN if met else state
            table[state, Outcome.OK, met] = State.UP if met or alive else state
            table[state, Outcome.SLOW, met] = State.DEGRADED if met or alive else state
    return table


TRANSITIONS: dict[tuple[State, Outcome, bool], State] = _diagram()
"""The state diagram as data: (state, outcome, threshold met) -> new state.  The threshold
is ``down_after`` failures in a row for FAIL, ``up_after`` alive replies in a row for OK and
SLOW; an alive destination follows every alive reply at once.  docs/health.md prints this
table (tests/unit/test_one_writer.py pins one to the other)."""


def _default_target(outcome: Outcome) -> int:
    """The one state every state goes to on ``outcome`` under the default policy (thresholds
    1, so always met), read off ``TRANSITIONS``."""
    (target,) = {TRANSITIONS[state, outcome, True] for state in State}
    return target.value


_UP_ON_2XX, _DOWN_OTHERWISE = _default_target(Outcome.OK), _default_target(Outcome.FAIL)


def changes_state(state: int, code: int) -> bool:
    """Whether a final reply ``code`` moves a destination with the default policy out of
    ``state`` (raw table value).

    ``TRANSITIONS`` sends every state to one target per outcome under that policy, so this is
    one comparison: it runs in the SIP worker for every reply to a ping.  For destinations
    with another policy the workers do not ask (``layout.FLAG_CUSTOM_POLICY``).
    """
    return state != (_UP_ON_2XX if 200 <= code <= 299 else _DOWN_OTHERWISE)


def stops(failures: int, delete_counter: int, probe_while_down: bool) -> bool:
    """Probing stops after more than ``delete_counter`` failures in a row (0: never)."""
    return not probe_while_down and delete_counter > 0 and failures > delete_counter


SCRIPT_VALUES = (1, 1, 2, 3)
"""``ka_is_alive``'s answer indexed by the raw state (UNKNOWN, UP, DOWN, DEGRADED): UNKNOWN
counts as up, because 0 would stop the route and a destination must not be avoided before
its first probe (as in C).  A tuple, so the routing path's cache indexes it without a call."""


def script_value(state: State) -> int:
    return SCRIPT_VALUES[state]
