"""ka-kemi from a native kamailio.cfg: the script ``modparam("app_python3", "load", ...)`` names
when the cfg keeps its native routing language (no ``cfgengine "python"``).

Theory of operation.  app_python3 puts this file's directory (``kemi/``) first in
``sys.path``, imports the file as a top-level module ``native``, calls ``mod_init()`` and keeps
the object it returns.  ``python_exec("name", "arg")`` in the cfg then calls
``that_object.name(msg, "arg")`` (the argument string has its ``$pv``s expanded first), and the
method's int lands in ``$rc``.  So every function below is a method of ``NativeHandler`` with
one optional string argument, and returns the KEMI function's code (never 0: in a native
route 0 means ``exit``).  Inside an ``if``, a call reduces to true (> 0) or false, so only
``$rc`` tells 1 from 2 (docs/native.md).

State changes reach ``event_route[keepalive:dst-up]``, ``[keepalive:dst-down]`` and
``[keepalive:dst-degraded]``: the pinger's core thread (the one thread that calls Kamailio
there) sets ``$var(ka_uri)`` ... ``$var(ka_rtt_ms)`` and runs the block through evrexec's
``evrexec.run`` RPC (via jsonrpcs, in the same process), once per change, in order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from urllib.parse import urlsplit

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # a checkout; installed, dist-packages is on sys.path already
    sys.path.insert(0, _ROOT)

from kemi import functions, runtime, tcp_keepalive  # noqa: E402
from kemi.events import DestinationEvent  # noqa: E402
from kemi.handler import KeepaliveHandler, setup  # noqa: E402

EVENT_METHOD = "deliver_event"
"""The handler method the pinger's ``EventSink`` calls on each state change."""
EVENT_VARS = ("uri", "owner", "old_state", "new_state", "code", "rtt_ms")
"""``$var(ka_<name>)`` set before each event route runs."""
NOT_MINE = -1
"""``ka_xhttp``: the request is not for a ka-kemi path, nothing was sent; the cfg goes on."""


def mod_init() -> NativeHandler:
    """app_python3's entry point: read the ``KA_*`` defines, create the shared table."""
    rt = setup()
    if rt.config.event_callback:
        text = (
            f"KA_EVENT_CALLBACK {rt.config.event_callback!r} has no use in a native cfg: "
            "state changes go to event_route[keepalive:dst-up|dst-down|dst-degraded]"
        )
        rt.ksr.err(f"cannot start: {text}")
        raise SystemExit(1)
    rt.config = dataclasses.replace(rt.config, event_callback=EVENT_METHOD)
    return NativeHandler()


def _words(name: str, arg: object, usage: str, least: int, most: int) -> list[str] | None:
    """The argument string split on white space, or None (logged) when the count is off."""
    words = arg.split() if isinstance(arg, str) else []
    if least <= len(words) <= most:
        return words
    runtime.get().ksr.err(f'{name}: use python_exec("{name}", "{usage}"), not {arg!r}')
    return None


class NativeHandler(KeepaliveHandler):
    """The methods ``python_exec`` calls; each takes the message and one string."""

    def __init__(self) -> None:
        self.missing_routes: set[str] = set()
        """Event routes evrexec did not find: not tried again (pinger process)."""

    def ka_is_alive(self, msg: object, arg: object = None) -> int:
        """``"<uri>"``: 1 up (or not probed yet), 2 down, 3 degraded, -1 unknown/bad URI."""
        words = _words("ka_is_alive", arg, "<uri>", 1, 1)
        return -1 if words is None else functions.ka_is_alive(words[0])

    def ka_add_destination(self, msg: object, arg: object = None) -> int:
        """``"<uri> <owner> [<settings>]"``: 1 added, -1 bad input, duplicate or full."""
        words = _words("ka_add_destination", arg, "<uri> <owner> [<settings>]", 2, 3)
        return -1 if words is None else functions.ka_add_destination(*words)

    def ka_del_destination(self, msg: object, arg: object = None) -> int:
        """``"<uri> <owner>"``: 1 removed, -1 unknown destination or bad input."""
        words = _words("ka_del_destination", arg, "<uri> <owner>", 2, 2)
        return -1 if words is None else functions.ka_del_destination(*words)

    def ka_report(self, msg: object, arg: object = None) -> int:
        """``"<uri> <code> [<owner>|* [<retry-after seconds>]]"`` (e.g. ``"$du
        $T_reply_code"`` in failure_route; ``*``: any owner): 1 queued for passive health,
        -1 unknown destination or bad input."""
        usage = "<uri> <code> [<owner>|* [<retry-after>]]"
        words = _words("ka_report", arg, usage, 2, 4)
        if words is not None and len(words) > 2 and words[2] == "*":
            words[2] = ""
        return -1 if words is None else functions.ka_report(*words)

    def ka_cluster_request(self, msg: object, arg: object = None) -> int:
        """Cluster mode: 1 a KDMQ, answered (``exit``), -1 anything else."""
        return functions.ka_cluster_request()

    def tcp_keepalive_enable(self, msg: object, arg: object = None) -> int:
        """``"[<conid>] <idle> <count> <interval>"``: 1 / -1."""
        words = _words("tcp_keepalive_enable", arg, "[<conid>] <idle> <count> <interval>", 3, 4)
        return -1 if words is None else tcp_keepalive.tcp_keepalive_enable(*words)

    def tcp_keepalive_disable(self, msg: object, arg: object = None) -> int:
        """``""`` (this message's connection) or ``"<conid>"``: 1 / -1."""
        words = [] if arg is None else _words("tcp_keepalive_disable", arg, "[<conid>]", 0, 1)
        return -1 if words is None else tcp_keepalive.tcp_keepalive_disable(*words)

    def ka_reply(self, msg: object, arg: object = None) -> int:
        """First statement of ``reply_route``: 0 for a reply to our ping (Kamailio drops it
        before tm sees it), 1 for any other reply (the route goes on)."""
        return self.ksr_reply_route(msg)

    def ka_pinger(self, msg: object, arg: object = None) -> int:
        """The rtimer ``mode=1`` route's only statement: becomes the pinger, never returns."""
        return self.ksr_ka_pinger(msg, "rtimer")

    def ka_xhttp(self, msg: object, arg: object = None) -> int:
        """In ``event_route[xhttp:request]``: 1 when the path is ka-kemi's (JSON-RPC or
        metrics; answered, ``exit``), ``NOT_MINE`` (-1) otherwise, with nothing sent."""
        rt = runtime.get()
        path = urlsplit(rt.ksr.http_request().url).path
        if path not in (rt.config.rpc_http_path, rt.config.metrics_path or None):
            return NOT_MINE
        return self.ksr_xhttp_event(msg, "xhttp:request")

    def deliver_event(self, evname: str, event: DestinationEvent) -> None:
        """Run ``event_route[evname]`` with the change in ``$var(ka_*)`` (pinger process)."""
        if evname in self.missing_routes:
            return
        ksr = runtime.get().ksr
        values = (event.uri, event.owner, event.old_state, event.new_state, event.code)
        for name, value in zip(EVENT_VARS, (*values, round(event.rtt_ms)), strict=True):
            ksr.set_var(f"ka_{name}", value if isinstance(value, int) else str(value))
        request = {"jsonrpc": "2.0", "method": "evrexec.run", "params": [evname, event.uri]}
        code, body = ksr.jsonrpc_exec(json.dumps(request))
        if code == 200:
            return
        self.missing_routes.add(evname)
        if "Method Not Found" in str(body):
            ksr.err(f"evrexec.so is not loaded: state changes cannot reach event_route[{evname}]")
        else:
            ksr.info(f"no event_route[{evname}] in the cfg: those changes are only logged")
