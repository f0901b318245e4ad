"""``kemi/native.py`` on a FakeKsr: the ``python_exec`` wrappers' codes (what ``$rc`` holds
in a native cfg), the event routes run through ``evrexec.run`` with ``$var(ka_*)`` set,
``ka_xhttp`` leaving foreign paths alone, and ``mod_init``."""

from __future__ import annotations

import json

import pytest

from ka_core.ops.access import HttpRequest
from ka_core.script import native_cfg
from ka_core.script.callbacks import DestinationEvent
from ka_core.state import State
from ka_core.uri import parse_uri
from kemi import functions, native
from kemi.native import NativeHandler
from tests.unit.conftest import Glue, GlueFactory

URI = "sip:10.0.0.1"
MSG = object()
ROUTE_OK = (200, '{"jsonrpc": "2.0", "result": "ok", "id": 1}')


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    functions._slot_cache.clear()


def set_state(glue: Glue, uri: str, state: State) -> None:
    """What the pinger writes when a probe ends."""
    table = glue.rt.table
    slot = table.find(parse_uri(uri).key)
    gen = table.hot(slot)[0]
    assert table.record_result(slot, gen, state=state, failures=0, stopped=False, code=200,
                               wall=0.0, rtt_ms=1.0, replied=True)  # fmt: skip


def record_rpc(glue: Glue) -> list[dict[str, object]]:
    """The JSON-RPC requests the glue sends through ``jsonrpc_exec``, decoded."""
    seen: list[dict[str, object]] = []
    answer = glue.ksr.jsonrpc_exec

    def recording(request: str) -> tuple[object, object]:
        seen.append(json.loads(request))
        return answer(request)

    glue.ksr.jsonrpc_exec = recording  # type: ignore[method-assign]
    return seen


def event(new: State = State.DOWN, rtt_ms: float = 12.6) -> DestinationEvent:
    return DestinationEvent(URI, "cfg", int(State.UP), int(new), 408, rtt_ms, None)


def test_is_alive_codes(glue: Glue) -> None:
    handler = NativeHandler()
    assert handler.ka_is_alive(MSG, URI) == -1, "unknown destination"
    assert handler.ka_add_destination(MSG, f"{URI} cfg") == 1
    assert handler.ka_is_alive(MSG, URI) == 1, "not probed yet counts as up"
    for state, code in ((State.DOWN, 2), (State.DEGRADED, 3), (State.UP, 1)):
        set_state(glue, URI, state)
        functions._slot_cache.clear()
        assert handler.ka_is_alive(MSG, URI) == code, state
    assert handler.ka_is_alive(MSG, "sip:") == -1, "bad URI"
    assert handler.ka_is_alive(MSG, " 10.0.0.1 ") == 1, "white space around one word"


def test_add_and_del_with_owner_and_settings(glue: Glue) -> None:
    handler = NativeHandler()
    assert handler.ka_add_destination(MSG, "sip:10.0.0.3 cfg bogus=1") == -1, "bad settings"
    assert handler.ka_add_destination(MSG, "sip:10.0.0.2 cfg interval=5;down_after=2") == 1
    assert glue.rt.table.count == 1
    assert handler.ka_add_destination(MSG, "sip:10.0.0.2 cfg") == -1, "duplicate"
    assert handler.ka_del_destination(MSG, "sip:10.0.0.2 other") == -1, "not its owner"
    assert handler.ka_del_destination(MSG, "sip:10.0.0.2 cfg") == 1
    assert handler.ka_del_destination(MSG, "sip:10.0.0.2 cfg") == -1, "gone already"
    assert handler.ka_is_alive(MSG, "sip:10.0.0.2") == -1


@pytest.mark.parametrize(
    ("method", "arg", "usage"),
    [
        ("ka_is_alive", None, "<uri>"),
        ("ka_is_alive", "", "<uri>"),
        ("ka_is_alive", "sip:a sip:b", "<uri>"),
        ("ka_add_destination", "sip:a", "<uri> <owner> [<settings>]"),
        ("ka_add_destination", "sip:a o s extra", "<uri> <owner> [<settings>]"),
        ("ka_add_destination", None, "<uri> <owner> [<settings>]"),
        ("ka_del_destination", "sip:a", "<uri> <owner>"),
        ("ka_del_destination", "sip:a o x", "<uri> <owner>"),
        ("tcp_keepalive_enable", "1 2", "[<conid>] <idle> <count> <interval>"),
        ("tcp_keepalive_disable", "1 2", "[<conid>]"),
    ],
)
def test_wrong_word_count_is_minus_one_with_one_log_line(
    glue: Glue, method: str, arg: str | None, usage: str
) -> None:
    before = len(glue.ksr.logs)
    assert getattr(NativeHandler(), method)(MSG, arg) == -1
    new = glue.ksr.logs[before:]
    assert new == [("err", f'{method}: use python_exec("{method}", "{usage}"), not {arg!r}')]
    assert glue.rt.table.count == 0


def test_deliver_event_sets_vars_and_runs_the_route(glue: Glue) -> None:
    glue.ksr.rpc["evrexec.run"] = ROUTE_OK
    seen = record_rpc(glue)
    handler = NativeHandler()
    handler.deliver_event("keepalive:dst-down", event(State.DOWN, 12.6))
    assert glue.ksr.vars == {
        "ka_uri": URI, "ka_owner": "cfg", "ka_old_state": 1, "ka_new_state": 2,
        "ka_code": 408, "ka_rtt_ms": 13,
    }  # fmt: skip
    assert seen == [{"jsonrpc": "2.0", "method": "evrexec.run",
                     "params": ["keepalive:dst-down", URI]}]  # fmt: skip
    handler.deliver_event("keepalive:dst-down", event(State.DOWN))
    assert len(seen) == 2, "a route that exists is run on every change"
    assert glue.ksr.texts("err") == [] and handler.missing_routes == set()


def test_missing_event_route_tried_once(glue: Glue) -> None:
    glue.ksr.rpc["evrexec.run"] = (500, '{"error": {"message": "route not found"}}')
    seen = record_rpc(glue)
    handler = NativeHandler()
    for _ in range(3):
        handler.deliver_event("keepalive:dst-degraded", event(State.DEGRADED))
    assert len(seen) == 1
    assert [t for t in glue.ksr.texts("info") if "event_route" in t] == [
        "no event_route[keepalive:dst-degraded] in the cfg: those changes are only logged"
    ]
    glue.ksr.rpc["evrexec.run"] = ROUTE_OK
    handler.deliver_event("keepalive:dst-up", event(State.UP))
    assert len(seen) == 2, "another route is still tried"


def test_evrexec_not_loaded_is_an_error_once(glue: Glue) -> None:
    seen = record_rpc(glue)
    not_found = '{"error": {"code": -32601, "message": "Method Not Found"}}'
    glue.ksr.rpc["evrexec.run"] = (500, not_found)
    handler = NativeHandler()
    handler.deliver_event("keepalive:dst-up", event(State.UP))
    handler.deliver_event("keepalive:dst-up", event(State.UP))
    assert len(seen) == 1
    assert glue.ksr.texts("err") == [
        "evrexec.so is not loaded: state changes cannot reach event_route[keepalive:dst-up]"
    ]


@pytest.mark.parametrize("path", ["/", "/other", "/RPCx", "/metrics/x", "/rpc"])
def test_xhttp_foreign_path_is_not_mine(glue: Glue, path: str) -> None:
    glue.ksr.request = HttpRequest("POST", path, "127.0.0.1", None)
    assert NativeHandler().ka_xhttp(MSG) == native.NOT_MINE == -1
    assert glue.ksr.http_replies == [] and glue.ksr.dispatched == 0


@pytest.mark.parametrize(("method", "url"), [("POST", "/RPC"), ("GET", "/metrics?x=1")])
def test_xhttp_own_paths_are_answered(glue: Glue, method: str, url: str) -> None:
    glue.ksr.request = HttpRequest(method, url, "127.0.0.1", None)
    glue.ksr.body = b'{"jsonrpc": "2.0", "method": "keepalive.list", "id": 1}'
    assert NativeHandler().ka_xhttp(MSG) == 1
    assert len(glue.ksr.http_replies) + glue.ksr.dispatched >= 1, "something was answered"


def test_xhttp_metrics_off_is_not_mine(glue_factory: GlueFactory) -> None:
    glue = glue_factory(KA_METRICS_PATH="")
    glue.ksr.request = HttpRequest("GET", "/metrics", "127.0.0.1", None)
    assert NativeHandler().ka_xhttp(MSG) == -1 and glue.ksr.http_replies == []


def test_mod_init_routes_events_to_deliver_event(
    glue: Glue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native, "setup", lambda: glue.rt)
    handler = native.mod_init()
    assert isinstance(handler, NativeHandler)
    assert glue.rt.config.event_callback == native_cfg.EVENT_METHOD == "deliver_event"


def test_mod_init_refuses_an_event_callback(
    glue_factory: GlueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    glue = glue_factory(KA_EVENT_CALLBACK="on_change")
    monkeypatch.setattr(native, "setup", lambda: glue.rt)
    with pytest.raises(SystemExit):
        native.mod_init()
    assert glue.ksr.texts("err") == [
        "cannot start: KA_EVENT_CALLBACK 'on_change' has no use in a native cfg: state "
        "changes go to event_route[keepalive:dst-up|dst-down|dst-degraded]"
    ]
