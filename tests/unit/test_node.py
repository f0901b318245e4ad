"""ka_core.node: the prober, the names machine and the cluster machine stepped in the one
correct order, in virtual time (what kemi.pinger performs, without Kamailio)."""

from __future__ import annotations

import threading

from ka_core.events import StateChanged
from ka_core.names.machine import NamesMachine
from ka_core.names.resolve import Resolution, Target
from ka_core.node import Inputs, Node, Step
from ka_core.probe.liveness import PingerStatus
from ka_core.probe.prober import Prober
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.table import SharedTable, buffer_size

WALL0 = 1_700_000_000.0


def table(interval_s: int = 1) -> SharedTable:
    buf = bytearray(buffer_size(16, 64))
    SharedTable.format_buffer(buf, 16, 64, ping_interval=interval_s)
    return SharedTable(buf, threading.Lock())


def node(t: SharedTable, names: bool = False) -> Node:
    prober = Prober(t, delete_counter=0, ping_timeout_s=0.5)
    return Node(t, prober, names=NamesMachine(t, "any") if names else None)


def step(n: Node, t: SharedTable, now: float, **inputs: object) -> Step:
    return n.step(now, WALL0 + now, Inputs(t.drain(), **inputs))  # type: ignore[arg-type]


def first_ping(n: Node, t: SharedTable, now: float) -> tuple[float, Step]:
    """Step at each deadline until a ping goes out (an added destination is adopted by one
    step and pinged by a later one)."""
    for _ in range(20):
        got = step(n, t, now)
        if got.pings:
            return now, got
        assert got.deadline is not None
        now = got.deadline
    raise AssertionError("no ping")


def test_a_step_pings_what_is_due_and_writes_the_heartbeat_and_stats() -> None:
    t = table()
    n = node(t)
    registry.add(t, "sip:10.0.0.1", "o", interval_s=None, wall=WALL0)
    at, first = first_ping(n, t, 100.0)
    assert [p.uri for p in first.pings] == ["sip:10.0.0.1"]
    assert t.header.pinger_life() == (PingerStatus.RUNNING, at)
    assert first.deadline is not None and first.deadline > at
    late = first.deadline + 0.25
    step(n, t, late)
    lag, lag_max, in_flight = t.header.pinger_stats()
    assert round(lag, 6) == 0.25 and round(lag_max, 6) == 0.25
    assert in_flight == n.prober.outstanding


def test_a_reply_becomes_a_state_change_event() -> None:
    t = table()
    n = node(t)
    registry.add(t, "sip:10.0.0.1", "o", interval_s=None, wall=WALL0)
    at, sent = first_ping(n, t, 100.0)
    t.push_reply(sent.pings[0].seq, 200, at + 0.05, WALL0 + at + 0.05)
    (event,) = step(n, t, at + 0.1).events
    assert isinstance(event, StateChanged)
    assert (event.uri, event.old, event.new, event.code) == (
        "sip:10.0.0.1", State.UNKNOWN, State.UP, 200,
    )  # fmt: skip


def test_no_reply_for_a_few_intervals_gives_the_reply_hook_warning_once() -> None:
    t = table()
    n = node(t)
    for i in range(3):
        registry.add(t, f"sip:10.0.0.{i + 1}", "o", interval_s=None, wall=WALL0)
    warnings = []
    now = 100.0
    while now < 106.0:
        warnings += step(n, t, now).warnings
        now = round(now + 0.1, 6)
    assert len(warnings) == 1 and "reply" in warnings[0]


def test_names_run_around_the_prober_and_an_inserted_target_is_pinged_at_once() -> None:
    t = table()
    n = node(t, names=True)
    rec = registry.add(t, "sip:gw.ka.test", "o", interval_s=None, wall=WALL0, resolve_names=True)
    first = step(n, t, 100.0)
    assert first.pings == [], "a name itself is never pinged"
    assert [[(k, u.host) for k, u in out.watch] for out in first.names] == [
        [((rec.slot, rec.gen), "gw.ka.test")], [],
    ]  # fmt: skip
    answer = ((rec.slot, rec.gen), Resolution((Target("10.0.0.9", 5060, "udp"),), 60))
    resolved = step(n, t, 100.1, resolutions=[answer])
    assert resolved.deadline == 100.1, "the new target's first ping waits for no tick"
    at, nxt = first_ping(n, t, 100.1)
    assert [p.uri for p in nxt.pings] == ["sip:10.0.0.9:5060"]
    t.push_reply(nxt.pings[0].seq, 200, at + 0.05, WALL0 + at + 0.05)
    events = step(n, t, at + 0.1).events
    assert [(e.uri, e.new) for e in events if isinstance(e, StateChanged)] == [
        ("sip:10.0.0.9:5060", State.UP), ("sip:gw.ka.test", State.UP),
    ], "the target's change first, then the name's derived one"  # fmt: skip
