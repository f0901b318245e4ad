"""The health model in the prober, in virtual time: thresholds, alive codes, DEGRADED, DOWN
backoff, pause, runtime interval changes, per-destination From/socket and RTT statistics."""

from __future__ import annotations

import itertools
import threading

import pytest

from ka_core.events import Event, ProbingStopped, StateChanged
from ka_core.policy import DEFAULT_POLICY, Policy
from ka_core.probe.prober import Ping, Prober
from ka_core.settings import socket_tag
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.records import Record
from ka_core.store.table import SharedTable, buffer_size

START = 100.0
TIMEOUT = 1.0


class Probe:
    """A table with destinations added before the prober's first step (the start-up list,
    pinged at once), and a prober driven by hand."""

    def __init__(
        self,
        *settings: str,
        ping_interval: int = 10,
        policy: Policy = DEFAULT_POLICY,
        backoff: float = 0.0,
        delete_counter: int = 0,
    ) -> None:
        buf = bytearray(buffer_size(64, 256))
        SharedTable.format_buffer(buf, 64, 256, ping_interval)
        self.table = SharedTable(buf, threading.Lock())
        self.slots = [
            registry.add(self.table, f"10.0.0.{i + 1}", "t", interval_s=None, wall=0,
                         settings=text).slot
            for i, text in enumerate(settings)
        ]  # fmt: skip
        self.prober = Prober(
            self.table, delete_counter=delete_counter, ping_timeout_s=TIMEOUT, policy=policy,
            down_backoff_max_s=backoff,
        )  # fmt: skip
        self.prober.step(START, 0, self.table.drain())
        self.events: list[Event] = []
        self.round = 0

    def poll(self, now: float) -> list[Ping]:
        step = self.prober.step(now, now, self.table.drain())
        self.events += step.events
        return step.pings

    def answer(self, ping: Ping, code: int | None, at: float, local: int = 0) -> None:
        """Reply ``code`` at ``at`` (None: no reply, the ping times out at its deadline)."""
        if code is None:
            self.poll(at + TIMEOUT)
        else:
            self.table.push_reply(ping.seq, code, at, at, local=local)
            self.poll(at)

    def rounds(self, codes: list[int | None], rtt: float = 0.01) -> list[State]:
        """One ping per ``ping_interval`` to the first destination, answered with each code
        in turn (on from the last ``rounds``); its state after each."""
        states = []
        for code in codes:
            now = START + 10 * self.round
            self.round += 1
            (ping,) = self.poll(now)
            self.answer(ping, code, now + rtt)
            states.append(self.record().state)
        return states

    def record(self, index: int = 0) -> Record:
        return self.table.read(self.slots[index])

    def changes(self) -> list[tuple[State, State]]:
        return [(e.old, e.new) for e in self.events if isinstance(e, StateChanged)]

    def ping_times(self, end: float, code: int | None = None) -> list[float]:
        """Times of the pings sent while polling every 100 ms (None: never answered)."""
        times = []
        for tick in range(round(START * 10), round(end * 10)):
            now = tick / 10
            for ping in self.poll(now):
                times.append(now)
                if code is not None:
                    self.table.push_reply(ping.seq, code, now + 0.01, now)
        return times


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


# -- thresholds and alive codes ------------------------------------------------------------


def test_down_after_three_needs_three_timeouts_in_a_row() -> None:
    p = Probe("down_after=3")
    assert p.rounds([None, None, None, None]) == [State.UNKNOWN] * 2 + [State.DOWN] * 2
    assert p.changes() == [(State.UNKNOWN, State.DOWN)], "one change, emitted once"
    assert p.record().failures == 4


def test_a_reply_in_between_restarts_the_count_of_failures() -> None:
    p = Probe("down_after=3")
    assert p.rounds([200, None, None, 200, None, None]) == [State.UP] * 6
    assert p.rounds([None]) == [State.DOWN]  # round 7 would be the third in a row


def test_module_down_after_applies_without_settings() -> None:
    p = Probe("", policy=Policy(down_after=2))
    assert p.rounds([200, 503, 503]) == [State.UP, State.UP, State.DOWN]


def test_up_after_two_needs_two_alive_replies_to_leave_down_or_unknown() -> None:
    p = Probe("up_after=2")
    assert p.rounds([200, 200]) == [State.UNKNOWN, State.UP]
    assert p.rounds([503, 200, 200]) == [State.DOWN, State.DOWN, State.UP]
    assert p.changes() == [
        (State.UNKNOWN, State.UP), (State.UP, State.DOWN), (State.DOWN, State.UP),
    ]  # fmt: skip


def test_alive_codes_make_a_404_up_only_where_configured() -> None:
    p = Probe("alive=2xx,404", "")
    now = START
    first, second = p.poll(now)
    p.answer(first, 404, now + 0.01)
    p.answer(second, 404, now + 0.01)
    assert p.record(0).state is State.UP
    assert p.record(1).state is State.DOWN, "default: only 2xx is alive"
    assert p.record(0).last_code == 404


def test_a_timeout_is_never_alive_even_with_any() -> None:
    p = Probe("alive=any")
    assert p.rounds([486, None]) == [State.UP, State.DOWN]
    assert p.record().last_code == 408


def test_slow_reply_is_degraded_and_a_fast_one_up_again() -> None:
    p = Probe("degraded_ms=100")
    assert p.rounds([200], rtt=0.3) == [State.DEGRADED]
    assert p.rounds([200], rtt=0.05) == [State.UP]
    changes = [e for e in p.events if isinstance(e, StateChanged)]
    assert [(e.old, e.new) for e in changes] == [
        (State.UNKNOWN, State.DEGRADED), (State.DEGRADED, State.UP),
    ]  # fmt: skip
    assert changes[0].rtt_ms == pytest.approx(300.0)
    assert changes[0].code == 200


def test_degraded_as_down_counts_a_slow_reply_as_a_failure() -> None:
    p = Probe("degraded_ms=100", policy=Policy(degraded_as_down=True))
    assert p.rounds([200], rtt=0.3) == [State.DOWN]
    assert p.rounds([200], rtt=0.05) == [State.UP]


# -- DOWN backoff ------------------------------------------------------------------------


def test_a_dead_destination_is_probed_further_and_further_apart_up_to_the_cap() -> None:
    p = Probe("", ping_interval=5, backoff=40, delete_counter=1)
    times = p.ping_times(400.0)
    between = gaps(times)
    assert sorted(set(between)) == [5.0, 10.0, 20.0, 40.0]
    assert between == sorted(between), "the gap only grows while it stays DOWN"
    assert between[-5:] == [40.0] * 5, "capped, and probing never stops"
    assert not [e for e in p.events if isinstance(e, ProbingStopped)]
    assert not p.record().stopped and p.record().state is State.DOWN


def test_backoff_gaps_are_the_documented_ones() -> None:
    """BUG (ka_core/probe/prober.py ``Prober._due``): docs/health.md says that with
    ping_interval 30, down_after 1 and down_backoff_max 300 "the gap before the next ping is
    30 s after the 1st failure, 60 s after the 2nd, 120 s, 240 s, then 300 s".  The gap is
    chosen when a ping is sent, from the failures counted before it, so every doubling comes
    one ping late: 30, 30, 60, 120, 240, 300."""
    p = Probe("", ping_interval=30, backoff=300, delete_counter=5)
    times = p.ping_times(START + 1600)
    assert gaps(times)[:6] == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]


def test_backoff_ends_when_the_destination_answers_again() -> None:
    p = Probe("", ping_interval=5, backoff=40)
    times = p.ping_times(200.0)
    assert gaps(times)[-1] == 40.0
    times = p.ping_times(400.0, code=200)
    assert p.record().state is State.UP
    assert gaps(times)[-3:] == [5.0] * 3


def test_without_backoff_probing_stops_after_delete_counter() -> None:
    p = Probe("", ping_interval=5, delete_counter=1)
    assert p.ping_times(200.0) == [100.0, 105.0]
    assert [e.failures for e in p.events if isinstance(e, ProbingStopped)] == [2]
    assert p.record().stopped


# -- pause ------------------------------------------------------------------------------


def test_pause_all_sends_nothing_and_keeps_the_state() -> None:
    p = Probe("")
    assert p.rounds([200]) == [State.UP]
    p.table.header.pause_all(True)
    assert p.ping_times(200.0) == []
    assert p.record().state is State.UP and p.record().pings == 1
    assert p.changes() == [(State.UNKNOWN, State.UP)]


def test_resume_restarts_probing_at_the_next_due_time() -> None:
    p = Probe("")
    p.ping_times(101.0, code=200)
    p.table.header.pause_all(True)
    p.ping_times(125.0)
    p.table.header.pause_all(False)
    start = 125.0
    times = []
    for tick in range(round(start * 10), 1500):
        if p.poll(tick / 10):
            times.append(tick / 10)
    assert times == [130.0, 140.0], "on the old schedule, no burst of missed pings"


def test_pausing_one_destination_leaves_the_others_probed() -> None:
    p = Probe("", "")
    quiet = p.record(1)
    assert p.table.pause_slot(quiet.slot, quiet.gen, True)
    assert p.table.read(quiet.slot).paused
    sent = [ping.uri for ping in p.poll(START)]
    assert sent == ["sip:10.0.0.1"]
    assert p.record(1).state is State.UNKNOWN and p.record(1).pings == 0
    assert p.table.pause_slot(quiet.slot, quiet.gen, False)
    assert [ping.uri for ping in p.poll(START + 10)] == ["sip:10.0.0.1", "sip:10.0.0.2"]


# -- ping_interval at runtime ------------------------------------------------------------


def test_set_ping_interval_changes_followers_but_not_an_own_interval() -> None:
    p = Probe("", "interval=10")
    assert len(p.poll(START)) == 2
    assert p.table.set_ping_interval(2) == 1, "one destination follows ping_interval"
    assert p.table.header.ping_interval == 2
    assert (p.record(0).interval_ms, p.record(1).interval_ms) == (2000, 10000)
    seen: dict[str, list[float]] = {"sip:10.0.0.1": [], "sip:10.0.0.2": []}
    for tick in range(1001, 1305):
        for ping in p.poll(tick / 10):
            seen[ping.uri].append(tick / 10)
    assert seen["sip:10.0.0.2"] == [110.0, 120.0, 130.0]
    follower = seen["sip:10.0.0.1"]
    assert follower[0] == 110.0, "the change applies from the next ping on"
    assert set(gaps(follower)) == {2.0}


def test_a_destination_added_after_the_change_follows_the_new_interval() -> None:
    p = Probe()
    p.table.set_ping_interval(7)
    rec = registry.add(p.table, "10.0.0.9", "t", interval_s=None, wall=0)
    assert rec.interval_ms == 7000


# -- per-destination From and socket -----------------------------------------------------


def test_ping_carries_the_destination_from_and_socket() -> None:
    p = Probe("from=sip:probe@example.com;socket=tls:[::1]:5061", "")
    own, plain = p.poll(START)
    assert (own.from_uri, own.socket) == ("sip:probe@example.com", "tls:[::1]:5061")
    assert (plain.from_uri, plain.socket) == ("", "")


def test_reply_on_another_local_socket_is_ignored_and_the_ping_times_out() -> None:
    p = Probe("socket=udp:10.0.0.100:5060")
    (ping,) = p.poll(START)
    p.table.push_reply(ping.seq, 200, START + 0.01, 0, local=socket_tag("10.0.0.100", 5061))
    p.poll(START + 0.01)
    assert p.record().state is State.UNKNOWN and p.record().replies == 0
    p.poll(START + TIMEOUT)
    assert p.record().state is State.DOWN and p.record().last_code == 408


def test_reply_on_the_destination_socket_counts() -> None:
    p = Probe("socket=udp:10.0.0.100:5060")
    (ping,) = p.poll(START)
    p.answer(ping, 200, START + 0.01, local=socket_tag("10.0.0.100", 5060))
    assert p.record().state is State.UP


def test_local_socket_is_not_checked_without_a_socket_setting() -> None:
    p = Probe("")
    (ping,) = p.poll(START)
    p.answer(ping, 200, START + 0.01, local=socket_tag("192.0.2.1", 9999))
    assert p.record().state is State.UP


# -- round-trip statistics ---------------------------------------------------------------


def test_rtt_statistics_of_replies_and_count_of_timeouts() -> None:
    p = Probe("")
    for n, rtt in enumerate((0.01, 0.03, 0.02, None)):
        (ping,) = p.poll(START + 10 * n)
        p.answer(ping, None if rtt is None else 200, START + 10 * n + (rtt or 0))
    rec = p.record()
    assert (rec.pings, rec.replies, rec.timeouts) == (4, 3, 1)
    assert rec.rtt_ms == pytest.approx(20.0), "the last reply's; a timeout has none"
    assert rec.rtt_avg_ms == pytest.approx(20.0)
    assert rec.rtt_ewma_ms == pytest.approx(15.2)  # 10, then 10+0.2*20, then 14+0.2*6
    assert rec.rtt_max_ms == pytest.approx(30.0)


def test_a_failing_reply_has_a_round_trip_too() -> None:
    p = Probe("")
    p.rounds([503], rtt=0.04)
    rec = p.record()
    assert (rec.replies, rec.timeouts, rec.state) == (1, 0, State.DOWN)
    assert rec.rtt_max_ms == pytest.approx(40.0)
