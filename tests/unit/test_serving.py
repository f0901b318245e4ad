"""The sans-I/O serving logic of kamcmd (``ka_core.ops.kamcmd``) and kamcli's datagram
JSON-RPC (``ka_core.ops.jsonrpc_dgram``), without sockets or threads."""

from __future__ import annotations

import json
import threading

from ka_core.ops import binrpc, jsonrpc_dgram, kamcmd
from ka_core.ops.commands import METHODS, RpcCommands
from ka_core.ops.jsonrpc_dgram import RelayBook, answer_datagram
from ka_core.ops.kamcmd import Relay, Session, route
from ka_core.store.table import SharedTable, buffer_size

NOW = 100.0


def commands() -> RpcCommands:
    buf = bytearray(buffer_size(8, 16))
    SharedTable.format_buffer(buf, 8, 16)
    return RpcCommands(SharedTable(buf, threading.Lock()), lambda: 1.0e9)


def test_kamcmd_answers_keepalive_and_relays_the_rest() -> None:
    cmds = commands()
    reply = route(binrpc.encode_request(7, "keepalive.list", []), cmds, relaying=True)
    assert isinstance(reply, bytes) and binrpc.decode_reply(reply) == (False, [])
    other = binrpc.encode_request(8, "core.uptime", [])
    assert route(other, cmds, relaying=True) == Relay(other, 8)


def test_kamcmd_without_relay_lists_ours_and_says_not_found() -> None:
    cmds = commands()
    listing = route(binrpc.encode_request(1, "system.listMethods", []), cmds, relaying=False)
    assert isinstance(listing, bytes)
    assert binrpc.decode_reply(listing) == (False, list(METHODS))
    fault = route(binrpc.encode_request(2, "core.uptime", []), cmds, relaying=False)
    assert isinstance(fault, bytes)
    assert binrpc.decode_reply(fault) == (True, [500, "command core.uptime not found"])


def test_kamcmd_merges_our_methods_into_ctls_listing() -> None:
    relay = route(binrpc.encode_request(3, "system.listMethods", []), commands(), relaying=True)
    assert isinstance(relay, Relay) and relay.transform is not None
    merged = relay.transform(binrpc.encode_reply(3, ["core.uptime"]))
    assert binrpc.decode_reply(merged) == (False, ["core.uptime", *METHODS])


def test_kamcmd_session_keeps_request_order_and_goes_idle() -> None:
    session = Session(NOW)
    packets = binrpc.encode_request(1, "a", []) + binrpc.encode_request(2, "b", [])[:3]
    assert session.received(packets, NOW) == [binrpc.encode_request(1, "a", [])]
    first, second = kamcmd.Pending(), kamcmd.Pending(b"2")
    session.waiting.extend([first, second])
    assert session.collect() == b""  # the first reply is not there yet: nothing goes
    first.data = b"1"
    assert session.collect() == b"12"
    session.sent(1, NOW + 1)
    assert session.out == b"2" and not session.is_idle(NOW + 1 + kamcmd.IDLE_TIMEOUT_S)
    assert session.is_idle(NOW + 1.1 + kamcmd.IDLE_TIMEOUT_S)


def test_datagram_answers_keepalive_and_hands_back_the_rest() -> None:
    cmds = commands()
    body = json.dumps({"jsonrpc": "2.0", "method": "keepalive.list", "id": 4}).encode()
    assert json.loads(answer_datagram(body, cmds, relaying=False)) == {  # type: ignore[arg-type]
        "jsonrpc": "2.0", "id": 4, "result": [],
    }  # fmt: skip
    other = {"jsonrpc": "2.0", "method": "core.uptime", "id": 5}
    assert answer_datagram(json.dumps(other).encode(), cmds, relaying=True) == other
    alone = answer_datagram(json.dumps(other).encode(), cmds, relaying=False)
    assert isinstance(alone, bytes)
    assert json.loads(alone)["error"] == {"code": 500, "message": "Method Not Found"}


def test_datagram_bad_input_gets_an_error_with_no_id() -> None:
    answered = answer_datagram(b"{not json", commands(), relaying=True)
    assert isinstance(answered, bytes) and json.loads(answered)["error"]["code"] == -32700
    assert jsonrpc_dgram.id_of(b"[1]") is None
    big = jsonrpc_dgram.too_big(json.dumps({"id": 9, "result": "x" * 10}).encode())
    assert json.loads(big)["id"] == 9 and "reply too big" in json.loads(big)["error"]["message"]


def test_relay_book_puts_the_client_id_back_and_times_out() -> None:
    book = RelayBook()
    request: dict[str, object] = {"jsonrpc": "2.0", "method": "system.listMethods", "id": "c"}
    out = book.outgoing(request)
    assert out is not None
    relay_id, data = out
    assert json.loads(data)["id"] == relay_id
    book.wait(relay_id, request, "/tmp/client", NOW)
    assert book.reply(b"garbage") is None
    assert book.reply(json.dumps({"id": relay_id + 1, "result": []}).encode()) is None
    client, reply = book.reply(json.dumps({"id": relay_id, "result": ["x"]}).encode()) or ("", b"")
    assert client == "/tmp/client"
    assert json.loads(reply) == {"id": "c", "result": ["x", *METHODS]}
    assert book.reply(json.dumps({"id": relay_id, "result": []}).encode()) is None  # once only
    second = book.outgoing(request)
    assert second is not None
    book.wait(second[0], request, "/tmp/client", NOW)
    assert book.expired(NOW + jsonrpc_dgram.RELAY_TIMEOUT_S - 0.1) == []
    [(late_client, late)] = book.expired(NOW + jsonrpc_dgram.RELAY_TIMEOUT_S)
    assert late_client == "/tmp/client" and json.loads(late)["id"] == "c"


def test_relay_book_is_bounded() -> None:
    book = RelayBook()
    request: dict[str, object] = {"jsonrpc": "2.0", "method": "core.uptime", "id": 1}
    for _ in range(jsonrpc_dgram.MAX_PENDING):
        out = book.outgoing(request)
        assert out is not None
        book.wait(out[0], request, "/c", NOW)
    assert book.outgoing(request) is None
