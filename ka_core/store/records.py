"""What callers get back from the table: snapshots that do not change under them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ka_core.state import State


class Summary(NamedTuple):
    """The ``keepalive.list`` view of a record (``state`` as the raw table value)."""

    slot: int
    uri: str
    owner: str
    state: int
    last_checked: float
    last_up: float
    last_down: float
    added: float


@dataclass(frozen=True, slots=True)
class Record:
    """A snapshot of one destination, as RPC and the API show it."""

    slot: int
    gen: int
    uri: str
    key: str
    owner: str
    state: State
    stopped: bool
    paused: bool
    failures: int
    successes: int
    timeouts: int
    interval_ms: int
    pings: int
    replies: int
    last_code: int
    last_checked: float
    last_up: float
    last_down: float
    rtt_ms: float
    rtt_avg_ms: float
    rtt_ewma_ms: float
    rtt_max_ms: float
    next_ping: float
    added: float
    state_cb: str
    response_cb: str
    settings: str
    user: str
    ejected: bool = False
    """Held out by real traffic (passive health): the state shown is DOWN."""
    ejections: int = 0
    by_retry_after: bool = False
    """The hold in force came from a Retry-After header."""
    out_until: float = 0.0
    """Wall time the ejection ends; 0 when not ejected."""
