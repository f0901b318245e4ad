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

from collections.abc import Callable

from ka_core.events import StateChanged
from ka_core.script.callbacks import DestinationEvent, script_event
from kemi.runtime import Runtime


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
        found = None if self._method is None else script_event(event, self._initial)
        if self._method is not None and found is not None:
            self._method(*found)
