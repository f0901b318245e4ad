"""kemi.dispatcher_link on a FakeKsr: what the pinger runs through jsonrpcs for the bridge."""

from __future__ import annotations

import json

import pytest

from ka_core.events import StateChanged
from ka_core.state import State
from kemi.dispatcher_link import DispatcherLink
from tests.unit.conftest import Glue, GlueFactory

LISTED = {
    "NRSETS": 1,
    "RECORDS": [
        {
            "SET": {
                "ID": 1,
                "TARGETS": [
                    {"DEST": {"URI": "sip:10.0.0.1:5060", "FLAGS": "AX"}},
                    {"DEST": {"URI": "sip:10.0.0.2", "FLAGS": "AX"}},
                ],
            }
        }
    ],
}


@pytest.fixture
def bridged(glue_factory: GlueFactory) -> tuple[Glue, list[list[object]]]:
    glue = glue_factory(KA_DISPATCHER_BRIDGE="1", KA_DISPATCHER_SYNC_S="5")
    calls: list[list[object]] = []
    fake = glue.ksr.jsonrpc_exec

    def record(request: str) -> tuple[object, object]:
        doc = json.loads(request)
        if doc["method"] == "dispatcher.set_state":
            calls.append(doc["params"])
        return fake(request)

    glue.ksr.jsonrpc_exec = record  # type: ignore[method-assign]
    glue.ksr.rpc["dispatcher.list"] = (200, json.dumps(LISTED))
    glue.ksr.rpc["dispatcher.set_state"] = (200, "")
    return glue, calls


def listed_uris(glue: Glue) -> list[tuple[str, str]]:
    return sorted((uri, owner) for uri, owner in glue.rt.table.rows(("uri", "owner")))


def test_a_sync_adds_the_listed_destinations_and_a_change_sets_dispatchers_state(
    bridged: tuple[Glue, list[list[object]]],
) -> None:
    glue, calls = bridged
    link = DispatcherLink(glue.rt)
    link.step(1000.0)
    assert listed_uris(glue) == [
        ("sip:10.0.0.1:5060", "dispatcher"),
        ("sip:10.0.0.2", "dispatcher"),
    ]
    link.on_event(StateChanged("sip:10.0.0.2", "dispatcher", State.UNKNOWN, State.DOWN, "", ""))
    assert calls == [["i", 1, "sip:10.0.0.2"]]
    link.on_event(StateChanged("sip:10.0.0.2", "gw", State.UNKNOWN, State.DOWN, "", ""))
    assert len(calls) == 1, "another owner's destination leaves dispatcher alone"

    glue.ksr.rpc["dispatcher.list"] = (200, json.dumps({"NRSETS": 0, "RECORDS": []}))
    link.step(1004.9)
    assert len(listed_uris(glue)) == 2, "not due before KA_DISPATCHER_SYNC_S"
    link.step(1005.0)
    assert listed_uris(glue) == [], "gone from dispatcher: deleted"


def test_an_unreadable_list_and_a_refused_set_state_are_logged_by_name(
    bridged: tuple[Glue, list[list[object]]],
) -> None:
    glue, _calls = bridged
    glue.ksr.rpc["dispatcher.list"] = (500, "Internal error")
    link = DispatcherLink(glue.rt)
    link.step(1000.0)
    assert any("dispatcher bridge: dispatcher.list: code 500" in t for t in glue.ksr.texts("err"))
    glue.ksr.rpc["dispatcher.list"] = (200, json.dumps(LISTED))
    link.step(1004.0)
    assert listed_uris(glue) == [], "retried only after the period"
    link.step(1005.0)
    assert len(listed_uris(glue)) == 2
    glue.ksr.rpc["dispatcher.set_state"] = (500, "State Update Failed")
    link.on_event(StateChanged("10.0.0.1", "dispatcher", State.UP, State.DOWN, "", ""))
    assert any(
        "dispatcher.set_state i 1 sip:10.0.0.1:5060: code 500: State Update Failed" in t
        for t in glue.ksr.texts("err")
    )
