"""The RPC glue on a FakeKsr: JSON-RPC over HTTP behind the access check, and the BINRPC
server with its ctl relay (a slow relayed command must not hold up anything else)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ka_core.ops import binrpc
from ka_core.ops.access import HttpRequest
from kemi import handler, http_rpc
from kemi.rpc_server import RpcServer
from tests.harness.fake_ctl import SlowCtl
from tests.unit.conftest import Glue, GlueFactory


def rpc(method: str, *params: object) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
    ).encode()


def serve(glue: Glue, body: bytes | None, source: str = "127.0.0.1", url: str = "/RPC",
          auth: str | None = None) -> tuple[int, dict[str, object]] | None:  # fmt: skip
    """One HTTP request through the xhttp callback: (status, JSON body), or None if it was
    handed to jsonrpcs."""
    glue.ksr.request = HttpRequest("POST", url, source, auth)
    glue.ksr.body = body
    before = len(glue.ksr.http_replies)
    assert handler.KeepaliveHandler().ksr_xhttp_event(None, "xhttp") == 1
    if len(glue.ksr.http_replies) == before:
        return None
    code, _, ctype, text = glue.ksr.http_replies[-1]
    assert ctype == "application/json"
    return code, json.loads(text)


def test_http_allowed_refused_and_passed_on(glue: Glue) -> None:
    assert serve(glue, rpc("keepalive.add", "sip:10.0.0.1", "h")) == (
        200, {"jsonrpc": "2.0", "id": 1, "result": "Ok. Destination added."},
    )  # fmt: skip
    assert serve(glue, rpc("keepalive.flush"), source="10.0.0.9")[0] == 403  # type: ignore[index]
    assert serve(glue, rpc("keepalive.flush"), url="/x")[0] == 404  # type: ignore[index]
    assert glue.rt.table.count == 1, "refused requests change nothing"
    assert glue.ksr.dispatched == 0
    assert serve(glue, rpc("core.version")) is None and glue.ksr.dispatched == 1
    assert serve(glue, rpc("core.version"), source="10.0.0.9")[0] == 403  # type: ignore[index]
    assert glue.ksr.dispatched == 1, "jsonrpcs never sees a refused request"
    warns = glue.ksr.texts("warn")
    assert "JSON-RPC over HTTP from 10.0.0.9: 403, source not in the allow-list" in warns[0]


def test_http_bad_bodies(glue: Glue) -> None:
    error = {"code": -32700, "message": "body is not UTF-8"}
    assert serve(glue, None) == (400, {"jsonrpc": "2.0", "id": None, "error": error})
    assert serve(glue, b"[]")[0] == 400  # type: ignore[index]
    assert serve(glue, b"{")[0] == 400  # type: ignore[index]
    assert glue.ksr.dispatched == 0
    assert not glue.ksr.texts("err"), "no traceback"


def test_http_token(glue_factory: GlueFactory) -> None:
    glue = glue_factory(KA_RPC_HTTP_TOKEN='"0123456789abcdef0"')
    assert serve(glue, rpc("keepalive.list"))[0] == 403  # type: ignore[index]
    ok = serve(glue, rpc("keepalive.list"), auth="Bearer 0123456789abcdef0")
    assert ok == (200, {"jsonrpc": "2.0", "id": 1, "result": []})


def test_http_refusal_log_is_rate_limited(glue: Glue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_rpc, "_log_limit", http_rpc.LogLimiter(burst=2, window_s=60))
    for _ in range(5):
        serve(glue, rpc("keepalive.list"), source="192.0.2.1")
    assert len(glue.ksr.texts("warn")) == 2
    glue.clock.now += 60
    serve(glue, rpc("keepalive.list"), source="192.0.2.1")
    assert glue.ksr.texts("warn")[-1].endswith("(3 more not logged)")


def test_http_internal_error_is_a_500_and_a_log_line(
    glue: Glue, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(body: bytes, commands: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(http_rpc.jsonrpc, "answer", broken)
    glue.ksr.request = HttpRequest("POST", "/RPC", "127.0.0.1", None)
    glue.ksr.body = b"{}"
    handler.KeepaliveHandler().ksr_xhttp_event(None, "xhttp")
    assert glue.ksr.http_replies[-1][:2] == (500, "Internal Server Error")
    assert "ZeroDivisionError: bug" in glue.ksr.texts("err")[-1]


# ---- BINRPC server and relay -------------------------------------------------------------


@pytest.fixture
def server(glue: Glue, tmp_path: Path) -> Iterator[tuple[RpcServer, Path]]:
    ctl = SlowCtl(tmp_path / "ctl", delay=1.0)
    path = tmp_path / "ka"
    srv = RpcServer(str(path), glue.rt.commands, str(tmp_path / "ctl"), time.monotonic)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            readers, writers = srv.fds()
            ready, writable, _ = select.select(readers, writers, [], 0.05)
            srv.handle(ready, writable)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield srv, path
    stop.set()
    thread.join(2)
    srv.close()
    ctl.sock.close()


def call(
    path: Path, *requests: tuple[str, list[binrpc.Value]]
) -> list[tuple[bool, list[binrpc.Value]]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"".join(binrpc.encode_request(i, m, p) for i, (m, p) in enumerate(requests)))
        reader, out = binrpc.PacketReader(), []
        while len(out) < len(requests):
            while (packet := reader.next_packet()) is not None:
                out.append(binrpc.decode_reply(packet))
            if len(out) < len(requests):
                reader.feed(s.recv(65536))
        return out


def test_a_slow_relayed_command_holds_up_nothing_else(server) -> None:  # type: ignore[no-untyped-def]
    _, path = server
    done: list[float] = []
    slow = threading.Thread(target=lambda: done.append(len(call(path, ("ul.dump", [])))))
    started = time.monotonic()
    slow.start()
    time.sleep(0.1)
    assert call(path, ("keepalive.add", ["sip:10.0.0.1", "o"])) == [
        (False, ["Ok. Destination added."])
    ]
    assert time.monotonic() - started < 0.5, "answered while the relay waits on ctl"
    slow.join(5)
    assert done == [1]


def test_replies_keep_the_request_order_and_list_methods_merges(server) -> None:  # type: ignore[no-untyped-def]
    _, path = server
    replies = call(path, ("core.version", []), ("keepalive.list", []), ("system.listMethods", []))
    assert replies[0] == (False, ["slow core.version"])
    assert replies[1] == (False, [])
    assert replies[2][1][:3] == ["core.version", "core.uptime", "keepalive.list"]


def test_relay_to_a_missing_ctl_is_a_clear_fault(glue: Glue, tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing")
    srv = RpcServer(str(tmp_path / "ka"), glue.rt.commands, missing, time.monotonic)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(tmp_path / "ka"))
        s.sendall(binrpc.encode_request(5, "core.version", []))
        s.setblocking(False)
        deadline = time.monotonic() + 5
        data = b""
        while time.monotonic() < deadline and not data:
            readers, writers = srv.fds()
            ready, writable, _ = select.select(readers, writers, [], 0.05)
            srv.handle(ready, writable)
            with contextlib.suppress(BlockingIOError):
                data = s.recv(65536)
    srv.close()
    is_fault, values = binrpc.decode_reply(data)
    assert is_fault and "kamailio ctl not reachable" in str(values)


def test_every_add_path_wakes_the_pinger(glue: Glue) -> None:
    """JSON-RPC, kamcmd (RpcCommands), script and API adds: the pinger adopts the new
    destination at once, so its first ping is 0.35-0.45 s after the add."""
    from kemi import api, functions

    def woken() -> bool:
        try:
            return bool(os.read(glue.rt.wake_read_fd, 4096))
        except BlockingIOError:
            return False

    assert not woken()
    serve(glue, rpc("keepalive.add", "sip:10.0.0.1", "h"))
    assert woken()
    glue.rt.commands.call("keepalive.add", ["sip:10.0.0.2", "k"])
    assert woken()
    assert functions.ka_add_destination("sip:10.0.0.3", "s") == 1
    assert woken()
    assert api.add_destination("sip:10.0.0.4", "a") == 0
    assert woken()
    assert serve(glue, rpc("keepalive.add", "sip:10.0.0.1", "h"))[1]["error"]  # type: ignore[index]
    assert not woken(), "a refused add wakes nothing"


def test_a_listing_too_big_for_an_http_reply_is_a_clear_413(
    glue: Glue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ka_core.ops import http_serving

    for i in range(20):
        glue.rt.add(f"sip:10.0.3.{i + 1}", "big")
    monkeypatch.setattr(http_serving, "MAX_REPLY_BYTES", 2000)
    status, body = serve(glue, rpc("keepalive.list"))  # type: ignore[misc]
    assert status == 413 and "ask for pages" in body["error"]["message"]
    status, body = serve(glue, rpc("keepalive.list", 0, 3))  # type: ignore[misc]
    assert status == 200 and len(body["result"]) == 3
