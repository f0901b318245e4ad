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


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A final reply or a local timeout (code 408) for one ping."""

    uri: str
    owner: str
    code: int
    callback: str
    user: str


@dataclass(frozen=True, slots=True)
class ProbingStopped:
    """More than ``delete_counter`` consecutive failures: no more pings until re-added."""

    uri: str
    owner: str
    failures: int


Event = StateChanged | ResponseReceived | ProbingStopped
