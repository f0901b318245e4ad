"""ka_core.names: DNS churn in virtual time on a real shared table, no thread and no KSR.

A name's targets appear, change and vanish (inserted into and removed from the table), a
failed lookup keeps the last good targets, an empty answer makes the name DOWN, the
derived state follows the targets' states, deletes and pause follow the name; and the
re-resolution timetable (due at once, again after the clamped TTL, forgotten names)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from ka_core.events import Event, ProbingStopped, StateChanged
from ka_core.names import machine as names_machine
from ka_core.names.machine import ERR, INFO, SCAN_S, WARN, NamesMachine, NamesOut
from ka_core.names.resolve import MIN_TTL_S, Resolution, Target
from ka_core.names.schedule import Key, ResolveSchedule, next_due
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.layout import FLAG_PAUSED, FLAG_TARGET
from ka_core.store.ring import KIND_ADDED, RingEntry
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import parse_uri

NAME = "sip:gw.ka.test"
T1, T2, T3 = (
    Target("10.0.0.1", 5060, "udp"),
    Target("10.0.0.2", 5070, "udp"),
    Target("10.0.0.3", 5060, "udp"),
)
U1, U2, U3 = "sip:10.0.0.1:5060", "sip:10.0.0.2:5070", "sip:10.0.0.3:5060"
PREFIX = f"DNS: destination {NAME} owner t: "
WALL = 1_700_000_000.0


def new_table(capacity: int = 16) -> SharedTable:
    buf = bytearray(buffer_size(capacity, 64))
    SharedTable.format_buffer(buf, capacity, 64)
    return SharedTable(buf, threading.Lock())


class Names:
    """A NamesMachine on a table, with the clock in the test's hands."""

    def __init__(self, mode: str = "any", capacity: int = 16) -> None:
        self.table = new_table(capacity)
        self.machine = NamesMachine(self.table, mode)
        self.now = 100.0
        self.key: Key = (-1, -1)

    def add_name(self, uri: str = NAME, settings: str = "") -> NamesOut:
        rec = registry.add(
            self.table, uri, "t", interval_s=None, wall=WALL, state_cb="mod:cb", user="u",
            settings=settings, resolve_names=True,
        )  # fmt: skip
        self.key = (rec.slot, rec.gen)
        return self.machine.notice(self.table.drain())

    def resolve(
        self, result: Resolution, events: Sequence[Event] = ()
    ) -> tuple[list[StateChanged], NamesOut]:
        return self.step([(self.key, result)], events)

    def step(
        self, resolutions: Sequence[tuple[Key, Resolution]] = (), events: Sequence[Event] = ()
    ) -> tuple[list[StateChanged], NamesOut]:
        """One core step ``SCAN_S`` later (so the scan runs)."""
        self.now += SCAN_S
        self.table.drain()  # the prober's part of the ring
        return self.machine.apply(events, resolutions, self.now, WALL)

    def listed(self) -> dict[str, State]:
        return {r.uri: r.state for r in self.table.records()}

    def target_changes(self, uri: str, new: State, code: int, rtt_ms: float = 0.0) -> StateChanged:
        """What the prober does when a target's state changes: writes it, says so."""
        rec = self.table.get(parse_uri(uri).key, "t")
        assert self.table.set_state(rec.slot, rec.gen, new, WALL)
        return StateChanged(uri, "t", rec.state, new, "", "", code, rtt_ms)

    def name_state(self) -> State:
        return self.listed()[NAME]


def texts(out: NamesOut, level: str) -> list[str]:
    return [text for lvl, text in out.logs if lvl == level]


def test_a_name_is_watched_and_its_targets_appear_in_the_table() -> None:
    names = Names()
    out = names.add_name(settings="down_after=1")
    assert out.watch == [(names.key, parse_uri(NAME))] and not out.logs
    changes, out = names.resolve(Resolution((T1, T2), 60))
    assert changes == [], "both targets UNKNOWN: so is the name, as before"
    assert names.listed() == {NAME: State.UNKNOWN, U1: State.UNKNOWN, U2: State.UNKNOWN}
    assert texts(out, INFO) == [PREFIX + f"target {U1} added", PREFIX + f"target {U2} added"]
    assert out.wake, "the prober should adopt the new targets at once"
    target = names.table.get(parse_uri(U1).key, "t")
    assert target.settings == "down_after=1;target_of=sip:gw.ka.test"
    assert names.table.flags(target.slot) & FLAG_TARGET
    assert target.interval_ms == names.table.read(names.key[0]).interval_ms


def test_the_derived_state_follows_the_targets_with_the_causing_code_and_rtt() -> None:
    names = Names()
    names.add_name()
    names.resolve(Resolution((T1, T2), 60))
    up = names.target_changes(U1, State.UP, 200, 12.5)
    changes, _ = names.step(events=(up,))
    assert changes == [StateChanged(NAME, "t", State.UNKNOWN, State.UP, "mod:cb", "u", 200, 12.5)]
    assert names.name_state() is State.UP
    # the other target going down changes nothing: one is still UP
    changes, _ = names.step(events=(names.target_changes(U2, State.DOWN, 408),))
    assert changes == [] and names.name_state() is State.UP
    changes, _ = names.step(events=(names.target_changes(U1, State.DOWN, 503),))
    assert changes == [StateChanged(NAME, "t", State.UP, State.DOWN, "mod:cb", "u", 503, 0.0)]
    assert names.name_state() is State.DOWN
    # events that are not state changes, or of other destinations, are ignored
    other = StateChanged("sip:10.9.9.9", "t", State.UNKNOWN, State.UP, "", "", 200, 1.0)
    assert names.step(events=(ProbingStopped(U1, "t", 3), other))[0] == []


def test_all_mode_needs_every_target_up() -> None:
    names = Names(mode="all")
    names.add_name()
    names.resolve(Resolution((T1, T2), 60))
    assert names.step(events=(names.target_changes(U1, State.UP, 200),))[0] == []
    changes, _ = names.step(events=(names.target_changes(U2, State.DOWN, 408),))
    assert [(c.old, c.new, c.code) for c in changes] == [(State.UNKNOWN, State.DEGRADED, 408)]
    changes, _ = names.step(events=(names.target_changes(U2, State.UP, 200),))
    assert [c.new for c in changes] == [State.UP]


def test_targets_change_then_a_failed_lookup_keeps_them() -> None:
    names = Names()
    names.add_name()
    names.resolve(Resolution((T1, T2), 10))
    names.step(events=(names.target_changes(U1, State.UP, 200),))
    changes, out = names.resolve(Resolution((T2, T3), 10))
    assert set(names.listed()) == {NAME, U2, U3}
    assert texts(out, INFO) == [
        PREFIX + f"target {U1} removed: no longer in DNS",
        PREFIX + f"target {U3} added",
    ]
    assert [(c.old, c.new, c.code) for c in changes] == [(State.UP, State.UNKNOWN, 0)]
    failed = Resolution((), 30, failed=True, reason="gw.ka.test SRV: timed out")
    changes, out = names.resolve(failed)
    assert changes == [] and set(names.listed()) == {NAME, U2, U3}
    assert texts(out, WARN) == [
        PREFIX + "lookup failed: gw.ka.test SRV: timed out; keeping 2 targets"
    ]
    _, out = names.resolve(failed)
    assert out.logs == [], "the same failure is said once"
    _, out = names.resolve(Resolution((T2, T3), 10))
    assert out.logs == [(INFO, PREFIX + "resolves again: 2 targets")]
    assert set(names.listed()) == {NAME, U2, U3}


def test_nxdomain_drops_every_target_and_the_name_is_down_until_it_resolves_again() -> None:
    names = Names()
    names.add_name()
    names.resolve(Resolution((T1,), 60))
    names.step(events=(names.target_changes(U1, State.UP, 200),))
    changes, out = names.resolve(Resolution((), 30, reason="NXDOMAIN"))
    assert names.listed() == {NAME: State.DOWN}
    assert [(c.old, c.new) for c in changes] == [(State.UP, State.DOWN)]
    assert texts(out, WARN) == [PREFIX + "NXDOMAIN: no targets (DOWN)"]
    assert texts(out, INFO) == [PREFIX + f"target {U1} removed: no longer in DNS"]
    assert names.resolve(Resolution((), 30, reason="NXDOMAIN"))[1].logs == []
    changes, out = names.resolve(Resolution((T1,), 60))
    assert texts(out, INFO) == [PREFIX + "resolves again: 1 targets", PREFIX + f"target {U1} added"]
    assert [(c.old, c.new) for c in changes] == [(State.DOWN, State.UNKNOWN)]


def test_a_first_lookup_failing_means_down() -> None:
    names = Names()
    names.add_name()
    changes, out = names.resolve(Resolution((), 30, failed=True, reason="timed out"))
    assert [(c.old, c.new) for c in changes] == [(State.UNKNOWN, State.DOWN)]
    assert texts(out, WARN) == [PREFIX + "lookup failed: timed out; no targets"]


def test_a_users_own_target_is_counted_and_never_removed() -> None:
    names = Names()
    registry.add(names.table, U1, "t", interval_s=None, wall=WALL)
    names.add_name()
    _, out = names.resolve(Resolution((T1,), 60))
    assert texts(out, INFO) == [
        PREFIX + f"target {U1} is already a destination of its own: counted, kept"
    ]
    assert not out.wake
    changes, _ = names.step(events=(names.target_changes(U1, State.UP, 200),))
    assert [c.new for c in changes] == [State.UP]
    names.resolve(Resolution((T2,), 60))
    assert set(names.listed()) == {NAME, U1, U2}, "the user's destination stays"


def test_a_full_table_is_said_and_the_other_targets_still_added() -> None:
    names = Names(capacity=2)
    names.add_name()
    changes, out = names.resolve(Resolution((T1, T2), 60))
    assert set(names.listed()) == {NAME, U1}
    assert len(texts(out, WARN)) == 1 and texts(out, WARN)[0].startswith(
        PREFIX + f"target {U2} not added: "
    )
    assert changes == []


def test_deleting_the_name_removes_its_targets_and_forgets_it() -> None:
    names = Names()
    names.add_name()
    names.resolve(Resolution((T1, T2), 60))
    registry.remove(names.table, NAME, "t")
    changes, out = names.step()
    assert changes == [] and names.listed() == {}
    assert out.forget == [names.key]
    assert texts(out, INFO) == [
        PREFIX + f"target {U1} removed: name deleted",
        PREFIX + f"target {U2} removed: name deleted",
    ]
    _, out = names.resolve(Resolution((T3,), 60))
    assert names.listed() == {} and out.logs == [], "a late answer for a deleted name is ignored"


def test_an_answer_arriving_as_the_name_is_deleted_leaves_nothing_behind() -> None:
    names = Names()
    names.add_name()
    registry.remove(names.table, NAME, "t")
    changes, out = names.resolve(Resolution((T1,), 60))
    assert changes == [] and names.listed() == {} and out.forget == [names.key]
    assert texts(out, INFO)[-1] == PREFIX + f"target {U1} removed: name deleted"


def test_a_deleted_target_is_forgotten_and_comes_back_with_the_next_answer() -> None:
    names = Names()
    names.add_name()
    names.resolve(Resolution((T1, T2), 60))
    names.step(events=(names.target_changes(U2, State.UP, 200),))
    registry.remove(names.table, U2, "t")
    changes, _ = names.step()
    assert [(c.old, c.new) for c in changes] == [(State.UP, State.UNKNOWN)]
    _, out = names.resolve(Resolution((T1, T2), 60))
    assert texts(out, INFO) == [PREFIX + f"target {U2} added"]


def test_the_scan_runs_at_most_every_scan_interval() -> None:
    names = Names()
    names.add_name()
    names.resolve(Resolution((T1,), 60))
    registry.remove(names.table, NAME, "t")
    _, out = names.machine.apply([], [], names.now + SCAN_S / 2, WALL)
    assert out.forget == [] and U1 in names.listed()
    _, out = names.machine.apply([], [], names.now + SCAN_S, WALL)
    assert out.forget == [names.key] and names.listed() == {}


def test_pause_follows_the_name() -> None:
    names = Names()
    names.add_name()
    names.resolve(Resolution((T1,), 60))
    names.table.pause_slot(*names.key, True)
    names.step()
    target = names.table.get(parse_uri(U1).key, "t")
    assert target.paused
    names.resolve(Resolution((T1, T2), 60))
    assert names.table.flags(names.table.get(parse_uri(U2).key, "t").slot) & FLAG_PAUSED
    names.table.pause_slot(*names.key, False)
    names.step()
    assert not names.table.get(parse_uri(U1).key, "t").paused


def test_bad_input_is_ignored_and_a_bug_costs_a_log_line_not_the_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = Names()
    registry.add(names.table, U1, "t", interval_s=None, wall=WALL, resolve_names=True)
    rec = registry.add(
        names.table, "sip:gone.ka.test", "t", interval_s=None, wall=WALL, resolve_names=True
    )
    registry.remove(names.table, "sip:gone.ka.test", "t")
    stale = RingEntry(KIND_ADDED, 0, rec.slot, rec.gen, 0, 0.0, 0.0)
    out = names.machine.notice([*names.table.drain(), stale])
    assert out.watch == [], "addresses are not names; a deleted name is not watched"
    assert names.machine.apply([], [((99, 1), Resolution((T1,), 60))], 1.0, WALL) == (
        [],
        NamesOut(),
    )
    names.add_name()

    def broken(*args: object) -> State:
        raise RuntimeError("bug")

    monkeypatch.setattr(names_machine, "derive_state", broken)
    changes, out = names.resolve(Resolution((T2,), 60))
    assert changes == [] and "RuntimeError: bug" in texts(out, ERR)[0]
    assert texts(out, INFO) == [PREFIX + f"target {U2} added"], "what was done is still said"
    out = names.machine.notice(None)  # type: ignore[arg-type]
    assert texts(out, ERR)[0].startswith("DNS: internal error: ")


def test_the_schedule_resolves_at_once_then_when_the_ttl_runs_out() -> None:
    schedule, uri = ResolveSchedule(), parse_uri(NAME)
    assert schedule.pop_due(0.0) is None and schedule.next_at() is None
    schedule.watch((1, 1), uri, 100.0)
    assert schedule.next_at() == 100.0 and len(schedule) == 1
    assert schedule.pop_due(100.0) == ((1, 1), uri)
    assert schedule.pop_due(100.0) is None, "not again while it is being resolved"
    schedule.answered((1, 1), uri, 60, 100.5)
    assert schedule.next_at() == 160.5
    assert schedule.pop_due(160.4) is None
    assert schedule.pop_due(160.5) == ((1, 1), uri)


def test_the_schedule_clamps_a_short_ttl_and_reschedules_a_rewatched_name() -> None:
    schedule, uri = ResolveSchedule(), parse_uri(NAME)
    assert next_due(10.0, 0) == 10.0 + MIN_TTL_S and next_due(10.0, 300) == 310.0
    schedule.watch((1, 1), uri, 0.0)
    schedule.pop_due(0.0)
    schedule.answered((1, 1), uri, -5, 1.0)
    assert schedule.next_at() == 1.0 + MIN_TTL_S
    schedule.watch((1, 1), uri, 2.0)  # watched again: due at once, the old time is stale
    assert schedule.pop_due(2.0) == ((1, 1), uri)
    schedule.answered((1, 1), uri, 30, 2.0)
    assert schedule.pop_due(1.0 + MIN_TTL_S) is None and schedule.next_at() == 32.0


def test_a_forgotten_name_is_never_due_even_mid_lookup() -> None:
    schedule, uri = ResolveSchedule(), parse_uri(NAME)
    schedule.watch((1, 1), uri, 0.0)
    schedule.watch((2, 1), parse_uri("sip:b.ka.test"), 5.0)
    schedule.forget((1, 1))
    schedule.forget((9, 9))  # unknown: ignored
    assert schedule.next_at() == 5.0 and len(schedule) == 1
    key, _ = schedule.pop_due(5.0) or ((0, 0), uri)
    assert key == (2, 1)
    schedule.forget((2, 1))
    schedule.answered((2, 1), uri, 60, 6.0)
    assert schedule.next_at() is None and schedule.pop_due(1e9) is None
