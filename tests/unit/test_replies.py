"""ka_core.probe.replies: what a SIP worker does with each reply it sees."""

from __future__ import annotations

import pytest

from ka_core.probe.callid import callid_prefix, make_callid
from ka_core.probe.replies import DROP, PASS, OurReply, SourceTags, classify, wakes
from ka_core.probe.wire import branch_for
from ka_core.state import State
from ka_core.store.layout import FLAG_CUSTOM_POLICY
from ka_core.uri import address_tag

KEY = b"k" * 16
PREFIX = callid_prefix("ab12cd34")
OURS = make_callid(PREFIX, 0x2A, 3)


def verdict(callid, code, branch=None, capacity=8):
    branch = branch_for(KEY, callid) if branch is None and callid else branch
    return classify(callid, code, branch, prefix=PREFIX, key=KEY, capacity=capacity)


def test_a_final_reply_to_our_ping_goes_to_the_pinger_and_is_dropped_by_the_route() -> None:
    assert verdict(OURS, 200) == (DROP, OurReply(0x2A, 3, 200), None)
    assert verdict(OURS, 503) == (DROP, OurReply(0x2A, 3, 503), None)


@pytest.mark.parametrize(
    "callid", [None, "", "someone-elses@host", PREFIX + "zz.1", PREFIX + "1", "ka00000000.1.1"]
)
def test_anybody_elses_reply_passes(callid) -> None:
    assert classify(callid, 200, "z9hG4bK1", prefix=PREFIX, key=KEY, capacity=8) == (
        PASS, None, None,
    )  # fmt: skip


def test_a_forged_branch_is_dropped_with_a_warning_and_never_applied() -> None:
    route, reply, warning = verdict(OURS, 200, branch="z9hG4bKforged")
    assert (route, reply) == (DROP, None)
    assert warning == "ignoring reply 200 with our Call-ID but not our branch"


@pytest.mark.parametrize("code", [None, 100, 180, 199])
def test_provisional_or_codeless_replies_are_dropped_quietly(code) -> None:
    assert verdict(OURS, code) == (DROP, None, None)


def test_a_slot_beyond_the_table_is_dropped() -> None:
    assert verdict(make_callid(PREFIX, 1, 8), 200, capacity=8) == (DROP, None, None)


def test_only_a_reply_that_changes_the_state_wakes_the_pinger() -> None:
    assert wakes(State.DOWN, 0, 200, True)
    assert not wakes(State.UP, 0, 200, True)
    assert wakes(State.UP, 0, 408, True)
    assert not wakes(State.DOWN, 0, 200, False)  # wake-ups off
    assert not wakes(State.DOWN, FLAG_CUSTOM_POLICY, 200, True)  # its own policy decides


def test_source_tags_keep_one_entry_per_slot_whatever_the_churn_of_addresses() -> None:
    """A cache by address grew in every SIP worker with each address that ever answered."""
    tags = SourceTags()
    for i in range(1000):  # slot 3 reused by a new address 1,000 times, slot 4 steady
        source = f"10.1.{i // 250}.{i % 250 + 1}"
        assert tags.tag(3, source) == address_tag(source)
        assert tags.tag(4, "[::5]") == address_tag("[::5]")
    assert len(tags) == 2
    assert tags.tag(4, "gw.example.com") == 0, "another source of the slot: asked again"
    for slot in range(5 * SourceTags.SIZE):
        tags.tag(slot, f"10.2.{slot // 250 % 250}.{slot % 250 + 1}")
    assert 0 < len(tags) <= SourceTags.SIZE, "bounded, whatever the table's size"
    assert not hasattr(address_tag, "cache_info"), "no cache by address behind it"
