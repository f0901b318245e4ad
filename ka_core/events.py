"""Events the prober returns; the glue logs them and runs the user's callbacks."""

from __future__ import annotations

from dataclasses import dataclass

from ka_core.state import State


@dataclass(frozen=True, slots=True)
class StateChanged:
    uri: str
    owner: str
    old: State
    new: State
    callback: str
    """Import path (``module:function``) of the state-changed callback, or empty."""
    user: str
    code: int = 0
    """The reply code (408: no reply) that made the change."""
    rtt_ms: float = 0.0
    """Its round trip (0 for no reply)."""


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A final reply or a local timeout (code 408) for one ping."""

    uri: str
    owner: str
    code: int
    callback: str
    user: str
    rtt_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ProbingStopped:
    """More than ``delete_counter`` consecutive failures: no more pings until re-added."""

    uri: str
    owner: str
    failures: int


Event = StateChanged | ResponseReceived | ProbingStopped
