"""``ka_select`` / ``ka_next`` (KEMI and native) on a FakeKsr: the pick lands in ``$du`` or the
named variable, the rest waits in the xavp for failover, and bad input is -1 and logged."""

from __future__ import annotations

import pytest

from ka_core.state import State
from ka_core.uri import parse_uri
from kemi import functions
from kemi.functions import ka_add_destination, ka_next, ka_select
from kemi.native import NativeHandler
from tests.unit.conftest import Glue, GlueFactory

A, B, C = "sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.3"
MSG = object()


@pytest.fixture(autouse=True)
def fresh_selector() -> None:
    functions._selector = functions.Selector()


def three(glue: Glue, down: str = B) -> None:
    for uri in (A, B, C):
        assert ka_add_destination(uri, "gw") == 1
    table = glue.rt.table
    slot = table.find(parse_uri(down).key)
    table.write_state(slot, table.hot(slot)[0], State.DOWN, 1.0)


def test_select_then_next_walks_the_live_candidates(glue: Glue) -> None:
    three(glue)
    assert ka_select("gw") == 1
    assert glue.ksr.pvs["$du"] == A
    assert ka_next() == 1 and glue.ksr.pvs["$du"] == C
    assert ka_next() == -1, "B is down: never a candidate"
    assert glue.ksr.texts("err") == []


def test_rr_into_a_named_variable(glue: Glue) -> None:
    three(glue)
    picks = []
    for _ in range(3):
        assert ka_select("gw", "rr", "$var(gw)") == 1
        picks.append(glue.ksr.pvs["$var(gw)"])
    assert picks == [A, C, A]
    assert ka_next() == 1 and glue.ksr.pvs["$var(gw)"] == C
    assert "$du" not in glue.ksr.pvs


def test_none_live_is_minus_one_without_a_log_and_next_has_nothing(glue: Glue) -> None:
    assert ka_add_destination(A, "gw") == 1
    table = glue.rt.table
    slot = table.find(parse_uri(A).key)
    table.write_state(slot, table.hot(slot)[0], State.DOWN, 1.0)
    assert ka_select("gw") == -1
    assert ka_next() == -1
    assert "$du" not in glue.ksr.pvs and glue.ksr.texts("err") == []


def test_next_without_a_select_is_minus_one(glue: Glue) -> None:
    assert ka_next() == -1


def test_panic_percent_parameter(glue_factory: GlueFactory) -> None:
    glue = glue_factory(KA_SELECT_PANIC_PERCENT="50")
    three(glue)
    table = glue.rt.table
    for uri in (A, C):
        slot = table.find(parse_uri(uri).key)
        table.write_state(slot, table.hot(slot)[0], State.DOWN, 1.0)
    assert ka_select("gw") == 1 and glue.ksr.pvs["$du"] == A, "all down: panic, all count"


@pytest.mark.parametrize(
    ("args", "logged"),
    [
        (("gw", "random"), "ka_select: unknown algorithm 'random' (first, rr, weight, rtt)"),
        (("nobody",), "ka_select: no destinations in group 'nobody'"),
        (("gw", "first", "du"), "ka_select: not a pseudo-variable name (e.g. $du, $var(gw)): 'du'"),
        (("gw", "first", "$si"), "ka_select: cannot set $si (not a writable variable?)"),
        (("gw", "first", "$du", 2), "ka_select: skip_degraded is 0 or 1, not 2"),
        ((None,), "ka_select: group is an owner name, not None"),
        ((), "ka_select: wrong arguments: "),
    ],
)
def test_bad_input_is_minus_one_and_logged(
    glue: Glue, args: tuple[object, ...], logged: str
) -> None:
    three(glue)
    assert ka_select(*args) == -1
    assert any(t.startswith(logged) for t in glue.ksr.texts("err")), glue.ksr.texts()


def test_native_select_next_and_usage(glue: Glue) -> None:
    three(glue)
    handler = NativeHandler()
    assert handler.ka_select(MSG, "gw first var(gw)") == 1
    assert glue.ksr.pvs["$var(gw)"] == A
    assert handler.ka_next(MSG) == 1 and glue.ksr.pvs["$var(gw)"] == C
    assert handler.ka_select(MSG, "gw rr") == 1 and glue.ksr.pvs["$du"] == A
    assert handler.ka_select(MSG, "gw rtt $du 1") == 1
    assert handler.ka_select(MSG, "gw bogus") == -1
    assert handler.ka_select(MSG, "") == -1
    assert handler.ka_next(MSG, "extra") == -1
    errors = glue.ksr.texts("err")
    assert "ka_select: unknown algorithm 'bogus' (first, rr, weight, rtt)" in errors
    assert any('ka_select: use python_exec("ka_select", "<group> [<alg>' in e for e in errors)
    assert any(e.startswith('ka_next: use python_exec("ka_next", "")') for e in errors), errors
