"""The pinger's logic in virtual time: schedule, replies, timeouts, stray replies."""

from __future__ import annotations

import threading

from ka_core.events import Event, ProbingStopped, ResponseReceived, StateChanged
from ka_core.probe.prober import STOPPED_CHECK_S, Ping, Prober
from ka_core.probe.scheduler import BURST, MAX_PER_TICK, SMALL_BATCH, TICK_S, grid_for
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.ring import capacity_for as ring_capacity_for
from ka_core.store.table import SharedTable, buffer_size
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
    prober.step(100.0, 1000.0, table.drain())
    return table, prober


def poll(prober: Prober, now: float, wall: float = 0) -> tuple[list[Ping], list[Event]]:
    """A step with nothing in the ring."""
    step = prober.step(now, wall, [])
    return step.pings, step.events


def reply(table: SharedTable, prober: Prober, seq: int, code: int, now: float) -> list[Event]:
    table.push_reply(seq, code, now, now + 900)
    return prober.step(now, now + 900, table.drain()).events


def ping_times(table: SharedTable, prober: Prober, start: float, end: float) -> list[float]:
    """Times of the pings sent while polling every 10 ms (every ping answered 200)."""
    times = []
    now = start
    while now < end:
        pings, _ = poll(prober, now, 0)
        times += [now] * len(pings)
        for p in pings:
            reply(table, prober, p.seq, 200, now)
        now = round(now + 0.01, 2)
    return times


def test_start_up_list_is_pinged_at_once() -> None:
    table, prober = setup()
    assert ping_times(table, prober, 100.0, 121) == [100.0, 110.0, 120.0]


def test_single_add_pings_after_about_half_a_second_on_the_grid_then_every_interval() -> None:
    table, prober = setup(n=0)
    registry.add(table, "10.0.0.9", "t", interval_s=10, wall=0)
    prober.step(100.03, 0, table.drain())
    times = ping_times(table, prober, 100.03, 131)
    assert times == [100.4, 110.4, 120.4, 130.4]


def test_a_few_adds_together_are_all_pinged_after_the_delay() -> None:
    table, prober = setup(n=0)
    for i in range(SMALL_BATCH):
        registry.add(table, f"10.0.1.{i}", "t", interval_s=10, wall=0)
    prober.step(100.0, 0, table.drain())
    assert ping_times(table, prober, 100.0, 101) == [100.4] * SMALL_BATCH


def test_batch_is_spread_over_the_interval_on_the_grid() -> None:
    table, prober = setup(n=20, interval=10)  # 2 pings/s: the 1 s grid
    sent = ping_times(table, prober, 100.0, 110)
    assert sent == [100.0 + i // 2 for i in range(20)], "two on each tick, all in one interval"


def test_the_grid_is_as_coarse_as_the_burst_bound_allows() -> None:
    assert [grid_for(r) for r in (0, 20, 50, 51, 100, 150, 200, 201, 5000)] == [
        1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, TICK_S, TICK_S,
    ]  # fmt: skip
    for n, interval in ((100, 5), (250, 5), (400, 5), (1000, 5)):
        buf = bytearray(buffer_size(n, 4 * n))
        SharedTable.format_buffer(buf, n, 4 * n)
        big = SharedTable(buf, threading.Lock())
        prober = Prober(big, delete_counter=0, ping_timeout_s=2.0)
        for i in range(n):
            registry.add(big, f"10.2.{i // 250}.{i % 250 + 1}", "t", interval_s=interval, wall=0)
        prober.step(100.0, 0, big.drain())
        per_tick: dict[float, int] = {}
        now = 100.0
        while now < 100.0 + interval:
            for _ in prober.step(now, 0, []).pings:
                per_tick[now] = per_tick.get(now, 0) + 1
            now = round(now + 0.05, 2)
        assert sum(per_tick.values()) == n
        mean_per_100ms = n / interval / 10
        assert max(per_tick.values()) <= max(2 * mean_per_100ms, BURST), (n, per_tick)
        assert len(per_tick) == interval / grid_for(n / interval), "one wake-up per tick"


def test_timeout_of_an_on_time_ping_shares_the_grid() -> None:
    _table, prober = setup(timeout=2.0)
    assert len(poll(prober, 100.001, 0)[0]) == 1
    assert prober.step(100.002, 0, []).deadline == 101.0  # draining replies on the next tick
    assert poll(prober, 101.999, 0)[1] == []
    _, events = poll(prober, 102.0, 0)
    assert any(isinstance(e, StateChanged) and e.new is State.DOWN for e in events)


def test_reply_sets_up_and_emits_callbacks_once() -> None:
    table, prober = setup()
    (ping,), _ = poll(prober, 100.5, 0)
    events = reply(table, prober, ping.seq, 200, 100.6)
    rtt = events[0].rtt_ms if isinstance(events[0], ResponseReceived) else -1.0
    assert abs(rtt - 100.0) < 1e-6  # the round trip reaches the callbacks
    assert ResponseReceived("sip:10.0.0.1", "t", 200, "mod:rcb", "u", rtt) in events
    assert (
        StateChanged("sip:10.0.0.1", "t", State.UNKNOWN, State.UP, "mod:cb", "u", 200, rtt)
        in events
    )
    assert reply(table, prober, ping.seq, 200, 100.7) == []  # duplicate reply ignored
    rec = table.read(ping.slot)
    assert rec.state is State.UP and rec.replies == 1 and rec.last_up == 100.6 + 900
    assert abs(rec.rtt_ms - 100.0) < 1e-6


def test_timeout_sets_down_and_late_reply_is_ignored() -> None:
    table, prober = setup(timeout=2.0)
    (ping,), _ = poll(prober, 100.5, 0)
    assert poll(prober, 102.4, 0)[1] == []
    _, events = poll(prober, 102.5, 5)
    assert any(isinstance(e, StateChanged) and e.new is State.DOWN for e in events)
    assert reply(table, prober, ping.seq, 200, 103.0) == []
    assert table.read(ping.slot).state is State.DOWN


def test_stray_reply_with_unknown_sequence_changes_nothing() -> None:
    table, prober = setup()
    (ping,), _ = poll(prober, 100.5, 0)
    assert reply(table, prober, ping.seq + 1000, 200, 100.6) == []
    assert table.read(ping.slot).state is State.UNKNOWN


def test_stopped_destination_gets_no_pings_and_ignores_late_replies() -> None:
    """C bug #3028: a late 200 after probing stopped made the destination alive forever."""
    table, prober = setup(interval=1, delete_counter=2, timeout=0.5)
    now, pings, seqs = 100.0, 0, []
    stopped_at = None
    while now < 110:
        new, events = poll(prober, now, 0)
        pings += len(new)
        seqs += [p.seq for p in new]
        if any(isinstance(e, ProbingStopped) for e in events):
            stopped_at = now
        now = round(now + 0.05, 2)
    assert pings == 3 and stopped_at is not None
    assert reply(table, prober, seqs[-1], 200, 110) == []
    rec = next(iter(table.records()))
    assert rec.state is State.DOWN and rec.stopped


def test_a_stopped_destination_is_forgotten_once_deleted() -> None:
    """Nothing comes due for a destination whose probing stopped: its copy in the prober
    stayed after a delete, one per deleted slot (the soak's steady growth of the pinger)."""
    table, prober = setup(n=3, interval=1, delete_counter=2, timeout=0.5)
    now = 100.0
    while now < 110:
        poll(prober, now, 0)
        now = round(now + 0.05, 2)
    assert all(rec.stopped for rec in table.records()) and len(prober._dests) == 3
    for i in range(3):
        registry.remove(table, f"10.0.0.{i + 1}", "t")
    while now < 110 + STOPPED_CHECK_S + 1:
        assert poll(prober, now, 0)[0] == []
        now = round(now + 0.5, 2)
    assert prober._dests == {} and len(prober._schedule) == 0


def test_deleted_destination_is_not_pinged_any_more() -> None:
    table, prober = setup()
    assert len(poll(prober, 100.5, 0)[0]) == 1
    registry.remove(table, "10.0.0.1", "t")
    assert poll(prober, 110.5, 0)[0] == []


def test_schedule_does_not_drift_when_the_loop_is_late() -> None:
    table, prober = setup(interval=10)
    (p,), _ = poll(prober, 100.2, 0)  # 0.2 s late
    reply(table, prober, p.seq, 200, 100.3)
    early = prober.step(109.9, 0, [])
    assert (early.pings, early.deadline) == ([], 110.0)
    assert len(poll(prober, 110.0, 0)[0]) == 1  # due at 110.0, not 110.2
    # a 40 s stall: one ping, not four to catch up, and the grid is kept
    assert ping_times(table, prober, 150.0, 171) == [150.0, 160.0, 170.0]


def test_reply_from_another_address_is_ignored_and_keeps_the_ping_pending() -> None:
    table, prober = setup()
    (ping,), _ = poll(prober, 100.5, 0)
    table.push_reply(ping.seq, 200, 100.6, 1000, address_tag("10.9.9.9"))
    assert prober.step(100.6, 1000, table.drain()).events == []
    table.push_reply(ping.seq, 200, 100.7, 1000, address_tag("10.0.0.1"))
    events = prober.step(100.7, 1000, table.drain()).events
    assert any(isinstance(e, StateChanged) and e.new is State.UP for e in events)


def test_deleted_before_its_first_ping_is_never_pinged() -> None:
    table, prober = setup(n=20, interval=10)
    registry.remove(table, "10.0.0.20", "t")
    sent = [p.uri for p in poll(prober, 200.0, 0)[0]]
    assert len(sent) == 19 and "sip:10.0.0.20" not in sent


def test_re_added_destination_is_not_disturbed_by_its_old_schedule() -> None:
    table, prober = setup(interval=10)
    assert len(poll(prober, 100.0, 0)[0]) == 1
    registry.remove(table, "10.0.0.1", "t")
    registry.add(table, "10.0.0.1", "t", interval_s=10, wall=0)
    prober.step(101.0, 0, table.drain())
    times = ping_times(table, prober, 101.0, 122)
    assert times == [101.4, 111.4, 121.4]  # the old entry due at 110.0 sends nothing
    assert table.read(table.find("sip:10.0.0.1:5060")).state is State.UP


def test_large_batch_uses_a_finer_grid_with_at_most_max_per_tick_pings() -> None:
    n = 1000
    buf = bytearray(buffer_size(n, ring_capacity_for(n)))
    SharedTable.format_buffer(buf, n, ring_capacity_for(n))
    table = SharedTable(buf, threading.Lock())
    for i in range(n):
        registry.add(table, f"10.1.{i // 250}.{i % 250 + 1}", "t", interval_s=0.5, wall=0)
    prober = Prober(table, delete_counter=0, ping_timeout_s=0.2)
    prober.step(100.0, 0, table.drain())
    per_tick: dict[float, int] = {}
    slots = set()
    now = 100.0
    while now < 100.5:
        for ping in prober.step(now, 0, []).pings:
            per_tick[now] = per_tick.get(now, 0) + 1
            slots.add(ping.slot)
        now = round(now + 0.005, 3)
    assert len(slots) >= n - MAX_PER_TICK  # all but the last tick's within one interval
    assert max(per_tick.values()) <= MAX_PER_TICK  # 1,000 per 0.5 s: 200 per 100 ms otherwise
    assert all(abs(t / 0.05 - round(t / 0.05)) < 1e-6 for t in per_tick)  # a 50 ms grid


def test_due_pings_go_to_send_before_any_reply_is_applied() -> None:
    """Interval accuracy: the glue's sender runs before the ring's replies are processed."""
    table, prober = setup(n=1, interval=10)
    first = poll(prober, 100.0)[0]
    table.push_reply(first[0].seq, 200, 100.1, 1000)  # drained only at the next step
    seen_at_send: list[State] = []

    def send(ping: Ping) -> None:
        seen_at_send.append(table.read(first[0].slot).state)

    step = prober.step(110.0, 1000, table.drain(), (), send)
    assert len(step.pings) == 1 and seen_at_send == [State.UNKNOWN]
    assert table.read(first[0].slot).state is State.UP, "the reply is applied after the send"


def test_a_pinger_far_behind_sends_a_bounded_share_per_step_and_keeps_the_schedule() -> None:
    from ka_core.probe.scheduler import MAX_PINGS_PER_STEP

    n = MAX_PINGS_PER_STEP + 500
    buf = bytearray(buffer_size(n, ring_capacity_for(n)))
    SharedTable.format_buffer(buf, n, ring_capacity_for(n))
    table = SharedTable(buf, threading.Lock())
    for i in range(n):
        registry.add(table, f"10.1.{i // 250}.{i % 250 + 1}", "t", interval_s=10, wall=0)
    prober = Prober(table, delete_counter=0, ping_timeout_s=2.0)
    prober.step(100.0, 0, table.drain())  # adopted, spread over the interval from 100.0
    behind = prober.step(110.0, 0, [])  # a whole interval late: every one is due
    assert len(behind.pings) == MAX_PINGS_PER_STEP
    assert behind.deadline is not None and behind.deadline <= 110.0, "the next step at once"
    rest = prober.step(110.0, 0, [])
    assert len(rest.pings) == n - MAX_PINGS_PER_STEP
    assert len({p.slot for p in behind.pings + rest.pings}) == n, "each one pinged once"
    assert prober.step(110.0, 0, []).pings == []
