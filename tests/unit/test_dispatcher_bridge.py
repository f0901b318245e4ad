"""The dispatcher bridge's decisions (ka_core.ops.dispatcher), without Kamailio."""

from __future__ import annotations

import json

import pytest

from ka_core.config.kaconfig import load_config
from ka_core.errors import InvalidArgument
from ka_core.ops.dispatcher import OWNER, Bridge, DsEntry, SetState, letter_of, parse_list
from ka_core.state import State


def listing(*sets: tuple[int, list[tuple[str, str]]]) -> str:
    """A dispatcher.list result as jsonrpcs renders it."""
    return json.dumps(
        {
            "NRSETS": len(sets),
            "RECORDS": [
                {
                    "SET": {
                        "ID": group,
                        "TARGETS": [
                            {"DEST": {"URI": uri, "FLAGS": flags, "PRIORITY": 0}}
                            for uri, flags in targets
                        ],
                    }
                }
                for group, targets in sets
            ],
        }
    )


def entry(group: int, uri: str, active: bool = True, probing: bool = False) -> DsEntry:
    return DsEntry(group, uri, "", active, probing)


def test_parse_list_reads_groups_uris_and_flags() -> None:
    body = listing((1, [("sip:10.0.0.1:5060", "AX"), ("sip:10.0.0.2;transport=tcp", "IP")]))
    assert parse_list(body) == [
        entry(1, "sip:10.0.0.1:5060"),
        entry(1, "sip:10.0.0.2;transport=tcp", active=False, probing=True),
    ]


def test_parse_list_takes_a_lone_struct_and_the_result_member() -> None:
    lone = {"NRSETS": 1, "RECORDS": {"SET": {"ID": 4, "TARGETS": {"DEST": {"URI": "sip:h"}}}}}
    assert parse_list(json.dumps({"jsonrpc": "2.0", "result": lone, "id": 1})) == [
        entry(4, "sip:h", active=False)
    ]
    assert parse_list(json.dumps({"NRSETS": 0})) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "not an object"),
        ('{"RECORDS": 3}', "RECORDS is neither"),
        ('{"RECORDS": [{"SET": {"ID": "x"}}]}', "without SET.ID"),
        ('{"RECORDS": [{"SET": {"ID": 1, "TARGETS": [{"DEST": {}}]}}]}', "without DEST.URI"),
    ],
)
def test_a_listing_of_another_shape_is_refused_by_name(body: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_list(body)


def test_states_map_to_active_and_inactive_and_unknown_leaves_dispatcher_alone() -> None:
    assert [letter_of(s) for s in State] == [None, "a", "i", "a"]


def test_first_sync_adds_every_listed_uri_once() -> None:
    bridge = Bridge(sync_s=30)
    listed = [entry(1, "sip:10.0.0.1:5060"), entry(2, "sip:10.0.0.1"), entry(2, "sip:10.0.0.2")]
    plan = bridge.sync(100.0, listed, [("sip:10.0.0.1", "gw", 1)])
    assert plan.adds == ["sip:10.0.0.1:5060", "sip:10.0.0.2"], "one destination per key"
    assert plan.dels == [] and plan.commands == [] and plan.warnings == []
    assert not bridge.due(129.9) and bridge.due(130.0)
    bridge.failed(130.0)
    assert not bridge.due(159.9) and bridge.due(160.0)


def test_sync_sets_what_disagrees_in_every_group_with_dispatchers_spelling() -> None:
    bridge = Bridge()
    listed = [entry(1, "sip:10.0.0.1:5060"), entry(2, "sip:10.0.0.1", active=False)]
    ours = [("sip:10.0.0.1", OWNER, 2), ("sip:10.0.0.9", OWNER, 1), ("sip:10.0.0.8", "gw", 1)]
    plan = bridge.sync(0.0, listed, ours)
    assert plan.commands == [SetState("i", 1, "sip:10.0.0.1:5060")]
    assert plan.dels == ["sip:10.0.0.9:5060"], "gone from every group; other owners stay"
    plan = bridge.sync(30.0, listed, [("sip:10.0.0.1:5060", OWNER, 0)])
    assert plan.commands == [] and plan.adds == []


def test_a_change_is_sent_for_each_group_of_the_bridges_own_destination() -> None:
    bridge = Bridge()
    bridge.sync(0.0, [entry(1, "sip:10.0.0.1:5060"), entry(3, "sip:10.0.0.1")], [])
    assert bridge.on_change("10.0.0.1", OWNER, State.DOWN) == [
        SetState("i", 1, "sip:10.0.0.1:5060"),
        SetState("i", 3, "sip:10.0.0.1"),
    ]
    assert bridge.on_change("sip:10.0.0.1", "gw", State.DOWN) == [], "another owner's"
    assert bridge.on_change("sip:10.0.0.1", OWNER, State.UNKNOWN) == []
    assert bridge.on_change("sip:10.0.0.7", OWNER, State.UP) == []
    assert SetState("a", 3, "sip:h").params() == ["a", 3, "sip:h"]


def test_unprobeable_uris_and_dispatchers_own_probing_are_warned_once() -> None:
    bridge = Bridge()
    listed = [entry(1, "tel:+123"), entry(1, "sip:10.0.0.1", probing=True)]
    plan = bridge.sync(0.0, listed, [])
    assert plan.adds == ["sip:10.0.0.1"]
    assert len(plan.warnings) == 2
    assert "tel:+123: not probed" in plan.warnings[0]
    assert "probes sip:10.0.0.1 itself" in plan.warnings[1]
    assert bridge.sync(30.0, listed, [("sip:10.0.0.1", OWNER, 1)]).warnings == []


@pytest.mark.parametrize(
    ("defines", "message"),
    [
        ({"DISPATCHER_BRIDGE": "2"}, "parameter dispatcher_bridge"),
        ({"DISPATCHER_SYNC_S": "0"}, "parameter dispatcher_sync_s"),
        ({"DISPATCHER_SYNC_S": "x"}, "parameter dispatcher_sync_s"),
        (
            {"DISPATCHER_BRIDGE": "1", "CLUSTER": "1", "DMQ_SERVER": "sip:127.0.0.1:5060"},
            "dispatcher_bridge: not supported together with cluster 1",
        ),
    ],
)
def test_bad_bridge_parameters_are_refused_by_name(defines: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        load_config(defines)


def test_the_bridge_is_off_by_default_and_a_bare_define_turns_it_on() -> None:
    assert load_config({}).dispatcher_bridge == 0
    assert load_config({"DISPATCHER_BRIDGE": ""}).dispatcher_bridge == 1
    assert load_config({}).dispatcher_sync_s == 30
