"""Passive health in virtual time: reported outcomes eject a destination after the
configured count, for base x times ejected up to the cap, never more than the group's share,
and it comes back at the end of that time or at the next alive probe."""

from __future__ import annotations

import threading

import pytest

from ka_core.config.kaconfig import load_config
from ka_core.errors import InvalidArgument
from ka_core.events import Event, StateChanged
from ka_core.ops import metrics
from ka_core.ops.commands import RpcCommands
from ka_core.policy import OFF, Ejection
from ka_core.probe.outlier import Outlier, count, may_eject, parse_retry_after
from ka_core.probe.prober import Ping, Prober
from ka_core.settings import ejection_of, parse_settings
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.ring import outcome
from ka_core.store.ring import retry_after as ring_retry_after
from ka_core.store.table import SharedTable, buffer_size

START = 100.0
POLICY = Ejection(after=3, base_s=10, max_s=25, max_percent=50)


class Passive:
    """Destinations of owner ``gw`` pinged once (answered 200, so UP) and a prober fed
    reports by hand; ``now`` is virtual and also the wall clock."""

    def __init__(self, n: int = 1, ejection: Ejection = POLICY, *settings: str) -> None:
        buf = bytearray(buffer_size(16, 256))
        SharedTable.format_buffer(buf, 16, 256, 60)
        self.table = SharedTable(buf, threading.Lock())
        texts = list(settings) + [""] * (n - len(settings))
        self.slots = [
            registry.add(self.table, f"10.0.0.{i + 1}", "gw", interval_s=None, wall=0,
                         settings=text).slot
            for i, text in enumerate(texts)
        ]  # fmt: skip
        self.prober = Prober(self.table, delete_counter=0, ping_timeout_s=1.0, ejection=ejection)
        self.events: list[Event] = []
        self.now = START
        self.poll()  # adopts the start-up list, pinged at the next step
        for ping in self.poll():
            self.table.push_reply(ping.seq, 200, self.now, self.now)
        self.poll()
        assert [self.state(i) for i in range(n)] == [State.UP] * n
        self.events.clear()

    def poll(self, at: float | None = None) -> list[Ping]:
        self.now = self.now if at is None else at
        step = self.prober.step(self.now, self.now, self.table.drain())
        self.events += step.events
        return step.pings

    def report(self, index: int, *codes: int) -> None:
        slot = self.slots[index]
        for code in codes:
            assert self.table.push(outcome(slot, self.table.hot(slot)[0], code, self.now, 0, 0))
            self.poll()

    def state(self, index: int = 0) -> State:
        return self.table.read(self.slots[index]).state

    def ejected(self) -> list[bool]:
        return [self.table.read(s).ejected for s in self.slots]

    def changes(self) -> list[tuple[State, State, int]]:
        return [(e.old, e.new, e.code) for e in self.events if isinstance(e, StateChanged)]


def test_duration_grows_with_each_ejection_up_to_the_cap() -> None:
    assert [POLICY.duration(n) for n in (1, 2, 3, 4)] == [10.0, 20.0, 25.0, 25.0]


def test_share_allows_at_least_one_and_then_the_percentage() -> None:
    assert may_eject(4, 0, 10), "one host always, as Envoy"
    assert not may_eject(4, 1, 10)
    assert may_eject(4, 1, 50) and not may_eject(4, 2, 50)
    assert may_eject(4, 3, 100)


def test_a_code_that_is_not_a_failure_resets_the_count() -> None:
    o = Outlier(1, "gw", POLICY)
    assert [count(o, c) for c in (503, 503, 200, 503, 408, 500)] == [
        False, False, False, False, False, True,
    ]  # fmt: skip
    assert not count(Outlier(1, "gw", POLICY), 486), "a 4xx other than 408 is no failure"


def test_ejected_after_the_count_and_back_when_the_time_ends() -> None:
    p = Passive()
    p.report(0, 503, 503)
    assert p.state() is State.UP and p.ejected() == [False]
    p.report(0, 503)
    rec = p.table.read(p.slots[0])
    assert (rec.state, rec.ejected, rec.ejections, rec.out_until) == (
        State.DOWN, True, 1, int(START + 10),
    )  # fmt: skip
    assert p.changes() == [(State.UP, State.DOWN, 503)], "an event as for a probe result"
    p.poll(START + 9.9)
    assert p.ejected() == [True]
    p.poll(START + 10)
    assert (p.state(), p.ejected()) == (State.UP, [False])
    assert p.changes()[-1] == (State.DOWN, State.UP, 0), "and an event back"


def test_each_ejection_lasts_longer_up_to_the_cap() -> None:
    p = Passive()
    ends = []
    for _ in range(4):
        p.report(0, 503, 503, 503)
        ends.append(p.prober._next_reinstatement() - p.now)  # type: ignore[operator]
        p.poll(p.now + 30)
        assert p.ejected() == [False]
    assert ends == [10.0, 20.0, 25.0, 25.0]


def test_an_alive_probe_reinstates_a_failed_one_does_not() -> None:
    p = Passive(1, Ejection(after=1, base_s=1000, max_s=1000))
    p.report(0, 500)
    assert p.ejected() == [True]
    (ping,) = p.poll(START + 60)
    p.table.push_reply(ping.seq, 503, p.now, p.now)
    p.poll()
    assert (p.state(), p.ejected()) == (State.DOWN, [True]), "a failed probe keeps it out"
    (ping,) = p.poll(START + 120)
    p.table.push_reply(ping.seq, 200, p.now, p.now)
    p.poll()
    assert (p.state(), p.ejected()) == (State.UP, [False])
    assert p.changes()[-1] == (State.DOWN, State.UP, 200)


def test_a_fault_on_every_gateway_ejects_at_most_the_share() -> None:
    p = Passive(4)
    for i in range(4):
        p.report(i, 503, 503, 503)
    assert p.ejected().count(True) == 2, "50 % of 4"
    p.poll(START + 10)
    assert p.ejected() == [False] * 4
    assert Passive(4, Ejection(after=1)).ejected() == [False] * 4
    few = Passive(4, Ejection(after=1, max_percent=10))
    for i in range(4):
        few.report(i, 503)
    assert few.ejected().count(True) == 1, "10 % of 4: still one"


def test_off_by_default_and_on_for_one_destination_by_its_settings() -> None:
    p = Passive(2, OFF, "eject_after=2;eject_time=5")
    p.report(1, *[503] * 10)
    p.report(0, 503)
    assert p.ejected() == [False, False] and p.changes() == []
    p.report(0, 503)
    assert p.ejected() == [True, False]
    p.poll(START + 5)
    assert p.ejected() == [False, False]
    off = Passive(1, POLICY, "eject_after=0")
    off.report(0, *[503] * 5)
    assert off.ejected() == [False]


def test_a_report_for_a_deleted_destination_changes_nothing() -> None:
    p = Passive(1, Ejection(after=1))
    slot, gen = p.slots[0], p.table.hot(p.slots[0])[0]
    registry.remove(p.table, "10.0.0.1", "gw")
    assert p.table.push(outcome(slot, gen, 503, p.now, 0, 0))
    p.poll()
    assert p.changes() == []


def test_rpc_and_metrics_show_the_cause() -> None:
    p = Passive(2, Ejection(after=1))
    commands = RpcCommands(p.table, lambda: p.now)
    (before,) = commands.call("keepalive.info", ["sip:10.0.0.1", "gw"])
    assert isinstance(before, dict) and "cause" not in before, "unchanged until it acts"
    text = metrics.render(metrics.PingerMetrics(2, 32, 0, 0.0, 0.0, False, 60),
                          metrics.from_rows(p.table.rows(metrics.ROW_FIELDS)))  # fmt: skip
    assert "destination_ejected" not in text
    p.report(0, 503)
    (info,) = commands.call("keepalive.info", ["sip:10.0.0.1", "gw"])
    assert isinstance(info, dict)
    assert (info["cause"], info["ejections"], info["state"]) == ("traffic", 1, 2)
    assert commands.call("keepalive.get", ["sip:10.0.0.1", "gw"]) == [
        {"uri": "sip:10.0.0.1", "owner": "gw", "state": 2, "cause": "traffic"}
    ]
    text = metrics.render(metrics.PingerMetrics(2, 32, 0, 0.0, 0.0, False, 60),
                          metrics.from_rows(p.table.rows(metrics.ROW_FIELDS)))  # fmt: skip
    assert 'kamailio_keepalive_destination_ejected{uri="sip:10.0.0.1",owner="gw"} 1' in text
    assert 'kamailio_keepalive_destination_ejected{uri="sip:10.0.0.2",owner="gw"} 0' in text
    p.poll(START + 30)
    (info,) = commands.call("keepalive.info", ["sip:10.0.0.1", "gw"])
    assert isinstance(info, dict) and (info["cause"], info["ejected until"]) == ("probe", "-\n")


def test_settings_and_parameters() -> None:
    s = parse_settings("eject_codes=5xx,!503,408;eject_after=3;eject_max=60;eject_time=7")
    assert s.text == "eject_after=3;eject_codes=5xx,!503,408;eject_time=7;eject_max=60"
    e = ejection_of(s, OFF)
    assert (e.after, e.base_s, e.max_s, 503 in e.codes, 502 in e.codes) == (3, 7, 60, False, True)
    assert ejection_of(parse_settings(""), OFF) == OFF.__class__(after=0)
    config = load_config({"PASSIVE": "1", "EJECT_MAX_PERCENT": "34", "EJECT_AS": "down"})
    assert config.ejection == Ejection(after=5, max_percent=34, as_down=True)
    assert load_config({}).ejection.after == 0, "off by default"
    assert load_config({"EJECT_AFTER": "2"}).ejection.after == 0, "KA_PASSIVE turns it on"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("eject_after=-1", "setting eject_after: -1 out of range [1, 1000]"),
        ("eject_after=x", "setting eject_after: not an integer"),
        ("eject_codes=5yy", "setting eject_codes: bad item '5yy'"),
        ("eject_time=0", "setting eject_time: 0 out of range"),
        ("eject_max=86401", "setting eject_max: 86401 out of range"),
    ],
)
def test_bad_settings_are_refused(text: str, error: str) -> None:
    with pytest.raises(InvalidArgument, match=error.replace("[", r"\[")):
        parse_settings(text)


@pytest.mark.parametrize(
    ("defines", "error"),
    [
        ({"PASSIVE": "2"}, "parameter passive: 2 out of range [0, 1]"),
        ({"EJECT_AFTER": "0"}, "parameter eject_after: 0 out of range"),
        ({"EJECT_CODES": "!5xx"}, "parameter eject_codes: '!5xx' leaves no code"),
        ({"EJECT_MAX_PERCENT": "0"}, "parameter eject_max_percent: 0 out of range"),
        ({"EJECT_AS": "gone"}, "parameter eject_as: 'gone' is not one of ejected, down"),
    ],
)
def test_bad_parameters_stop_the_start(defines: dict[str, str], error: str) -> None:
    with pytest.raises(InvalidArgument, match=error.replace("[", r"\[")):
        load_config(defines)


def test_the_share_follows_adds_to_the_group() -> None:
    p = Passive(2, Ejection(after=1, max_percent=50))
    p.report(0, 503)
    p.report(1, 503)
    assert p.ejected() == [True, False], "one of two is 50 %"
    for host in ("10.0.0.8", "10.0.0.9"):
        registry.add(p.table, host, "gw", interval_s=None, wall=0)
    registry.add(p.table, "10.0.0.7", "other", interval_s=None, wall=0)
    p.report(1, 503)
    assert p.ejected() == [True, True], "two of four"


RETRY = Ejection(retry_max_s=20)
"""Passive health off, Retry-After on (capped at 20 s)."""


def answer(p: Passive, code: int, retry_after: int = 0, at: float | None = None) -> None:
    """The next ping of destination 0, answered ``code`` with that Retry-After."""
    (ping,) = p.poll(at)
    if retry_after:
        assert p.table.push(ring_retry_after(ping.seq, retry_after), 1)
    p.table.push_reply(ping.seq, code, p.now, p.now)
    p.poll()


def test_parse_retry_after() -> None:
    texts = ["120", " 18000;duration=3600", "120 (I'm in a meeting)", "0", "soon", "", "-5"]
    assert [parse_retry_after(t) for t in texts] == [120, 18000, 120, 0, 0, 0, 0]
    assert [parse_retry_after(v) for v in (30, None, True, 10**9)] == [30, 0, 0, 86400]


def test_a_pings_retry_after_holds_it_out_through_alive_probes_until_then() -> None:
    p = Passive(1, Ejection(retry_max_s=200))
    answer(p, 503, 90, at=START + 60)
    held_at = p.now
    rec = p.table.read(p.slots[0])
    assert (rec.state, rec.ejected, rec.by_retry_after, rec.ejections) == (
        State.DOWN,
        True,
        True,
        0,
    )
    assert rec.out_until == int(held_at + 90)
    answer(p, 200, at=held_at + 60)
    assert (p.state(), p.ejected()) == (State.DOWN, [True]), "the peer said 90 s"
    p.poll(held_at + 89.9)
    assert p.ejected() == [True]
    p.poll(held_at + 90)
    assert (p.state(), p.ejected()) == (State.UP, [False]), "the probe's state: UP"


def test_retry_after_is_capped_and_only_for_its_codes() -> None:
    p = Passive(1, RETRY)
    answer(p, 503, 1000, at=START + 60)
    assert p.prober._next_reinstatement() == p.now + 20, "capped at retry_max_s"
    other = Passive(1, RETRY)
    answer(other, 500, 30, at=START + 60)
    assert other.ejected() == [False], "500 is not in the Retry-After codes"
    off = Passive(1, OFF)
    answer(off, 503, 30, at=START + 60)
    assert off.ejected() == [False] and off.state() is State.DOWN, "off: the probe as before"


def test_a_reported_retry_after_holds_without_passive_health_and_outside_the_share() -> None:
    p = Passive(2, Ejection(after=1, max_percent=10, retry_max_s=20))
    p.report(0, 503)
    assert p.ejected() == [True, False]
    slot = p.slots[1]
    assert p.table.push(outcome(slot, p.table.hot(slot)[0], 503, p.now, 0, 5))
    p.poll()
    assert p.ejected() == [True, True], "the peer asked: no share applies"
    assert p.table.read(slot).by_retry_after
    p.poll(START + 5)
    assert p.ejected() == [True, False]
    alone = Passive(1, RETRY)
    alone.report(0, *[503] * 10)
    assert alone.ejected() == [False], "no Retry-After, passive off: nothing"


def test_info_shows_a_retry_after_hold() -> None:
    p = Passive(1, RETRY)
    commands = RpcCommands(p.table, lambda: p.now)
    answer(p, 503, 15, at=START + 60)
    (info,) = commands.call("keepalive.info", ["sip:10.0.0.1", "gw"])
    assert isinstance(info, dict)
    assert (info["cause"], info["ejections"]) == ("retry-after", 0)
    assert info["ejected until"] != "-\n"


def test_a_retry_after_during_a_longer_ejection_still_holds_against_probes() -> None:
    p = Passive(1, Ejection(after=1, base_s=1000, max_s=1000, retry_max_s=200))
    p.report(0, 500)
    slot = p.slots[0]
    assert p.table.push(outcome(slot, p.table.hot(slot)[0], 503, p.now, 0, 90))
    p.poll()
    rec = p.table.read(slot)
    assert (rec.ejected, rec.by_retry_after) == (True, False), "the ejection ends later"
    answer(p, 200, at=START + 60)
    assert p.ejected() == [True], "the Retry-After's 90 s are not over"
    answer(p, 200, at=START + 120)
    assert (p.state(), p.ejected()) == (State.UP, [False])
