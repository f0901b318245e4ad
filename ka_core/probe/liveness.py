"""Is the pinger there?  Verdicts on the pinger's life, and the watch on the reply hook.

Theory of operation.  The pinger writes its status and a heartbeat (the monotonic time of
its last step) into the shared table's header (``SharedTable.write_pinger_life``):

* the main process, in ``child_init(0)`` (rtimer, loaded before app_python3, has forked
  the pinger by then), waits for RUNNING or FAILED (``startup_verdict``): a pinger whose
  rtimer route never ran within ``START_WAIT_S`` makes Kamailio refuse to start;
* SIP workers: ``ka_is_alive`` of a destination still UNKNOWN asks ``is_running``; a
  pinger that never started, failed or stopped stepping makes it -1, not 1 ("up");
* the pinger itself feeds a ``ReplyWatch`` each step: pings going out for a few intervals
  without a single reply reaching the ring mean the reply hook is not wired (or every
  destination is dead), said once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class PingerStatus(enum.IntEnum):
    NOT_STARTED = 0
    STARTING = 1
    """The rtimer route ran: the pinger is opening its sockets."""
    RUNNING = 2
    FAILED = 3
    """It could not start (it logged why) and parks: Kamailio is told not to start."""


class Verdict(enum.Enum):
    WAIT = "wait"
    READY = "ready"
    FAILED = "failed"
    """The pinger logged the reason itself."""
    MISSING = "missing"
    """Its rtimer route never ran."""


START_WAIT_S = 5.0
"""How long the main process waits for the rtimer route to run (the example's timer fires
after 0.1 s; a 1 s rtimer interval still fits)."""
READY_WAIT_S = 60.0
"""Then for the pinger to open its sockets and schedule its destinations."""
STALE_AFTER_S = 20.0
"""A running pinger steps at least every 5 s (``kemi.pinger.MAX_SLEEP_S``): four missed
steps and SIP workers stop trusting UNKNOWN as up."""
WATCH_INTERVALS = 3
"""Intervals of pings without any reply before the reply hook warning."""
WATCH_MIN_PINGS = 3

PINGER_MISSING = (
    "the pinger did not start within {wait:.0f} s: the cfg needs an rtimer timer with mode=1 "
    "and an exec that runs the pinger (KEMI: "
    'modparam("rtimer", "timer", "name=ka;interval=100000u;mode=1;") and '
    'modparam("rtimer", "exec", "timer=ka;route=ksr_ka_pinger"); native cfg: docs/native.md), '
    "rtimer.so loaded before app_python3.so, and a handler that subclasses KeepaliveHandler; "
    "python3 -m kemi.check <cfg> says what is missing"
)
NOT_SET_UP = (
    "setup() was not called in mod_init: call kemi.handler.setup() there, before returning "
    "the handler"
)
NO_PINGER = (
    "ka_is_alive: the pinger is not running ({why}): destinations not probed yet answer -1, "
    "not 1; see the start-up log"
)
REPLY_HOOK = (
    "no reply to any of the {sent} pings sent in {secs:.0f} s: if the destinations answer, "
    "the replies do not reach ka-kemi's reply hook (KEMI: a ksr_reply_route of your own must "
    "return super().ksr_reply_route(msg) for them; native cfg: reply_route must run the "
    "reply hook, docs/native.md)"
)


def startup_verdict(status: int, waited_s: float) -> Verdict:
    """What the main process makes of the pinger's status after waiting ``waited_s``."""
    if status == PingerStatus.RUNNING:
        return Verdict.READY
    if status == PingerStatus.FAILED:
        return Verdict.FAILED
    if status == PingerStatus.STARTING:
        return Verdict.MISSING if waited_s >= START_WAIT_S + READY_WAIT_S else Verdict.WAIT
    return Verdict.MISSING if waited_s >= START_WAIT_S else Verdict.WAIT


def not_running_reason(status: int, beat: float, now: float, since_setup_s: float) -> str:
    """Empty when the pinger is running and stepping, or may still be starting
    (``since_setup_s`` after ``setup()``); otherwise why not, for the log."""
    if status == PingerStatus.RUNNING:
        if now - beat <= STALE_AFTER_S:
            return ""
        return f"no step for {now - beat:.0f} s"
    if status == PingerStatus.FAILED:
        return "it failed to start"
    if status == PingerStatus.STARTING and since_setup_s < START_WAIT_S + READY_WAIT_S:
        return ""
    if status == PingerStatus.NOT_STARTED and since_setup_s < START_WAIT_S:
        return ""
    return "it never started"


@dataclass(slots=True)
class ReplyWatch:
    """Counts pings until the first reply; one warning when none came for a few intervals."""

    sent: int = 0
    first_sent: float | None = None
    done: bool = False
    """A reply came (the hook works) or the warning was given: nothing more to say."""

    def observe(self, now: float, sent: int, replies: int, interval_s: float) -> str | None:
        """One pinger step: ``sent`` pings out, ``replies`` replies in; the warning or None."""
        if self.done:
            return None
        if replies:
            self.done = True
            return None
        if sent:
            self.sent += sent
            if self.first_sent is None:
                self.first_sent = now
        if self.first_sent is None or self.sent < WATCH_MIN_PINGS:
            return None
        secs = now - self.first_sent
        if secs < WATCH_INTERVALS * interval_s:
            return None
        self.done = True
        return REPLY_HOOK.format(sent=self.sent, secs=secs)


def missing_module(loaded: Callable[[str], bool], *, cluster: bool, dispatcher: bool) -> str | None:
    """The start-up error naming the first module ka-kemi needs that is not loaded."""
    needed = [
        ("corex", "pings leave through corex.sendx"),
        ("jsonrpcs", "the pinger reads Kamailio's listeners with corex.list_sockets"),
    ]
    if cluster:
        needed.append(("dmq", "KA_CLUSTER shares destinations over dmq"))
    if dispatcher:
        needed.append(("dispatcher", "KA_DISPATCHER_BRIDGE keeps dispatcher's states"))
    for module, why in needed:
        if not loaded(module):
            return (
                f'config error: module {module} is not loaded ({why}): add loadmodule "{module}.so"'
            )
    return None


def wrong_handler(type_name: str) -> str:
    return (
        f"cannot start: config error: mod_init returned a {type_name}, "
        f"which is not a KeepaliveHandler: subclass kemi.handler.KeepaliveHandler "
        "(it holds the pinger route and the reply hook)"
    )


def pinger_missing(status: int) -> str:
    """Why start-up stops when the verdict is ``MISSING``."""
    if status == PingerStatus.STARTING:
        return f"cannot start: the pinger did not get ready in {READY_WAIT_S:.0f} s"
    return f"cannot start: config error: {PINGER_MISSING.format(wait=START_WAIT_S)}"


def pinger_cannot_start(user: str, exc: object) -> str:
    return f"cannot start: config error: the pinger cannot start as user {user}: {exc}"
