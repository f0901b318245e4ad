from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ka_core.state import Outcome, State, apply, outcome_of, script_value


def test_codes_map_to_outcomes() -> None:
    assert outcome_of(200) is Outcome.SUCCESS and outcome_of(299) is Outcome.SUCCESS
    for code in (300, 404, 408, 500, 503, 603):
        assert outcome_of(code) is Outcome.FAILURE


def test_unknown_counts_as_up_for_scripts() -> None:
    assert script_value(State.UNKNOWN) == 1
    assert script_value(State.UP) == 1
    assert script_value(State.DOWN) == 2


def test_probing_stops_after_more_than_delete_counter_failures() -> None:
    state, failures = State.UNKNOWN, 0
    stops = []
    for _ in range(7):
        step = apply(state, failures, Outcome.FAILURE, delete_counter=5)
        state, failures = step.state, step.failures
        stops.append(step.stopped)
    assert stops == [False, False, False, False, False, True, True]  # C: 6 pings, then none
    assert state is State.DOWN


def test_delete_counter_zero_never_stops() -> None:
    step = apply(State.DOWN, 10**6, Outcome.FAILURE, delete_counter=0)
    assert not step.stopped


def test_success_resets_failures_and_reports_change() -> None:
    step = apply(State.DOWN, 3, Outcome.SUCCESS, delete_counter=5)
    assert (step.state, step.failures, step.changed) == (State.UP, 0, True)
    assert not apply(State.UP, 0, Outcome.SUCCESS, 5).changed


@given(st.lists(st.sampled_from(list(Outcome)), max_size=50), st.integers(0, 10))
def test_state_always_follows_the_last_outcome(outcomes: list[Outcome], dc: int) -> None:
    """Against a model written from the C module's behaviour, not from ``apply``: the state is
    the last outcome's, failures count since the last success, probing stops after more
    than ``dc`` of them (never with dc 0), and a change is reported when the state moves."""
    state, failures = State.UNKNOWN, 0
    model_failures, model_state = 0, "unknown"
    for outcome in outcomes:
        ok = outcome is Outcome.SUCCESS
        model_failures = 0 if ok else model_failures + 1
        new_model_state = "up" if ok else "down"
        step = apply(state, failures, outcome, dc)
        assert step.state.name.lower() == new_model_state
        assert step.failures == model_failures
        assert step.stopped == (dc != 0 and model_failures > dc)
        assert step.changed == (new_model_state != model_state)
        model_state = new_model_state
        state, failures = step.state, step.failures
