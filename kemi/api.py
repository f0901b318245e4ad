"""Developer API for other Python KEMI code (the C module's ``bind_keepalive`` table).

Callbacks run in the **pinger process**, in its core thread (the only thread there that
calls ``KSR``), one at a time, in the order results arrive.  They are stored by import path
(``module:function``), because the process that adds a destination (a SIP worker, the RPC
server) is not the one that runs the callback: pass a module-level function (or its
``"module:function"`` name) whose module the pinger process can import.  ``user_attr`` must
be JSON-serialisable; the callback gets a decoded copy.

* ``statechanged_clb(uri: str, state: int, user_attr)`` - state 1 UP, 2 DOWN, 3 DEGRADED;
* ``response_clb(uri: str, code: int, user_attr)`` - every final reply, 408 for a timeout
  (C passes tm's ``tmcb_params``; the reply code is what Python code can use).

A callback that declares a ``rtt_ms`` parameter (or ``**kwargs``) also gets the round trip
in milliseconds (0.0 for a timeout).  ``settings`` takes the per-destination settings of
``ka_core.settings`` (``"down_after=3;alive=2xx,404;socket=udp:10.0.0.1:5060"``).
"""

from __future__ import annotations

from ka_core.errors import InvalidArgument, KaError
from ka_core.script.callbacks import Callback, callback_path, encode_user
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.records import Record
from kemi import runtime


def add_destination(
    uri: str,
    owner: str,
    flags: int = 0,
    ping_interval: float | None = None,
    statechanged_clb: Callback = None,
    response_clb: Callback = None,
    user_attr: object = None,
    settings: object = "",
) -> int:
    """Monitor ``uri``; 0 on success, -1 on error (logged), as the C API returns.

    ``flags`` is accepted and unused, as in C.  ``ping_interval`` defaults to the module's
    (and then follows ``keepalive.interval``).
    """
    rt = runtime.get()
    try:
        if not isinstance(flags, int):
            raise InvalidArgument("flags must be an integer")
        rt.add(
            uri,
            owner,
            interval_s=ping_interval,
            state_cb=callback_path(statechanged_clb),
            response_cb=callback_path(response_clb),
            user=encode_user(user_attr),
            settings=settings,
        )
    except KaError as exc:
        rt.ksr.err(f"add_destination: {exc}")
        return -1
    return 0


def del_destination(uri: str, owner: str) -> int:
    """0 removed, -1 unknown destination or bad input (logged)."""
    rt = runtime.get()
    try:
        registry.remove(rt.table, uri, owner)
    except KaError as exc:
        rt.ksr.err(f"del_destination: {exc}")
        return -1
    return 0


def find_destination(uri: str, owner: str) -> Record | None:
    """A snapshot of the destination (state, counters, timestamps), or None."""
    try:
        return registry.get(runtime.get().table, uri, owner)
    except KaError:
        return None


def destination_state(uri: str) -> State | None:
    """State of the first destination with this URI (any owner), or None if unknown."""
    try:
        return registry.state_of(runtime.get().table, uri)
    except KaError:
        return None
