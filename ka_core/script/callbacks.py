"""State changes and replies as the script sees them: its callbacks, its event method and the
log line of each event.

The pinger's core thread (``kemi.pinger``) acts on every event the node returns: it logs
``log_line(event)``, calls the developer API callback ``user_call(event)`` names (with
``call_with_rtt``) and hands a state change to the handler's event method as
``script_event(event, initial)``.  Callbacks are stored by import path (``callback_path``)
because the process that adds a destination is not the one that runs the callback;
``user_attr`` travels as JSON (``encode_user``/``decode_user``).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass

from ka_core.errors import InvalidArgument
from ka_core.events import Event, ProbingStopped, StateChanged
from ka_core.state import State

Callback = Callable[..., object] | str | None
INFO, WARN = "info", "warn"

EVENT_NAMES = {
    State.UP: "keepalive:dst-up",
    State.DOWN: "keepalive:dst-down",
    State.DEGRADED: "keepalive:dst-degraded",
}


@dataclass(frozen=True, slots=True)
class DestinationEvent:
    uri: str
    owner: str
    old_state: int
    new_state: int
    code: int
    """The reply code that made the change; 408 when no reply came."""
    rtt_ms: float
    """Its round trip; 0.0 when no reply came."""
    user: object
    """The developer API's ``user_attr`` (None for other destinations)."""


def callback_path(callback: Callback) -> str:
    """Import path of a callback, checked to be importable by another process."""
    if callback is None or isinstance(callback, str):
        return callback or ""
    module, qualname = getattr(callback, "__module__", None), getattr(callback, "__qualname__", "")
    if not module or "<" in qualname:
        raise InvalidArgument("callbacks must be module-level functions (no lambdas or closures)")
    return f"{module}:{qualname}"


def encode_user(user_attr: object) -> str:
    """``user_attr`` as stored in the table: JSON, empty for None."""
    try:
        return "" if user_attr is None else json.dumps(user_attr)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"user_attr is not JSON-serialisable: {exc}") from None


def decode_user(user: str) -> object:
    return None if not user else json.loads(user)


def script_event(event: StateChanged, initial: bool) -> tuple[str, DestinationEvent] | None:
    """The event route name and the event the script's method gets, or None: no route for
    that state, or a first state (out of UNKNOWN) without ``event_initial``."""
    if event.new not in EVENT_NAMES or (event.old is State.UNKNOWN and not initial):
        return None
    return EVENT_NAMES[event.new], DestinationEvent(
        event.uri, event.owner, int(event.old), int(event.new), event.code,
        round(event.rtt_ms, 3), decode_user(event.user),
    )  # fmt: skip


def log_line(event: Event) -> tuple[str, str] | None:
    """(level, text) the pinger logs for an event; None for a reply."""
    if isinstance(event, StateChanged):
        who = f"destination {event.uri} owner {event.owner}"
        return INFO, f"{who}: {event.old.name} -> {event.new.name}"
    if isinstance(event, ProbingStopped):
        return WARN, (
            f"destination {event.uri} owner {event.owner}: {event.failures} "
            f"consecutive failures, probing stopped (state {State.DOWN.name}) "
            "until it is added again"
        )
    return None


def user_call(event: Event) -> tuple[str, float, tuple[object, ...]] | None:
    """(callback path, RTT, C's three arguments) of the developer API callback, or None."""
    if isinstance(event, ProbingStopped) or not event.callback:
        return None
    value = int(event.new) if isinstance(event, StateChanged) else event.code
    return event.callback, event.rtt_ms, (event.uri, value, decode_user(event.user))


@functools.lru_cache(maxsize=256)
def takes_rtt(callback: Callable[..., object]) -> bool:
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "rtt_ms" or p.kind is p.VAR_KEYWORD for p in params)


def call_with_rtt(callback: Callable[..., object], rtt_ms: float, *args: object) -> None:
    """A developer API callback, with ``rtt_ms=`` when it declares it (C's three arguments
    otherwise)."""
    if takes_rtt(callback):
        callback(*args, rtt_ms=round(rtt_ms, 3))
    else:
        callback(*args)
