"""Destination states and the transition table.

Theory of operation: a destination starts UNKNOWN.  Each probe ends in one outcome: a 2xx
final reply is SUCCESS; any other final reply, or no final reply within the ping timeout, is
FAILURE.  SUCCESS resets the consecutive-failure counter; FAILURE increments it.  When the
counter passes ``delete_counter`` (and ``delete_counter`` is not 0) probing stops: the
destination stays listed as DOWN and only re-adding it resumes probing (C: "5071 got 6
OPTIONS and then no more").  A reply that arrives after probing stopped is never applied
(C bug #3028: a late 200 made a stopped destination "alive forever").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class State(enum.IntEnum):
    """Values match the C module (``KA_STATE_*``) and the RPC ``state:`` field."""

    UNKNOWN = 0
    UP = 1
    DOWN = 2


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


TRANSITIONS: Mapping[tuple[State, Outcome], State] = {
    (State.UNKNOWN, Outcome.SUCCESS): State.UP,
    (State.UNKNOWN, Outcome.FAILURE): State.DOWN,
    (State.UP, Outcome.SUCCESS): State.UP,
    (State.UP, Outcome.FAILURE): State.DOWN,
    (State.DOWN, Outcome.SUCCESS): State.UP,
    (State.DOWN, Outcome.FAILURE): State.DOWN,
}


def outcome_of(code: int) -> Outcome:
    """2xx is success; every other final code (including a local 408) is failure."""
    return Outcome.SUCCESS if 200 <= code <= 299 else Outcome.FAILURE


def changes_state(state: int, code: int) -> bool:
    """Whether a final reply ``code`` moves a destination out of ``state`` (raw table value).

    Every state goes UP on success and DOWN on failure (``TRANSITIONS``), so this is one
    comparison: it runs in the SIP worker for every reply to a ping.
    """
    return state != (State.UP.value if 200 <= code <= 299 else State.DOWN.value)


@dataclass(frozen=True, slots=True)
class Step:
    """Result of applying one outcome to a destination."""

    state: State
    failures: int
    stopped: bool
    changed: bool


def apply(state: State, failures: int, outcome: Outcome, delete_counter: int) -> Step:
    """Apply one probe outcome; ``delete_counter`` 0 means never stop probing."""
    new_state = TRANSITIONS[(state, outcome)]
    new_failures = 0 if outcome is Outcome.SUCCESS else failures + 1
    stopped = delete_counter > 0 and new_failures > delete_counter
    return Step(new_state, new_failures, stopped, new_state is not state)


SCRIPT_VALUES = (1, 1, 2)
"""``ka_is_alive``'s answer indexed by the raw state (UNKNOWN, UP, DOWN): UNKNOWN counts as
up, because 0 would stop the route and a destination must not be avoided before its first
probe (as in C).  A tuple, so the routing path's cache indexes it without a call."""


def script_value(state: State) -> int:
    return SCRIPT_VALUES[state]
