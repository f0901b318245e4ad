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


def changes_state(state: int, code: int) -> bool:
    """Whether a final reply ``code`` moves a destination with the default policy out of
    ``state`` (raw table value).

    Under that policy every state goes UP on 2xx and DOWN on anything else, so this is one
    comparison: it runs in the SIP worker for every reply to a ping.  For destinations with
    another policy the workers do not ask (``layout.FLAG_CUSTOM_POLICY``).
    """
    return state != (State.UP.value if 200 <= code <= 299 else State.DOWN.value)


def stops(failures: int, delete_counter: int, probe_while_down: bool) -> bool:
    """Probing stops after more than ``delete_counter`` failures in a row (0: never)."""
    return not probe_while_down and delete_counter > 0 and failures > delete_counter


SCRIPT_VALUES = (1, 1, 2, 3)
"""``ka_is_alive``'s answer indexed by the raw state (UNKNOWN, UP, DOWN, DEGRADED): UNKNOWN
counts as up, because 0 would stop the route and a destination must not be avoided before
its first probe (as in C).  A tuple, so the routing path's cache indexes it without a call."""


def script_value(state: State) -> int:
    return SCRIPT_VALUES[state]
