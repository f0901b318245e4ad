"""State changes to the script: the ``event_callback`` method of the handler object, as
dispatcher's ``event_callback`` in KEMI, and the developer API's callbacks with their RTT.

The method runs in the **pinger process**, in its core thread (the only thread that calls
``KSR`` there), one change at a time, in the order the prober applied them: each change is
delivered exactly once, and in order per destination.  It is called as
``method(evname, event)``: ``evname`` is ``keepalive:dst-up``, ``keepalive:dst-down`` or
``keepalive:dst-degraded``; ``event`` a ``DestinationEvent``.  A destination's first state
(out of UNKNOWN) is delivered only with ``event_initial`` 1.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from ka_core.events import StateChanged
from ka_core.state import State
from kemi.api import decode_user
from kemi.runtime import Runtime

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


class EventSink:
    def __init__(self, rt: Runtime, handler: object) -> None:
        self._rt = rt
        self._method: Callable[[str, DestinationEvent], object] | None = None
        self._initial = bool(rt.config.event_initial)
        name = rt.config.event_callback
        if name:
            method = getattr(handler, name, None)
            if callable(method):
                self._method = method
            else:
                rt.ksr.err(
                    f"event_callback {name!r}: the script's handler has no such method; "
                    "state changes are only logged"
                )

    def deliver(self, event: StateChanged) -> None:
        if self._method is None or event.new not in EVENT_NAMES:
            return
        if event.old is State.UNKNOWN and not self._initial:
            return
        self._method(
            EVENT_NAMES[event.new],
            DestinationEvent(
                event.uri, event.owner, int(event.old), int(event.new), event.code,
                round(event.rtt_ms, 3), decode_user(event.user),
            ),
        )  # fmt: skip


@functools.lru_cache(maxsize=256)
def _takes_rtt(callback: Callable[..., object]) -> bool:
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "rtt_ms" or p.kind is p.VAR_KEYWORD for p in params)


def call_with_rtt(callback: Callable[..., object], rtt_ms: float, *args: object) -> None:
    """A developer API callback, with ``rtt_ms=`` when it declares it (C's three arguments
    otherwise)."""
    if _takes_rtt(callback):
        callback(*args, rtt_ms=round(rtt_ms, 3))
    else:
        callback(*args)
