from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ka_core.errors import InvalidArgument
from ka_core.policy import DEFAULT_POLICY, CodeSet, Policy
from ka_core.probe.health import Outcome, backoff_interval, transition
from ka_core.state import State, script_value, stops


def run(policy: Policy, replies: list[int | None], rtt: float = 1.0) -> list[State]:
    """States after each reply (None: no reply)."""
    state, ok, fail, out = State.UNKNOWN, 0, 0, []
    for code in replies:
        outcome = policy.judge(code or 408, code is not None, rtt)
        v = transition(state, ok, fail, outcome, policy)
        state, ok, fail = v.state, v.successes, v.failures
        out.append(state)
    return out


def test_script_values() -> None:
    assert [script_value(s) for s in State] == [1, 1, 2, 3]


def test_default_codes_are_2xx_only() -> None:
    for code in (200, 202, 299):
        assert DEFAULT_POLICY.judge(code, True, 1.0) is Outcome.OK
    for code in (100, 300, 404, 408, 500, 503, 603):
        assert DEFAULT_POLICY.judge(code, True, 1.0) is Outcome.FAIL


@given(st.lists(st.one_of(st.none(), st.sampled_from([200, 299, 404, 503])), max_size=40))
def test_default_policy_is_the_c_module(replies: list[int | None]) -> None:
    """C: the state is the last outcome's (2xx UP, anything else DOWN)."""
    expected = [State.UP if c is not None and 200 <= c <= 299 else State.DOWN for c in replies]
    assert run(DEFAULT_POLICY, replies) == expected


def test_down_after_needs_that_many_failures_in_a_row() -> None:
    p = Policy(down_after=3)
    assert run(p, [200, None, None, 200, None, None, None]) == [
        State.UP, State.UP, State.UP, State.UP, State.UP, State.UP, State.DOWN,
    ]  # fmt: skip
    assert run(p, [None, None, None]) == [State.UNKNOWN, State.UNKNOWN, State.DOWN]


def test_up_after_needs_that_many_alive_replies_in_a_row() -> None:
    p = Policy(up_after=2)
    assert run(p, [None, 200, None, 200, 200, 503]) == [
        State.DOWN, State.DOWN, State.DOWN, State.DOWN, State.UP, State.DOWN,
    ]  # fmt: skip


def test_alive_codes_make_a_404_answering_phone_up() -> None:
    p = Policy(alive=CodeSet.parse("2xx,404"))
    assert run(p, [404, 486, 404]) == [State.UP, State.DOWN, State.UP]
    anything = Policy(alive=CodeSet.parse("any,!408,!503"))
    assert run(anything, [404, 603, 503, 408, None, 200]) == [
        State.UP, State.UP, State.DOWN, State.DOWN, State.DOWN, State.UP,
    ]  # fmt: skip


def test_no_reply_is_never_alive_even_with_any() -> None:
    assert Policy(alive=CodeSet.parse("any")).judge(408, False, 0.0) is Outcome.FAIL


@pytest.mark.parametrize("text", ["", "2yy", "199", "700", "!any", "abc", "2xx,,"])
def test_bad_code_sets_are_refused(text: str) -> None:
    if text == "2xx,,":
        assert CodeSet.parse(text).codes == CodeSet.parse("2xx").codes
        return
    with pytest.raises(InvalidArgument):
        CodeSet.parse(text)


def test_slow_replies_degrade_or_count_as_failures() -> None:
    p = Policy(degraded_ms=100)
    assert run(p, [200], rtt=150.0) == [State.DEGRADED]
    assert run(p, [200, 200], rtt=50.0) == [State.UP, State.UP]
    as_down = Policy(degraded_ms=100, degraded_as_down=True)
    assert run(as_down, [200], rtt=150.0) == [State.DOWN]


def test_degraded_back_to_up_on_a_fast_reply() -> None:
    p = Policy(degraded_ms=100, up_after=3)
    v = transition(State.DEGRADED, 1, 0, p.judge(200, True, 10.0), p)
    assert v.state is State.UP  # alive states follow the latest reply at once


def test_backoff_doubles_past_down_up_to_the_cap() -> None:
    p = Policy(down_after=1)
    gaps = [backoff_interval(5.0, f, p, 60.0) for f in range(1, 7)]
    assert gaps == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert backoff_interval(5.0, 50, p, 0.0) == 5.0  # off


def test_stops_after_more_than_delete_counter_unless_probing_while_down() -> None:
    assert [stops(f, 5, False) for f in range(4, 8)] == [False, False, True, True]
    assert not stops(10**6, 0, False)
    assert not stops(10**6, 5, True)
