"""The pinger's life (ka_core.probe.liveness), the log rate limit (ka_core.loglimit) and the glue
that uses them: start-up refusals (kemi.startup), ka_is_alive without a pinger, the reply
hook warning (kemi.pinger)."""

from __future__ import annotations

import sys

import pytest

from ka_core.loglimit import MAX_KINDS, LogLimiter
from ka_core.probe.liveness import (
    READY_WAIT_S,
    STALE_AFTER_S,
    START_WAIT_S,
    PingerStatus,
    ReplyWatch,
    Verdict,
    not_running_reason,
    startup_verdict,
)
from kemi import handler, pinger, runtime, startup
from kemi.functions import ka_add_destination, ka_is_alive
from tests.unit.conftest import Glue
from tests.unit.fake_ksr import FakeKsr


def test_startup_verdicts() -> None:
    assert startup_verdict(PingerStatus.RUNNING, 0.0) is Verdict.READY
    assert startup_verdict(PingerStatus.FAILED, 0.0) is Verdict.FAILED
    assert startup_verdict(PingerStatus.NOT_STARTED, START_WAIT_S - 0.1) is Verdict.WAIT
    assert startup_verdict(PingerStatus.NOT_STARTED, START_WAIT_S) is Verdict.MISSING
    assert startup_verdict(PingerStatus.STARTING, START_WAIT_S + 1) is Verdict.WAIT
    assert startup_verdict(PingerStatus.STARTING, START_WAIT_S + READY_WAIT_S) is Verdict.MISSING


def test_not_running_reasons() -> None:
    assert not_running_reason(PingerStatus.RUNNING, 100.0, 100.0 + STALE_AFTER_S, 999) == ""
    assert not_running_reason(PingerStatus.RUNNING, 100.0, 150.0, 999) == "no step for 50 s"
    assert not_running_reason(PingerStatus.FAILED, 0.0, 1.0, 1.0) == "it failed to start"
    assert not_running_reason(PingerStatus.NOT_STARTED, 0.0, 1.0, 1.0) == "", "still starting"
    assert not_running_reason(PingerStatus.NOT_STARTED, 0, 9, START_WAIT_S) == "it never started"
    assert not_running_reason(PingerStatus.STARTING, 0, 9, START_WAIT_S + 1) == ""
    assert not_running_reason(PingerStatus.STARTING, 0, 9, 99) == "it never started"


def test_reply_watch_warns_once_after_a_few_intervals_without_a_reply() -> None:
    watch = ReplyWatch()
    assert watch.observe(0.0, 0, 0, 1.0) is None, "nothing sent: nothing to say"
    assert watch.observe(1.0, 2, 0, 1.0) is None
    assert watch.observe(3.0, 1, 0, 1.0) is None, "3 pings but only 2 s"
    warning = watch.observe(4.0, 1, 0, 1.0)
    assert warning is not None and warning.startswith("no reply to any of the 4 pings sent in 3 s")
    assert "super().ksr_reply_route(msg)" in warning and "reply_route" in warning
    assert watch.observe(99.0, 5, 0, 1.0) is None, "said once"
    answered = ReplyWatch()
    answered.observe(1.0, 3, 0, 1.0)
    assert answered.observe(2.0, 0, 1, 1.0) is None and answered.done
    assert answered.observe(50.0, 9, 0, 1.0) is None, "one reply proves the hook works"


def test_log_limiter_counts_what_it_leaves_out() -> None:
    limiter = LogLimiter(window_s=10.0)
    assert limiter.admit("a", 0.0) == 0
    assert limiter.admit("a", 1.0) is None and limiter.admit("a", 9.9) is None
    assert limiter.admit("b", 2.0) == 0, "another kind is not hidden"
    assert limiter.admit("a", 10.0) == 2
    assert limiter.text("x", 2) == "x (2 more like it not logged since the previous one)"
    assert limiter.text("x", 0) == "x"


def test_log_limiter_is_bounded_for_messages_that_differ_each_call() -> None:
    limiter = LogLimiter(window_s=10.0)
    admitted = [limiter.admit(f"uri {i}", 0.0) for i in range(MAX_KINDS + 50)]
    assert admitted.count(0) == MAX_KINDS + 1, "then one shared kind"
    assert len(limiter._kinds) == MAX_KINDS + 1
    assert limiter.admit("new", 20.0) == 0, "old kinds make room once their window is over"
    assert len(limiter._kinds) == 1


def test_repeated_script_errors_are_rate_limited(glue: Glue) -> None:
    for _ in range(20):
        assert ka_is_alive("sip:h:50600000") == -1
    errors = glue.ksr.texts("err")
    assert len(errors) == 1 and errors[0].startswith("ka_is_alive: ")
    glue.clock.now += 11
    assert ka_is_alive("sip:h:50600000") == -1
    assert glue.ksr.texts("err")[-1].endswith("(19 more like it not logged since the previous one)")


def test_ka_is_alive_is_minus_one_for_unprobed_destinations_without_a_pinger(glue: Glue) -> None:
    uri = "sip:10.0.0.1:5060"
    assert ka_add_destination(uri, "t") == 1
    assert ka_is_alive(uri) == 1, "the pinger may still be starting"
    glue.clock.now += START_WAIT_S
    assert ka_is_alive(uri) == -1 and ka_is_alive(uri) == -1
    assert glue.ksr.texts("err") == [
        "ka_is_alive: the pinger is not running (it never started): destinations not probed yet "
        "answer -1, not 1; see the start-up log"
    ]
    glue.rt.table.header.write_pinger_life(PingerStatus.RUNNING, glue.clock.now)
    assert ka_is_alive(uri) == 1
    glue.clock.now += STALE_AFTER_S + 1
    assert ka_is_alive(uri) == -1
    assert len(glue.ksr.texts("err")) == 1, "said once per process"


def test_the_pinger_marks_itself_running_and_warns_about_the_reply_hook(glue: Glue) -> None:
    assert ka_add_destination("sip:10.0.0.1:5060", "t") == 1
    p = pinger.Pinger(glue.rt)
    for _ in range(12):
        p.run_once()
        glue.clock.now += 0.5
    status, beat = glue.rt.table.header.pinger_life()
    assert status == PingerStatus.RUNNING and beat == glue.clock.now - 0.5
    warnings = [w for w in glue.ksr.texts("warn") if "reply hook" in w]
    assert len(warnings) == 1 and "no reply to any of the" in warnings[0]


def test_child_init_of_the_main_process_waits_for_the_pinger(
    glue: Glue, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sleep(seconds: float) -> None:
        glue.clock.now += seconds

    monkeypatch.setattr(startup.time, "sleep", sleep)
    assert startup.child_init(3) == 0, "only the main process checks"
    assert startup.child_init(0) == -1
    [line] = glue.ksr.texts("err")
    assert line.startswith("cannot start: config error: the pinger did not start within 5 s")
    glue.rt.table.header.write_pinger_life(PingerStatus.FAILED, glue.clock.now)
    assert handler.KeepaliveHandler().child_init(0) == -1
    assert len(glue.ksr.texts("err")) == 1, "the pinger logged why"
    glue.rt.table.header.write_pinger_life(PingerStatus.RUNNING, glue.clock.now)
    assert handler.KeepaliveHandler().child_init(0) == 0
    glue.rt.table.header.write_pinger_life(PingerStatus.STARTING, glue.clock.now)
    assert startup.child_init(0) == -1
    assert glue.ksr.texts("err")[-1] == "cannot start: the pinger did not get ready in 60 s"


def test_child_init_without_setup_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []

    class Port(FakeKsr):
        def err(self, text: str) -> None:
            lines.append(text)

    monkeypatch.setattr(runtime, "_runtime", None)
    monkeypatch.setitem(sys.modules, "kemi.kamailio_ksr", type(sys)("fake"))
    sys.modules["kemi.kamailio_ksr"].KamailioKsr = Port  # type: ignore[attr-defined]
    assert startup.child_init(0) == -1
    assert lines == ["cannot start: config error: " + startup.NOT_SET_UP]


def test_a_pinger_that_cannot_start_says_why_once(
    glue_factory, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    glue = glue_factory(KA_RPC_SOCKET=f'"{tmp_path}/no/such/dir/ka.sock"')

    class Parked(Exception):
        pass

    def park() -> None:
        raise Parked

    monkeypatch.setattr(startup, "park", park)
    with pytest.raises(Parked):
        startup.run_pinger(None)
    [line] = glue.ksr.texts("err")
    assert "the pinger cannot start as user" in line
    assert f"cannot create the kamcmd socket {tmp_path}/no/such/dir/ka.sock" in line
    assert glue.rt.table.header.pinger_life()[0] == PingerStatus.FAILED


def test_missing_modules_stop_setup_with_one_line() -> None:
    for modules, defines, missing in [
        ({"jsonrpcs"}, {}, "corex"),
        ({"corex"}, {}, "jsonrpcs"),
        ({"corex", "jsonrpcs"}, {"KA_CLUSTER": "1"}, "dmq"),
    ]:
        ksr = FakeKsr(defines=defines, modules=modules)
        with pytest.raises(SystemExit):
            handler.setup(ksr)
        [line] = ksr.texts("err")
        assert line.startswith(f"cannot start: config error: module {missing} is not loaded")


def test_watch_handler_refuses_what_mod_init_returns_when_not_a_handler() -> None:
    ksr = FakeKsr()

    def mod_init(value: object) -> object:
        startup.watch_handler(ksr, handler.KeepaliveHandler)
        return value

    assert isinstance(mod_init(handler.KeepaliveHandler()), handler.KeepaliveHandler)
    assert mod_init(None) is None, "app_python3 reports None itself"
    with pytest.raises(SystemExit):
        mod_init(object())
    assert sys.getprofile() is None
    assert ksr.texts("err") == [
        "cannot start: config error: mod_init returned a object, which is not a "
        "KeepaliveHandler: subclass kemi.handler.KeepaliveHandler (it holds the pinger route "
        "and the reply hook)"
    ]
    startup.watch_handler(ksr, handler.KeepaliveHandler)  # not under a mod_init: no watch
    assert sys.getprofile() is None
