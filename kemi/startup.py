"""Start-up checks: a configuration ka-kemi cannot work with stops Kamailio, with one line.

Each check runs where Kamailio shows what it really loaded, native cfg or KEMI alike:

* ``check_modules`` (``setup()``, in mod_init): app_python3's ``KSR`` has a submodule for
  each loaded module with KEMI functions: corex (pings leave through ``corex.sendx``),
  jsonrpcs (the pinger reads the listeners with ``corex.list_sockets`` through it), dmq
  with ``KA_CLUSTER``.
* ``watch_handler`` (``setup()``): the handler is only known when ``mod_init`` returns it; a
  profile hook on that frame sees the returned object and raises ``SystemExit`` in
  ``mod_init`` when it is not a ``KeepaliveHandler`` (no pinger route, no reply hook).
* ``child_init(0)``, the main process after rtimer forked its processes: no ``setup()``, or
  a pinger that did not start (no rtimer timer/exec for it, rtimer loaded after
  app_python3) or could not (a socket path the Kamailio user cannot write).  Returning -1
  there makes Kamailio exit (``init_child(PROC_MAIN) -- exiting``).

``SystemExit`` is the exception app_python3 logs at debug level only: the one line this
module writes is all an operator sees, not a traceback after it.
"""

from __future__ import annotations

import os
import pwd
import select
import sys
import time
from types import FrameType
from typing import NoReturn

from ka_core.probe.liveness import (
    NOT_SET_UP,
    PingerStatus,
    Verdict,
    missing_module,
    pinger_cannot_start,
    pinger_missing,
    startup_verdict,
    wrong_handler,
)
from kemi import pinger, runtime
from kemi.ksr_port import KsrPort

PROC_MAIN = 0
POLL_S = 0.01
"""The main process polls the pinger's status this often (Kamailio's start-up waits)."""
PARK_S = 3600.0
MOD_INIT = "mod_init"
"""app_python3's ``mod_init_function`` default: the frame whose return value is checked."""


def check_modules(ksr: KsrPort) -> None:
    """Raise ``RuntimeError`` naming the first module ka-kemi needs that is not loaded."""
    missing = missing_module(
        ksr.module_loaded,
        cluster=ksr.define("KA_CLUSTER") is not None,
        dispatcher=ksr.define("KA_DISPATCHER_BRIDGE") not in (None, "0"),
    )
    if missing is not None:
        raise RuntimeError(missing)


def watch_handler(ksr: KsrPort, base: type) -> None:
    """Check what the enclosing ``mod_init`` returns: not a ``base`` instance is refused."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_name != MOD_INIT:
        frame = frame.f_back
    if frame is None:
        return
    target = frame

    def on_event(event_frame: FrameType, event: str, value: object) -> None:
        if event_frame is not target or event != "return":
            return
        sys.setprofile(None)
        if value is not None and not isinstance(value, base):  # None: app_python3 says it
            ksr.err(wrong_handler(type(value).__name__))
            raise SystemExit(1)

    sys.setprofile(on_event)


def child_init(rank: int) -> int:
    """0, or -1 (Kamailio exits) in the main process when ka-kemi cannot run."""
    if rank != PROC_MAIN:
        return 0
    try:
        rt = runtime.get()
    except RuntimeError:
        from kemi.kamailio_ksr import KamailioKsr

        KamailioKsr().err(f"cannot start: config error: {NOT_SET_UP}")
        return -1
    started = rt.monotonic()
    while True:
        status, _beat = rt.table.header.pinger_life()
        verdict = startup_verdict(status, rt.monotonic() - started)
        if verdict is Verdict.READY:
            return 0
        if verdict is Verdict.FAILED:
            return -1  # the pinger logged why
        if verdict is Verdict.MISSING:
            rt.ksr.err(pinger_missing(status))
            return -1
        time.sleep(POLL_S)


def run_pinger(handler: object) -> None:
    """The rtimer route's body: the pinger, or one line and a wait when it cannot start."""
    try:
        rt = runtime.get()
    except RuntimeError:
        park()  # no setup(): the main process says so and stops Kamailio
    rt.table.header.write_pinger_life(PingerStatus.STARTING, rt.monotonic())
    try:
        p = pinger.Pinger(rt, handler=handler)
    except Exception as exc:
        rt.ksr.err(pinger_cannot_start(pwd.getpwuid(os.geteuid()).pw_name, exc))
        rt.table.header.write_pinger_life(PingerStatus.FAILED, rt.monotonic())
        park()
    p.run_forever()


def park() -> NoReturn:
    """Never return: rtimer would call the route again at once (a log line per call)."""
    while True:
        select.select([], [], [], PARK_S)
