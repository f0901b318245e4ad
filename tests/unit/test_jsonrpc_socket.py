"""The jsonrpcs-compatible datagram socket for kamcli (``kemi.jsonrpc_socket``) on a FakeKsr,
with a stand-in for Kamailio's jsonrpcs: local answers equal the HTTP ones, relayed requests
come back with the client's id, nothing slow holds up anything else, bad input gets an error."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ka_core.errors import InvalidArgument
from ka_core.ops import jsonrpc, jsonrpc_dgram
from ka_core.ops.commands import METHODS
from kemi.jsonrpc_socket import JsonrpcSocket
from tests.unit.conftest import Glue, GlueFactory


class FakeJsonrpcs:
    """Kamailio's jsonrpcs datagram transport, as 5.6.3 does it: reads on its socket and
    answers from another, unbound one to the sender's address.  ``slow.*`` methods are
    answered after ``delay`` s, ``silent.*`` never."""

    def __init__(self, path: Path, delay: float = 1.0) -> None:
        self.delay = delay
        self.requests: list[dict[str, object]] = []
        self.rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.rx.bind(str(path))
        self.rx.settimeout(0.05)
        self._closed = threading.Event()
        self.tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                data, sender = self.rx.recvfrom(65536)
            except TimeoutError:
                continue
            request = json.loads(data)
            self.requests.append(request)
            method = request["method"]
            if method.startswith("silent."):
                continue
            value: object = ["core.version", "core.uptime"]
            if method != "system.listMethods":
                value = f"answer to {method} {request.get('params', [])}"
            reply = json.dumps({"jsonrpc": "2.0", "result": value, "id": request["id"]}).encode()
            if method.startswith("slow."):
                threading.Timer(self.delay, self._reply, (reply, sender)).start()
            else:
                self._reply(reply, sender)

    def _reply(self, reply: bytes, sender: str) -> None:
        with contextlib.suppress(OSError):
            self.tx.sendto(reply, sender)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.rx.close()
        self.tx.close()


class Loop:
    """The pinger's select loop around a server, on a thread of its own."""

    def __init__(self, server: JsonrpcSocket) -> None:
        self.server = server
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            readers, writers = self.server.fds()
            ready, writable, _ = select.select(readers, writers, [], 0.05)
            self.server.handle(ready, writable)
            self.ticks += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        assert not self._thread.is_alive()


class Client:
    """kamcli's way: bind a reply socket, send the request to the server path, recv."""

    def __init__(self, directory: Path, server: Path, name: str = "client") -> None:
        self.server = str(server)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(directory / name))
        self.sock.settimeout(5)

    def send(self, payload: bytes) -> None:
        self.sock.sendto(payload, self.server)

    def receive(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.sock.recv(1 << 20))
        return data

    def call(self, method: str, *params: object, req_id: object = 7) -> dict[str, object]:
        self.send(request(method, *params, req_id=req_id))
        return self.receive()

    def close(self) -> None:
        self.sock.close()


def request(method: str, *params: object, req_id: object = 7) -> bytes:
    body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": req_id}
    return json.dumps(body).encode()


Setup = Callable[..., tuple[JsonrpcSocket, Client]]


@pytest.fixture
def setup(glue: Glue, tmp_path: Path) -> Iterator[Setup]:
    """``setup(forward=True)``: a served socket (relaying to a FakeJsonrpcs, or to nothing),
    its loop and a client; all closed at teardown."""
    cleanups: list[Callable[[], None]] = []

    def make(forward: bool = True, target: str = "") -> tuple[JsonrpcSocket, Client]:
        if forward and not target:
            fake = FakeJsonrpcs(tmp_path / "jsonrpcs.sock")
            cleanups.append(fake.close)
            target = str(tmp_path / "jsonrpcs.sock")
        path = tmp_path / "ka.sock"
        server = JsonrpcSocket(str(path), glue.rt.commands, target, time.monotonic)
        cleanups.append(server.close)
        loop = Loop(server)
        cleanups.append(loop.stop)
        client = Client(tmp_path, path)
        cleanups.append(client.close)
        return server, client

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


def http_body(glue: Glue, method: str, *params: object) -> dict[str, object]:
    answered = jsonrpc.answer(request(method, *params), glue.rt.commands)
    assert answered is not None
    data: dict[str, object] = json.loads(answered.body)
    return data


def test_keepalive_answers_are_the_http_ones(glue: Glue, setup: Setup) -> None:
    _, client = setup()
    uri = "sip:10.0.0.1"
    assert client.call("keepalive.add", uri, "k") == {
        "jsonrpc": "2.0", "id": 7, "result": "Ok. Destination added.",
    }  # fmt: skip
    assert client.call("keepalive.add", uri, "k")["error"] == {
        "code": 500, "message": "couldn't add data to list",
    }  # fmt: skip
    for method, params in [
        ("keepalive.list", ()), ("keepalive.get", (uri, "k")), ("keepalive.info", (uri, "k")),
        ("keepalive.info", ()), ("keepalive.interval", ()), ("keepalive.get", (uri,)),
    ]:  # fmt: skip
        assert client.call(method, *params) == http_body(glue, method, *params), method
    assert client.call("keepalive.get", uri, "k", req_id="abc")["id"] == "abc"
    assert client.call("keepalive.del", uri, "k")["result"] == "Ok. Destination removed."
    assert client.call("keepalive.list")["result"] == []


def test_other_methods_are_relayed_with_the_clients_id(setup: Setup) -> None:
    _, client = setup()
    assert client.call("core.version", req_id=4242) == {
        "jsonrpc": "2.0", "result": "answer to core.version []", "id": 4242,
    }  # fmt: skip
    assert client.call("pv.shvSet", "x", 1, req_id="s-1")["id"] == "s-1"
    assert client.call("keepalive.nosuch")["result"] == "answer to keepalive.nosuch []"
    methods = client.call("system.listMethods")["result"]
    assert methods == ["core.version", "core.uptime", *METHODS]


def test_a_slow_relayed_command_holds_up_nothing_else(tmp_path: Path, setup: Setup) -> None:
    _, client = setup()
    other = Client(tmp_path, client.server, "other")
    try:
        started = time.monotonic()
        client.send(request("slow.dump"))
        time.sleep(0.05)
        assert other.call("keepalive.add", "sip:10.0.0.2", "o")["result"] == (
            "Ok. Destination added."
        )
        assert other.call("core.uptime")["result"] == "answer to core.uptime []"
        assert time.monotonic() - started < 0.5, "answered while the slow one is out"
        assert client.receive()["result"] == "answer to slow.dump []"
        assert time.monotonic() - started >= 0.9
    finally:
        other.close()


def test_an_unanswered_relay_is_a_timeout_error_and_its_late_reply_is_dropped(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonrpc_dgram, "RELAY_TIMEOUT_S", 0.3)
    _, client = setup()
    started = time.monotonic()
    reply = client.call("silent.cmd", req_id=9)
    assert 0.25 < time.monotonic() - started < 2
    assert reply == {
        "jsonrpc": "2.0", "id": 9,
        "error": {"code": 500, "message": "no reply from kamailio jsonrpcs within 0.3 s"},
    }  # fmt: skip
    client.send(request("slow.late"))  # answered after 1 s, long after its timeout
    assert "no reply" in str(client.receive()["error"])
    time.sleep(1.0)
    assert client.call("core.version")["result"] == "answer to core.version []", (
        "the late reply was not taken for this one"
    )


def test_relay_target_down_is_a_clear_error_at_once(tmp_path: Path, setup: Setup) -> None:
    _, client = setup(target=str(tmp_path / "nothing.sock"))
    started = time.monotonic()
    reply = client.call("core.version")
    assert time.monotonic() - started < 0.5
    error = reply["error"]
    assert isinstance(error, dict) and error["code"] == 500
    assert str(error["message"]).startswith("kamailio jsonrpcs not reachable: ")
    assert client.call("keepalive.list")["result"] == [], "still serving"


def test_without_relay_other_methods_are_not_found(setup: Setup) -> None:
    _, client = setup(forward=False)
    assert client.call("core.version") == {
        "jsonrpc": "2.0", "id": 7, "error": {"code": 500, "message": "Method Not Found"},
    }  # fmt: skip
    assert client.call("system.listMethods")["result"] == list(METHODS)


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (b"not json", -32700, "Parse error"),
        (b"\xff\xfe{", -32700, "body is not UTF-8"),
        (b"[" + request("keepalive.list") + b"]", -32600, "batch requests are not supported"),
        (b'"a string"', -32600, "the request must be a JSON object"),
        (b'{"jsonrpc": "2.0", "id": 1}', -32600, "method must be a string"),
        (b"[" * 100_000, -32600, "request over 8192 bytes"),
        (b" " * 60_000 + request("keepalive.list"), -32600, "request over 8192 bytes"),
    ],
)
def test_bad_datagrams_get_an_error_and_the_server_goes_on(
    setup: Setup, payload: bytes, code: int, message: str
) -> None:
    _, client = setup()
    client.send(payload)
    assert client.receive()["error"] == {"code": code, "message": message}
    assert client.call("keepalive.list")["result"] == []


def test_unbound_senders_are_dropped(setup: Setup) -> None:
    _, client = setup()
    assert client.call("keepalive.add", "sip:10.0.0.3", "u")["result"] == "Ok. Destination added."
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as anonymous:
        for _ in range(3):
            anonymous.sendto(request("keepalive.flush"), client.server)
            anonymous.sendto(request("core.version"), client.server)
    listed = client.call("keepalive.list")["result"]
    assert isinstance(listed, list) and len(listed) == 1, "never run: no one to answer"


def test_a_client_gone_before_its_reply_harms_nothing(tmp_path: Path, setup: Setup) -> None:
    _, client = setup()
    gone = Client(tmp_path, client.server, "gone")
    gone.send(request("slow.x"))
    gone.send(request("keepalive.list"))
    gone.close()
    os.unlink(tmp_path / "gone")
    time.sleep(1.2)
    assert client.call("core.version")["result"] == "answer to core.version []"


def test_replies_over_kamclis_buffer_are_an_error_that_says_how_to_page(
    glue: Glue, setup: Setup
) -> None:
    _, client = setup()
    for i in range(600):
        glue.rt.commands.call("keepalive.add", [f"sip:10.1.{i // 200}.{i % 200 + 1}", "p"])
    error = client.call("keepalive.list")["error"]
    assert isinstance(error, dict) and error["code"] == 500
    assert "reply too big for a datagram" in str(error["message"])
    assert "i:0 i:300" in str(error["message"])
    page = client.call("keepalive.list", 0, 300)["result"]
    assert isinstance(page, list) and len(page) == 300


def test_pending_relays_are_bounded(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonrpc_dgram, "MAX_PENDING", 2)
    _, client = setup()
    for i in range(3):
        client.send(request("slow.x", req_id=i))
    assert client.receive() == {
        "jsonrpc": "2.0", "id": 2,
        "error": {"code": 500, "message": "kamailio jsonrpcs relay busy, try again"},
    }  # fmt: skip
    assert sorted(client.receive()["id"] for _ in range(2)) == [0, 1]  # type: ignore[type-var]


def test_sockets_modes_stale_files_and_close(glue: Glue, tmp_path: Path) -> None:
    path = tmp_path / "ka.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stale:
        stale.bind(str(path))
    old = os.umask(0)
    try:
        server = JsonrpcSocket(str(path), glue.rt.commands, str(tmp_path / "t"), time.monotonic)
    finally:
        os.umask(old)
    reply_path = tmp_path / "ka.sock.reply"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert stat.S_IMODE(os.stat(reply_path).st_mode) == 0o600
    assert len(server.fds()[0]) == 2 and server.fds()[1] == []
    server.close()
    assert not path.exists() and not reply_path.exists()
    regular = tmp_path / "file"
    regular.write_text("not a socket")
    with pytest.raises(OSError):
        JsonrpcSocket(str(regular), glue.rt.commands, "", time.monotonic)
    assert regular.read_text() == "not a socket"


def test_config_defines(glue_factory: GlueFactory) -> None:
    config = glue_factory(
        KA_JSONRPC_SOCKET='"unix:/run/x/rpc.sock"', KA_JSONRPC_FORWARD='"/run/x/core.sock"'
    ).rt.config
    assert (config.jsonrpc_socket, config.jsonrpc_forward) == (
        "/run/x/rpc.sock",
        "/run/x/core.sock",
    )
    default = glue_factory().rt.config
    assert (default.jsonrpc_socket, default.jsonrpc_forward) == ("", "")
    with pytest.raises(InvalidArgument, match="jsonrpc_socket"):
        glue_factory(KA_JSONRPC_SOCKET='"relative.sock"')
