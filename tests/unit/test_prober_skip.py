"""The prober's cluster hook (``Prober.skip`` and ``refresh``): a destination another node
probes stays scheduled but unpinged, and a takeover starts from the state in the table."""

from __future__ import annotations

from ka_core.state import State
from tests.unit.test_prober import poll, reply, setup


def test_skipped_destinations_stay_scheduled_and_unpinged() -> None:
    _, prober = setup(n=2, interval=1)
    others: set[int] = set()
    prober.skip = lambda slot, gen: slot in others
    pings, _ = poll(prober, 100.0)
    assert len(pings) == 2
    others.add(pings[0].slot)
    sent = [p.slot for t in range(1, 4) for p in poll(prober, 100.0 + t)[0]]
    assert sent == [pings[1].slot] * 3
    others.clear()  # taken over: pinged at its very next due time
    assert [p.slot for p in poll(prober, 104.0)[0]] == [pings[0].slot, pings[1].slot]


def test_a_takeover_starts_from_the_state_another_node_wrote() -> None:
    table, prober = setup(n=1, interval=1)
    (ping,), _ = poll(prober, 100.0)
    reply(table, prober, ping.seq, 200, 100.1)
    assert table.state_at(ping.slot) is State.UP
    skipping = True
    prober.skip = lambda slot, gen: skipping
    assert poll(prober, 101.0)[0] == []
    table.set_state(ping.slot, ping.gen, State.DOWN, 5000.0)  # another node measured DOWN
    skipping = False
    (again,), _ = poll(prober, 102.0)
    events = reply(table, prober, again.seq, 200, 102.1)
    changes = [(e.old, e.new) for e in events if hasattr(e, "old")]
    assert changes == [(State.DOWN, State.UP)], "the prober went on from DOWN, not its old UP"


def test_refresh_of_a_loaded_destination_reads_it_again() -> None:
    table, prober = setup(n=1, interval=1)
    (ping,), _ = poll(prober, 100.0)
    table.set_state(ping.slot, ping.gen, State.DOWN, 5000.0)
    prober.refresh(ping.slot, ping.gen)
    prober.refresh(ping.slot, ping.gen + 1)  # another generation: nothing to do
    (again,), _ = poll(prober, 101.0)
    events = reply(table, prober, again.seq, 200, 101.1)
    assert [(e.old, e.new) for e in events if hasattr(e, "old")] == [(State.DOWN, State.UP)]


def times_of(prober, start: float, end: float, step: float = 0.1) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    t = start
    while t <= end + 1e-9:
        out += [round(t, 1)] * len(poll(prober, round(t, 1))[0])
        t += step
    return out


def test_expedite_pings_early_then_keeps_one_schedule() -> None:
    _table, prober = setup(n=1, interval=5)
    (ping,), _ = poll(prober, 100.0)  # due again at 105.0
    prober.expedite(ping.slot, ping.gen, 101.0)
    assert times_of(prober, 100.1, 116.0) == [101.0, 106.0, 111.0, 116.0]


def test_expedite_after_the_old_due_time_drops_the_old_entry_first() -> None:
    _table, prober = setup(n=1, interval=5)
    (ping,), _ = poll(prober, 100.0)
    prober.expedite(ping.slot, ping.gen, 107.0)  # later than 105.0: the old entry goes
    assert times_of(prober, 100.1, 117.0) == [107.0, 112.0, 117.0]


def test_expedite_to_the_same_time_is_one_ping() -> None:
    _table, prober = setup(n=1, interval=5)
    (ping,), _ = poll(prober, 100.0)
    prober.expedite(ping.slot, ping.gen, 105.0)
    prober.expedite(ping.slot, ping.gen, 103.0)  # already moved: ignored
    assert times_of(prober, 100.1, 110.0) == [105.0, 110.0]


def test_expedite_of_a_deleted_destination_is_forgotten() -> None:
    table, prober = setup(n=1, interval=5)
    (ping,), _ = poll(prober, 100.0)
    prober.expedite(ping.slot, ping.gen, 101.0)
    table.remove(table.read(ping.slot).key, "t")
    assert times_of(prober, 100.1, 111.0) == []
    assert prober._moved == {}
    prober.expedite(ping.slot, ping.gen, 112.0)  # not used any more: nothing scheduled
    assert prober._moved == {}
