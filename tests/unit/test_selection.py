"""``ka_core.route.selection``: each algorithm's order, what counts as live, the panic rule,
and the per-process group cache following adds and deletes."""

from __future__ import annotations

import pytest

from ka_core.errors import InvalidArgument, UnknownDestination
from ka_core.route import failover
from ka_core.route.selection import Selector
from ka_core.settings import parse_settings
from ka_core.state import State
from ka_core.store.table import SharedTable
from ka_core.uri import parse_uri
from tests.unit.test_table import make_table

A, B, C = "sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.3"


def add(t: SharedTable, uri: str, owner: str = "gw", settings: str = "", at: float = 1.0) -> None:
    t.insert(parse_uri(uri), owner, interval_ms=1000, wall=at, settings=settings)


def state(t: SharedTable, uri: str, new: State, rtt_ms: float = 0.0, ejected: bool = False) -> None:
    slot = t.find(parse_uri(uri).key)
    gen = t.hot(slot)[0]
    held = (True, 1, 9, False) if ejected else None
    probe = (0, 1, False, True, new != State.DOWN) if rtt_ms else None
    t.write_state(slot, gen, new, 1.0, rtt_ms=rtt_ms, probe=probe, ejected=held)


def group(*settings: str) -> SharedTable:
    t = make_table()
    for at, (uri, text) in enumerate(zip((A, B, C), settings, strict=False)):
        add(t, uri, settings=text, at=float(at))
    return t


def test_first_is_priority_then_add_order_and_skips_down_and_ejected() -> None:
    t = group("priority=5", "", "priority=5")
    s = Selector()
    assert s.select(t, "gw", "first") == [B, A, C]
    state(t, B, State.DOWN)
    assert s.select(t, "gw", "first") == [A, C]
    state(t, A, State.DOWN, ejected=True)
    assert s.select(t, "gw", "first") == [C]
    state(t, C, State.DOWN)
    assert s.select(t, "gw", "first") == []


def test_unknown_counts_as_live_and_degraded_is_skipped_on_request() -> None:
    t = group("", "", "")
    state(t, A, State.DEGRADED)
    s = Selector()
    assert s.select(t, "gw", "first") == [A, B, C], "UNKNOWN and DEGRADED are live"
    assert s.select(t, "gw", "first", skip_degraded=True) == [B, C]


def test_rr_rotates_over_the_live_members() -> None:
    t = group("", "", "")
    state(t, B, State.DOWN)
    s = Selector()
    picks = [s.select(t, "gw", "rr") for _ in range(4)]
    assert picks == [[A, C], [C, A], [A, C], [C, A]]


def test_weight_spreads_picks_by_weight() -> None:
    t = group("weight=3", "", "weight=2")
    s = Selector()
    firsts = [s.select(t, "gw", "weight")[0] for _ in range(60)]
    assert (firsts.count(A), firsts.count(B), firsts.count(C)) == (30, 10, 20)
    assert s.select(t, "gw", "weight")[1:] in ([A, C], [C, A], [A, B], [C, B])
    assert firsts[:6] != [A] * 6, "smooth: not three of A in a row"


def test_rtt_lowest_ewma_first_unknown_last() -> None:
    t = group("", "", "")
    state(t, B, State.UP, rtt_ms=40.0)
    state(t, C, State.UP, rtt_ms=5.0)
    assert Selector().select(t, "gw", "rtt") == [C, B, A]


def test_panic_selects_among_all_when_too_few_are_live() -> None:
    t = group("", "", "")
    state(t, A, State.DOWN)
    state(t, B, State.DOWN)
    s = Selector()
    assert s.select(t, "gw", "first", panic_percent=30) == [C], "one of three is 33 %"
    assert s.select(t, "gw", "first", panic_percent=50) == [A, B, C]
    state(t, C, State.DOWN)
    assert s.select(t, "gw", "first") == []
    assert s.select(t, "gw", "first", panic_percent=1) == [A, B, C]


def test_the_cache_follows_adds_deletes_and_other_groups() -> None:
    t = group("", "")
    add(t, C, owner="other")
    s = Selector()
    assert s.select(t, "gw", "first") == [A, B]
    assert s.select(t, "other", "first") == [C]
    add(t, C, at=9.0)
    assert s.select(t, "gw", "first") == [A, B, C]
    t.remove(parse_uri(A).key, "gw")
    assert s.select(t, "gw", "first") == [B, C]
    t.remove(parse_uri(B).key, "gw")
    t.remove(parse_uri(C).key, "gw")
    for _ in range(2):  # remembered as empty
        with pytest.raises(UnknownDestination, match="no destinations in group 'gw'"):
            s.select(t, "gw", "first")
    add(t, B)
    assert s.select(t, "gw", "first") == [B], "known again after an add"


def test_bad_algorithm_and_unknown_group() -> None:
    t = group("")
    with pytest.raises(InvalidArgument, match="unknown algorithm 'random'"):
        Selector().select(t, "gw", "random")
    with pytest.raises(UnknownDestination):
        Selector().select(t, "nobody", "first")


def test_failover_text_round_trip_and_variable_names() -> None:
    text = failover.pending("$var(gw)", [B, C])
    assert failover.take_next(text) == ("$var(gw)", B, f"$var(gw) {C}")
    assert failover.take_next(f"$var(gw) {C}") == ("$var(gw)", C, "$var(gw)")
    assert failover.take_next("$var(gw)") is None
    assert failover.take_next(None) is None
    for good in ("$du", "$var(gw)", "$avp(x)", "$xavp(a=>b)"):
        assert failover.check_var(good) == good
    for bad in ("du", "$", "$du x", "$var(gw", 5, ""):
        with pytest.raises(InvalidArgument, match="not a pseudo-variable name"):
            failover.check_var(bad)


def test_priority_and_weight_settings() -> None:
    settings = parse_settings("priority=0;weight=1")
    assert (settings.priority, settings.weight, settings.text) == (0, 1, "")
    settings = parse_settings("priority=7;weight=40")
    assert settings.text == "priority=7;weight=40"
    bad_ones = [
        ("weight=0", "out of range"), ("priority=-1", "out of range"),
        ("weight=x", "not an integer"), ("priority=1001", "out of range"),
    ]  # fmt: skip
    for bad, error in bad_ones:
        with pytest.raises(InvalidArgument, match=error):
            parse_settings(bad)


def test_a_group_setting_puts_a_destination_in_that_group_instead_of_its_owner() -> None:
    t = make_table()
    add(t, A, owner="gw")
    add(t, B, owner="gw", settings="group=backup")
    add(t, C, owner="other", settings="group=gw;priority=1", at=0.5)
    s = Selector()
    assert s.select(t, "gw", "first") == [A, C]
    assert s.select(t, "backup", "first") == [B]
    with pytest.raises(UnknownDestination):
        s.select(t, "other", "first")
    assert parse_settings("group=gw-1.a").text == "group=gw-1.a"
    for bad in ("group=a b", "group=a/b", "group=" + "x" * 64):
        with pytest.raises(InvalidArgument, match="setting group"):
            parse_settings(bad)


def test_dns_targets_are_not_members_and_an_add_elsewhere_keeps_the_rr_turn() -> None:
    t = group("", "")
    add(t, C, settings="target_of=sip:gw.example.com")
    s = Selector()
    assert s.select(t, "gw", "rr") == [A, B], "the resolved target is left out"
    add(t, "sip:10.0.0.9", owner="other")
    assert s.select(t, "gw", "rr") == [B, A], "the rotation goes on after a rescan"
