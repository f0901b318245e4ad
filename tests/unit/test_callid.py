"""Call-IDs of pings: what the SIP workers accept as ours, and what they wake the pinger for."""

from __future__ import annotations

import pytest

from ka_core.policy import DEFAULT_POLICY
from ka_core.probe.callid import callid_prefix, make_callid, parse_callid
from ka_core.probe.health import transition
from ka_core.state import State, changes_state

PREFIX = callid_prefix("1a2b3c4d")


def test_round_trip() -> None:
    callid = make_callid(PREFIX, 0xFFFFFFFF, 39999)
    assert callid == "ka1a2b3c4d.ffffffff.9c3f"
    assert parse_callid(callid, PREFIX) == (0xFFFFFFFF, 39999)


@pytest.mark.parametrize(
    "callid",
    [
        "ka00000000.1.2",  # another run's token
        "ka1a2b3c4d.1",  # no slot
        "ka1a2b3c4d..2",
        "ka1a2b3c4d.1.",
        "ka1a2b3c4d.0x1.2",
        "ka1a2b3c4d.+1.2",
        "ka1a2b3c4d. 1.2",
        "ka1a2b3c4d.1.2.3",
        "ka1a2b3c4d.G.2",
        "ka1a2b3c4d.123456789.2",  # more than 32 bits
        "",
        "random-call-id@host",
    ],
)
def test_anything_else_is_not_ours(callid: str) -> None:
    assert parse_callid(callid, PREFIX) is None


@pytest.mark.parametrize(
    ("state", "code", "wake"),
    [
        (State.UNKNOWN, 200, True),
        (State.UNKNOWN, 503, True),
        (State.UP, 200, False),
        (State.UP, 299, False),
        (State.UP, 404, True),
        (State.DOWN, 200, True),
        (State.DOWN, 408, False),
        (7, 200, True),  # a torn read of a slot being reused: wake, the pinger decides
    ],
)
def test_reply_wakes_the_pinger_only_when_it_changes_the_state(
    state: int, code: int, wake: bool
) -> None:
    assert changes_state(int(state), code) is wake


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("code", [200, 202, 299, 300, 404, 408, 503, 699])
def test_wake_rule_agrees_with_the_transition_table(state: State, code: int) -> None:
    verdict = transition(state, 0, 0, DEFAULT_POLICY.judge(code, True, 1.0), DEFAULT_POLICY)
    assert changes_state(int(state), code) is (verdict.state is not state)
