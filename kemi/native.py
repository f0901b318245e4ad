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
import os
import sys
from urllib.parse import urlsplit

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # a checkout; installed, dist-packages is on sys.path already
    sys.path.insert(0, _ROOT)

from ka_core.errors import InvalidArgument  # noqa: E402
from ka_core.script import native_cfg  # noqa: E402
from ka_core.script.callbacks import DestinationEvent  # noqa: E402
from kemi import functions, runtime, tcp_keepalive  # noqa: E402
from kemi.handler import KeepaliveHandler, setup  # noqa: E402

NOT_MINE = -1
"""``ka_xhttp``: the request is not for a ka-kemi path, nothing was sent; the cfg goes on."""


def mod_init() -> NativeHandler:
    """app_python3's entry point: read the ``KA_*`` defines, create the shared table."""
    rt = setup()
    refusal = native_cfg.callback_refusal(rt.config.event_callback)
    if refusal is not None:
        rt.ksr.err(refusal)
        raise SystemExit(1)
    rt.config = dataclasses.replace(rt.config, event_callback=native_cfg.EVENT_METHOD)
    return NativeHandler()


def _words(name: str, arg: object) -> list[str] | None:
    """The argument string's words, or None (logged) when their count is off."""
    try:
        return native_cfg.split_words(name, arg)
    except InvalidArgument as exc:
        runtime.get().ksr.err(str(exc))
        return None


class NativeHandler(KeepaliveHandler):
    """The methods ``python_exec`` calls; each takes the message and one string."""

    def __init__(self) -> None:
        self.missing_routes: set[str] = set()
        """Event routes evrexec did not find: not tried again (pinger process)."""

    def ka_is_alive(self, msg: object, arg: object = None) -> int:
        """``"<uri>"``: 1 up (or not probed yet), 2 down, 3 degraded, -1 unknown/bad URI."""
        words = _words("ka_is_alive", arg)
        return -1 if words is None else functions.ka_is_alive(words[0])

    def ka_add_destination(self, msg: object, arg: object = None) -> int:
        """``"<uri> <owner> [<settings>]"``: 1 added, -1 bad input, duplicate or full."""
        words = _words("ka_add_destination", arg)
        return -1 if words is None else functions.ka_add_destination(*words)

    def ka_del_destination(self, msg: object, arg: object = None) -> int:
        """``"<uri> <owner>"``: 1 removed, -1 unknown destination or bad input."""
        words = _words("ka_del_destination", arg)
        return -1 if words is None else functions.ka_del_destination(*words)

    def ka_report(self, msg: object, arg: object = None) -> int:
        """``"<uri> <code> [<owner>|* [<retry-after seconds>]]"`` (e.g. ``"$du
        $T_reply_code"`` in failure_route; ``*``: any owner): 1 queued for passive health,
        -1 unknown destination or bad input."""
        words = _words("ka_report", arg)
        return -1 if words is None else functions.ka_report(*native_cfg.report_args(words))

    def ka_select(self, msg: object, arg: object = None) -> int:
        """``"<group> [<alg> [<pv without $> [<skip_degraded>]]]"`` (e.g. ``"gw rr"``, ``"gw
        first var(gw)"``): 1 a live destination is in ``$du`` (or that pv), -1 none or bad
        input."""
        words = _words("ka_select", arg)
        return -1 if words is None else functions.ka_select(*native_cfg.select_args(words))

    def ka_next(self, msg: object, arg: object = None) -> int:
        """In failure_route, ``""``: 1 the next candidate is set, -1 none left."""
        words = _words("ka_next", arg)
        return -1 if words is None else functions.ka_next()

    def ka_cluster_request(self, msg: object, arg: object = None) -> int:
        """Cluster mode: 1 a KDMQ, answered (``exit``), -1 anything else."""
        return functions.ka_cluster_request()

    def tcp_keepalive_enable(self, msg: object, arg: object = None) -> int:
        """``"[<conid>] <idle> <count> <interval>"``: 1 / -1."""
        words = _words("tcp_keepalive_enable", arg)
        return -1 if words is None else tcp_keepalive.tcp_keepalive_enable(*words)

    def tcp_keepalive_disable(self, msg: object, arg: object = None) -> int:
        """``""`` (this message's connection) or ``"<conid>"``: 1 / -1."""
        words = _words("tcp_keepalive_disable", arg)
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
        if not native_cfg.is_ka_path(path, rt.config.rpc_http_path, rt.config.metrics_path):
            return NOT_MINE
        return self.ksr_xhttp_event(msg, "xhttp:request")

    def deliver_event(self, evname: str, event: DestinationEvent) -> None:
        """Run ``event_route[evname]`` with the change in ``$var(ka_*)`` (pinger process)."""
        if evname in self.missing_routes:
            return
        ksr = runtime.get().ksr
        for name, value in native_cfg.event_vars(event):
            ksr.set_var(name, value)
        code, body = ksr.jsonrpc_exec(native_cfg.evrexec_request(evname, event.uri))
        if code == 200:
            return
        self.missing_routes.add(evname)
        is_error, text = native_cfg.evrexec_refusal(evname, body)
        (ksr.err if is_error else ksr.info)(text)
