from __future__ import annotations

import json
import threading
import time

import pytest

from ka_core.errors import RpcFault
from ka_core.ops import jsonrpc
from ka_core.ops.commands import RpcCommands, ctime, list_struct
from ka_core.state import State
from ka_core.store.table import SharedTable, buffer_size


@pytest.fixture
def commands() -> RpcCommands:
    buf = bytearray(buffer_size(8, 16))
    SharedTable.format_buffer(buf, 8, 16)
    return RpcCommands(SharedTable(buf, threading.Lock()), lambda: 1_700_000_000.0)


def fault_of(commands: RpcCommands, method: str, *params: object) -> str:
    with pytest.raises(RpcFault) as err:
        commands.call(method, list(params))
    return f"{err.value.code} - {err.value.text}"


def test_c_reply_texts(commands: RpcCommands) -> None:
    assert commands.call("keepalive.add", ["sip:127.0.0.1:5073", "rpcowner"]) == [
        "Ok. Destination added."
    ]
    assert fault_of(commands, "keepalive.add", "sip:127.0.0.1:5073", "rpcowner") == (
        "500 - couldn't add data to list"
    )
    assert commands.call("keepalive.get", ["sip:127.0.0.1:5073", "rpcowner"]) == [
        {"uri": "sip:127.0.0.1:5073", "owner": "rpcowner", "state": 0}
    ]
    assert fault_of(commands, "keepalive.get", "sip:127.0.0.1:5075") == (
        "500 - Not enough parameters or wrong format"
    )
    assert fault_of(commands, "keepalive.add", "s:1", 2) == (
        "500 - Not enough parameters or wrong format"
    )
    assert commands.call("keepalive.del", ["sip:127.0.0.1:5073", "rpcowner"]) == [
        "Ok. Destination removed."
    ]
    assert fault_of(commands, "keepalive.get", "sip:127.0.0.1:5073", "rpcowner") == (
        "500 - couldn't get data from list"
    )
    assert fault_of(commands, "keepalive.del", "sip:127.0.0.1:5073", "rpcowner") == (
        "500 - couldn't delete data from list"
    )
    assert commands.call("keepalive.flush", []) == ["Ok. Destination list flushed."]
    assert commands.call("keepalive.list", ["x", "y", "z"]) == []
    assert fault_of(commands, "keepalive.nope") == "500 - command keepalive.nope not found"


def test_invalid_uri_is_a_clear_fault(commands: RpcCommands) -> None:
    assert fault_of(commands, "keepalive.add", "sip:bad host!", "o").startswith(
        "500 - invalid destination: "
    )


def test_list_is_newest_first_with_ctime_fields(commands: RpcCommands) -> None:
    commands.call("keepalive.add", ["10.0.0.1", "a"])
    table = commands._table
    slot = table.find("sip:10.0.0.1:5060", "a")
    table.record_result(
        slot, table.read(slot).gen, state=State.UP, failures=0, stopped=False, code=200,
        wall=1_700_000_100.0, rtt_ms=1.0, replied=True,
    )  # fmt: skip
    time.sleep(0.001)
    clock_commands = RpcCommands(table, lambda: 1_700_000_050.0)
    clock_commands.call("keepalive.add", ["10.0.0.2", "b"])
    first, second = commands.call("keepalive.list", [])
    assert first["uri"] == "sip:10.0.0.2" and second["uri"] == "sip:10.0.0.1"
    assert list(second) == ["uri", "owner", "last checked", "last up", "last down", "state"]
    assert second["last up"] == ctime(1_700_000_100.0) and second["last up"].endswith("\n")
    assert second["last down"] == "Thu Jan  1 00:00:00 1970\n"


def test_last_up_and_last_down_are_not_swapped(commands: RpcCommands) -> None:
    """C 5.6.3 sets last_down on a 2xx and last_up on a failure; fixed here."""
    commands.call("keepalive.add", ["10.0.0.1", "a"])
    table = commands._table
    slot = table.find("sip:10.0.0.1:5060")
    gen = table.read(slot).gen
    table.record_result(slot, gen, state=State.DOWN, failures=1, stopped=False, code=503,
                        wall=2000.0, rtt_ms=1, replied=True)  # fmt: skip
    (rec,) = commands.call("keepalive.list", [])
    assert rec["last down"] == ctime(2000.0) and rec["last up"] == ctime(0)


def test_list_paging(commands: RpcCommands) -> None:
    for i in range(5):
        commands.call("keepalive.add", [f"10.0.0.{i}", "o"])
    assert len(commands.call("keepalive.list", [1, 2])) == 2
    assert len(commands.call("keepalive.list", [3])) == 2
    assert len(commands.call("keepalive.list", [])) == 5


def test_pages_follow_adds_and_deletes_and_match_the_full_list(commands: RpcCommands) -> None:
    def uris(params: list[object]) -> list[str]:
        return [str(row["uri"]) for row in commands.call("keepalive.list", params)]  # type: ignore[index]

    for i in range(6):
        commands.call("keepalive.add", [f"10.0.1.{i}", "o"])
    full = uris([])
    assert uris([0, 3]) + uris([3, 3]) == full
    commands.call("keepalive.del", ["10.0.1.4", "o"])
    commands.call("keepalive.add", ["10.0.1.9", "o"])
    assert uris([0, 2]) + uris([2, 9]) == uris([]) and "sip:10.0.1.9" in uris([0, 9])
    assert "sip:10.0.1.4" not in uris([0, 10])


def test_jsonrpc_answers_ours_and_passes_the_rest(commands: RpcCommands) -> None:
    def ask(obj: object) -> dict | None:
        out = jsonrpc.answer(json.dumps(obj).encode(), commands)
        return None if out is None else json.loads(out.body)

    add = ask({"jsonrpc": "2.0", "method": "keepalive.add", "params": ["10.0.0.1", "o"], "id": 1})
    assert add == {"jsonrpc": "2.0", "id": 1, "result": "Ok. Destination added."}
    listed = ask({"jsonrpc": "2.0", "method": "keepalive.list", "id": 2})
    assert listed["result"][0]["uri"] == "sip:10.0.0.1"
    assert listed["result"][0]["last up"] == "Thu Jan  1 00:00:00 1970"
    dup = ask({"jsonrpc": "2.0", "method": "keepalive.add", "params": ["10.0.0.1", "o"], "id": 3})
    assert dup["error"] == {"code": 500, "message": "couldn't add data to list"}
    named = ask({"jsonrpc": "2.0", "method": "keepalive.get",
                 "params": {"uri": "10.0.0.1", "owner": "o"}, "id": 4})  # fmt: skip
    assert named["result"]["state"] == 0
    assert ask({"jsonrpc": "2.0", "method": "core.version", "id": 5}) is None
    bad = jsonrpc.answer(b"{not json", commands)
    assert bad is not None and bad.status == 400
    assert json.loads(bad.body)["error"]["code"] == jsonrpc.PARSE_ERROR


def test_json_list_text_is_exactly_what_json_dumps_gives(commands: RpcCommands) -> None:
    """keepalive.list over JSON-RPC is written by hand for speed; it must stay valid JSON
    with the same text as the generic path, unicode and quotes included."""
    commands.call("keepalive.add", ["sip:10.0.0.1", 'own"er\\ü'])
    commands.call("keepalive.add", ["sips:[2001:db8::1]:5071;transport=tls", "t"])
    rows = commands.list_rows([])
    expected = json.dumps([{k: str(v).rstrip("\n") if isinstance(v, str) else v
                            for k, v in list_struct(r).items()} for r in rows])  # fmt: skip
    assert jsonrpc.list_text(rows) == expected
    assert {row["owner"] for row in json.loads(jsonrpc.list_text(rows))} == {'own"er\\ü', "t"}
