"""The pinger's logic in virtual time: schedule, replies, timeouts, stray replies."""

from __future__ import annotations

import itertools
import threading

from ka_core import registry
from ka_core.events import ProbingStopped, ResponseReceived, StateChanged
from ka_core.prober import Prober
from ka_core.state import State
from ka_core.table import SharedTable, buffer_size
from ka_core.uri import address_tag


def setup(n: int = 1, interval: float = 10, delete_counter: int = 0, timeout: float = 2.0):
    buf = bytearray(buffer_size(64, 256))
    SharedTable.format_buffer(buf, 64, 256)
    table = SharedTable(buf, threading.Lock())
    for i in range(n):
        registry.add(
            table, f"10.0.0.{i + 1}", "t", interval_s=interval, wall=0,
            state_cb="mod:cb", response_cb="mod:rcb", user="u",
        )  # fmt: skip
    prober = Prober(table, delete_counter=delete_counter, ping_timeout_s=timeout)
    prober.handle(table.drain(), 100.0, 1000.0)
    return table, prober


def reply(table: SharedTable, prober: Prober, seq: int, code: int, now: float):
    table.push_reply(seq, code, now, now + 900)
    return prober.handle(table.drain(), now, now + 900)


def test_single_add_pings_after_half_a_second_then_every_interval() -> None:
    table, prober = setup()
    assert prober.poll(100.4, 0)[0] == []
    times = []
    now = 100.0
    while now < 131:
        pings, _ = prober.poll(now, 0)
        times += [now] * len(pings)
        for p in pings:
            reply(table, prober, p.seq, 200, now)
        now = round(now + 0.1, 1)
    assert times == [100.5, 110.5, 120.5, 130.5]


def test_batch_is_spread_over_the_interval() -> None:
    _table, prober = setup(n=10, interval=10)
    sent = []
    now = 100.0
    while now < 110.5:
        sent += [now for _ in prober.poll(now, 0)[0]]
        now = round(now + 0.05, 2)
    assert len(sent) == 10
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(0.9 <= g <= 1.1 for g in gaps), gaps


def test_reply_sets_up_and_emits_callbacks_once() -> None:
    table, prober = setup()
    (ping,), _ = prober.poll(100.5, 0)
    events = reply(table, prober, ping.seq, 200, 100.6)
    assert ResponseReceived("sip:10.0.0.1", "t", 200, "mod:rcb", "u") in events
    assert StateChanged("sip:10.0.0.1", "t", State.UNKNOWN, State.UP, "mod:cb", "u") in events
    assert reply(table, prober, ping.seq, 200, 100.7) == []  # duplicate reply ignored
    rec = table.read(ping.slot)
    assert rec.state is State.UP and rec.replies == 1 and rec.last_up == 100.6 + 900
    assert abs(rec.rtt_ms - 100.0) < 1e-6


def test_timeout_sets_down_and_late_reply_is_ignored() -> None:
    table, prober = setup(timeout=2.0)
    (ping,), _ = prober.poll(100.5, 0)
    assert prober.poll(102.4, 0)[1] == []
    _, events = prober.poll(102.5, 5)
    assert any(isinstance(e, StateChanged) and e.new is State.DOWN for e in events)
    assert reply(table, prober, ping.seq, 200, 103.0) == []
    assert table.read(ping.slot).state is State.DOWN


def test_stray_reply_with_unknown_sequence_changes_nothing() -> None:
    table, prober = setup()
    (ping,), _ = prober.poll(100.5, 0)
    assert reply(table, prober, ping.seq + 1000, 200, 100.6) == []
    assert table.read(ping.slot).state is State.UNKNOWN


def test_stopped_destination_gets_no_pings_and_ignores_late_replies() -> None:
    """C bug #3028: a late 200 after probing stopped made the destination alive forever."""
    table, prober = setup(interval=1, delete_counter=2, timeout=0.5)
    now, pings, seqs = 100.0, 0, []
    stopped_at = None
    while now < 110:
        new, events = prober.poll(now, 0)
        pings += len(new)
        seqs += [p.seq for p in new]
        if any(isinstance(e, ProbingStopped) for e in events):
            stopped_at = now
        now = round(now + 0.05, 2)
    assert pings == 3 and stopped_at is not None
    assert reply(table, prober, seqs[-1], 200, 110) == []
    rec = next(iter(table.records()))
    assert rec.state is State.DOWN and rec.stopped


def test_deleted_destination_is_not_pinged_any_more() -> None:
    table, prober = setup()
    assert len(prober.poll(100.5, 0)[0]) == 1
    registry.remove(table, "10.0.0.1", "t")
    assert prober.poll(110.5, 0)[0] == []


def test_schedule_does_not_drift_when_the_loop_is_late() -> None:
    table, prober = setup(interval=10)
    (p,), _ = prober.poll(100.7, 0)  # 0.2 s late
    reply(table, prober, p.seq, 200, 100.8)
    assert prober.poll(110.4, 0)[0] == []
    assert len(prober.poll(110.5, 0)[0]) == 1  # due at 110.5, not 110.7
    assert prober.poll(150.0, 0)[0] != [] and prober.next_deadline() is not None


def test_reply_from_another_address_is_ignored_and_keeps_the_ping_pending() -> None:
    table, prober = setup()
    (ping,), _ = prober.poll(100.5, 0)
    table.push_reply(ping.seq, 200, 100.6, 1000, address_tag("10.9.9.9"))
    assert prober.handle(table.drain(), 100.6, 1000) == []
    table.push_reply(ping.seq, 200, 100.7, 1000, address_tag("10.0.0.1"))
    events = prober.handle(table.drain(), 100.7, 1000)
    assert any(isinstance(e, StateChanged) and e.new is State.UP for e in events)
