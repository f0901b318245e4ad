"""keepalive.* RPC through the stock kamcmd and JSON-RPC over HTTP, against real Kamailio."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from ka_core.ops import binrpc
from tests.conftest import KamailioFactory, result_of
from tests.harness.fake_ctl import SlowCtl
from tests.harness.kamailio import VERSION, Kamailio
from tests.harness.rpc_client import KAMCMD, BinrpcClient
from tests.integration.test_keepalive import wait_state

pytestmark = pytest.mark.integration


def own(kam: Kamailio) -> str:
    return f"sip:{kam.ip}:{kam.port}"


def test_every_command_with_the_c_texts(kam: Kamailio) -> None:
    uri = own(kam)
    assert kam.kamcmd("keepalive.add", uri, "rpcowner") == "Ok. Destination added.\n"
    assert (
        kam.kamcmd("keepalive.add", uri, "rpcowner") == "error: 500 - couldn't add data to list\n"
    )
    assert kam.kamcmd("keepalive.get", uri, "rpcowner") == (
        f"{{\n\turi: {uri}\n\towner: rpcowner\n\tstate: 0\n}}\n"
    )
    assert (
        kam.kamcmd("keepalive.get", uri) == "error: 500 - Not enough parameters or wrong format\n"
    )
    assert kam.kamcmd("keepalive.add", "s:1", "2") == (
        "error: 500 - Not enough parameters or wrong format\n"
    )
    wait_state(kam, uri, 1, owner="rpcowner")
    listing = kam.kamcmd("keepalive.list", "x", "y", "z")
    lines = listing.splitlines()
    assert lines[0:3] == ["{", f"\turi: {uri}", "\towner: rpcowner"]
    assert lines[3].startswith("\tlast checked: ") and lines[4] == ""
    assert lines[5].startswith("\tlast up: ") and "1970" not in lines[5], "fixed: not swapped"
    assert lines[7] == "\tlast down: Thu Jan  1 00:00:00 1970"
    assert lines[9:] == ["\tstate: 1", "}"]
    info = kam.kamcmd("keepalive.info", uri, "rpcowner")
    assert "probing: active" in info and "last code: 200" in info
    assert kam.kamcmd("keepalive.del", uri, "rpcowner") == "Ok. Destination removed.\n"
    assert (
        kam.kamcmd("keepalive.get", uri, "rpcowner") == "error: 500 - couldn't get data from list\n"
    )
    assert kam.kamcmd("keepalive.del", uri, "rpcowner") == (
        "error: 500 - couldn't delete data from list\n"
    )
    assert kam.kamcmd("keepalive.flush") == "Ok. Destination list flushed.\n"
    assert kam.kamcmd("keepalive.list") == ""


def test_bad_arguments(kam: Kamailio) -> None:
    assert kam.kamcmd("keepalive.add", "sip:bad host!", "o").startswith(
        "error: 500 - invalid destination: "
    )
    assert kam.kamcmd("keepalive.add") == "error: 500 - Not enough parameters or wrong format\n"
    assert kam.kamcmd("keepalive.del", "1", "2") == (
        "error: 500 - Not enough parameters or wrong format\n"
    )
    assert kam.kamcmd("keepalive.add", "sip:ünïcødé.example", "ø").startswith(
        "error: 500 - invalid destination"
    )
    assert kam.kamcmd("keepalive.add", f"sip:{kam.ip}:5070", "ø") == "Ok. Destination added.\n"
    assert "owner: ø" in kam.kamcmd("keepalive.list")
    big = "sip:" + "a" * 4096
    assert kam.kamcmd("keepalive.add", big, "o").startswith("error: 500 - invalid destination")
    assert kam.kamcmd("keepalive.add", own(kam), "o" * 4096).startswith(
        "error: 500 - invalid destination"
    )
    assert kam.kamcmd("keepalive.nosuch") == "error: 500 - command keepalive.nosuch not found\n"


def test_other_commands_are_relayed_to_kamailio(kam: Kamailio) -> None:
    assert VERSION.match(kam.kamcmd("core.version"))
    assert "current:" in kam.kamcmd("tm.stats")
    assert "command no.such not found" in kam.kamcmd("no.such")
    methods = kam.kamcmd("system.listMethods")
    assert "keepalive.list" in methods and "core.version" in methods
    out = subprocess.run(
        [KAMCMD, "-s", f"unix:{kam.rpc_socket}"], input="keepalive.flush\ncore.uptime\n",
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert "Ok. Destination list flushed." in out.stdout and "uptime:" in out.stdout


def test_socket_is_owner_and_group_only(kam: Kamailio) -> None:
    mode = stat.S_IMODE(os.stat(kam.rpc_socket).st_mode)
    assert mode == 0o660


def test_rpc_changes_are_shared_state(kam: Kamailio, uas_factory) -> None:
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    assert kam.kamcmd("keepalive.add", uri, "o") == "Ok. Destination added.\n"
    kam.wait_log(rf"destination {uri} owner o: UNKNOWN -> UP", 3)
    assert result_of(kam, "ka_is_alive", uri) == "1"
    assert result_of(kam, "ka_is_alive", uri, transport="tcp") == "1"
    assert kam.kamcmd("keepalive.flush") == "Ok. Destination list flushed.\n"
    flushed = time.monotonic()
    assert result_of(kam, "ka_is_alive", uri) == "-1"
    time.sleep(2.5)  # two ping intervals
    late = [r for r in uas.received("OPTIONS") if r.mono > flushed + 0.1]
    assert late == [], "a flushed destination is not pinged any more"


def _raw(kam: Kamailio) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(kam.rpc_socket))
    return s


def test_pipelined_requests_and_hostile_clients(kam: Kamailio) -> None:
    with BinrpcClient(kam.rpc_socket, timeout=5) as client:
        client.sock.sendall(b"".join(
            binrpc.encode_request(i, "keepalive.add", [f"sip:10.1.{i // 250}.{i % 250}", "p"])
            for i in range(200)
        ))  # fmt: skip
        replies = [client.receive()[:2] for _ in range(200)]
    assert all(r == (False, ["Ok. Destination added."]) for r in replies)
    with _raw(kam) as garbage:
        garbage.sendall(os.urandom(64) + b"\xff" * 64)
        garbage.settimeout(3)
        with contextlib.suppress(OSError):
            garbage.recv(100)
    half = _raw(kam)
    half.sendall(binrpc.encode_request(1, "keepalive.list", [])[:5])
    half.close()
    slow = _raw(kam)
    slow.sendall(binrpc.encode_request(1, "keepalive.list", [])[:3])  # stays open, incomplete
    try:
        assert kam.kamcmd("keepalive.get", "sip:10.1.0.7", "p").startswith("{")
        assert kam.kamcmd("keepalive.list", "0", "3").count("owner: p") == 3
    finally:
        slow.close()


def test_kamcmd_never_half_prints_a_large_list(kamailio_factory: KamailioFactory) -> None:
    kam = kamailio_factory(defines={"KA_PING_INTERVAL": 60})
    with BinrpcClient(kam.rpc_socket, timeout=5) as client:
        client.sock.sendall(b"".join(
            binrpc.encode_request(i, "keepalive.add", [f"sip:10.2.{i // 250}.{i % 250}", "bulk"])
            for i in range(1000)
        ))  # fmt: skip
        for _ in range(1000):
            client.receive()
    out = kam.kamcmd("keepalive.list")
    assert out.startswith("error: 500 - reply too big for kamcmd"), out[:300]
    assert "keepalive.list <offset> <count>" in out and "JSON-RPC" in out
    assert kam.kamcmd("keepalive.list", "0", "100").count("owner: bulk") == 100


def test_a_full_string_pool_is_named_on_rpc(kamailio_factory: KamailioFactory) -> None:
    """``KA_STRING_CHUNKS`` sizes the pool for long strings; an add it cannot hold fails with
    the error's name and the define, and a short destination is still added."""
    kam = kamailio_factory(defines={"KA_STRING_CHUNKS": 2, "KA_PING_INTERVAL": 60})
    long_uri = "sip:" + ".".join(["a" * 60] * 4)  # 247 + 252 bytes of URI and key: 3 chunks
    assert kam.kamcmd("keepalive.add", long_uri, "rpc").strip() == (
        "error: 500 - couldn't add data to list: TableFull: string pool full (KA_STRING_CHUNKS=2)"
    )
    assert kam.kamcmd("keepalive.add", "sip:10.3.0.1", "rpc").startswith("Ok.")


def jsonrpc_call(kam: Kamailio, method: str, params: object = None) -> dict:
    body = {"jsonrpc": "2.0", "method": method, "id": 7}
    if params is not None:
        body["params"] = params
    req = urllib.request.Request(
        f"http://{kam.ip}:{kam.port}/RPC", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_jsonrpc_over_http(kam: Kamailio) -> None:
    uri = own(kam)
    assert jsonrpc_call(kam, "keepalive.add", [uri, "http"])["result"] == "Ok. Destination added."
    dup = jsonrpc_call(kam, "keepalive.add", [uri, "http"])
    assert dup["error"] == {"code": 500, "message": "couldn't add data to list"}
    kam.wait_log(rf"destination {uri} owner http: UNKNOWN -> UP", 3)
    listed = jsonrpc_call(kam, "keepalive.list")["result"]
    assert listed[0]["uri"] == uri and listed[0]["state"] == 1
    assert jsonrpc_call(kam, "keepalive.get", {"uri": uri, "owner": "http"})["result"]["state"] == 1
    assert VERSION.match(jsonrpc_call(kam, "core.version")["result"])
    assert jsonrpc_call(kam, "keepalive.get", [uri])["error"]["message"] == (
        "Not enough parameters or wrong format"
    )
    curl = subprocess.run(
        ["curl", "-s", "-d", '{"jsonrpc":"2.0","method":"keepalive.list","id":1}',
         f"http://{kam.ip}:{kam.port}/RPC"], capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert json.loads(curl.stdout)["result"][0]["owner"] == "http"
    info = jsonrpc_call(kam, "keepalive.info", [uri, "http"])["result"]
    assert info[0]["probing"] == "active" and info[0]["last code"] == 200
    assert not info[0]["last up"].endswith("\n"), "JSON texts lose ctime's newline"
    assert jsonrpc_call(kam, "keepalive.del", [uri, "http"])["result"] == "Ok. Destination removed."
    assert jsonrpc_call(kam, "keepalive.del", [uri, "http"])["error"] == {
        "code": 500, "message": "couldn't delete data from list",
    }  # fmt: skip
    assert kam.kamcmd("keepalive.list") == ""
    jsonrpc_call(kam, "keepalive.add", [uri, "a"])
    jsonrpc_call(kam, "keepalive.add", [uri, "b"])
    flushed = jsonrpc_call(kam, "keepalive.flush")
    assert flushed["result"] == "Ok. Destination list flushed."
    assert jsonrpc_call(kam, "keepalive.list")["result"] == []
    assert result_of(kam, "ka_is_alive", uri) == "-1"


DEFAULT_SOCKET = "/run/kamailio/kamailio_ctl"


@pytest.fixture
def default_socket_lock() -> Iterator[None]:
    """kamcmd's default socket path is one per machine: two test runs at once take turns.

    Requested before ``kamailio_factory``, so it is released after that Kamailio stopped.
    """
    os.makedirs("/run/kamailio", exist_ok=True)
    with open("/run/kamailio/.ka-kemi-tests.lock", "w") as lock:
        deadline = time.monotonic() + 120
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("another test run held /run/kamailio/kamailio_ctl for 120 s")
                time.sleep(0.2)
        yield
        fcntl.flock(lock, fcntl.LOCK_UN)


def test_plain_kamcmd_with_the_example_socket_paths(
    default_socket_lock: None, kamailio_factory: KamailioFactory
) -> None:
    """The example config: ka-kemi owns kamcmd's default socket and relays the rest."""
    if os.path.exists(DEFAULT_SOCKET):
        with socket.socket(socket.AF_UNIX) as probe:
            if probe.connect_ex(DEFAULT_SOCKET) == 0:
                pytest.skip("another Kamailio serves /run/kamailio/kamailio_ctl")
    os.makedirs("/run/kamailio", exist_ok=True)
    kam = kamailio_factory(
        defines={
            "KA_RPC_SOCKET": f'"{DEFAULT_SOCKET}"',
            "KA_CTL_SOCKET": '"/run/kamailio/kamailio_ctl.core"',
            "KA_CTL_FORWARD": '"/run/kamailio/kamailio_ctl.core"',
        }
    )
    plain = subprocess.run([KAMCMD, "keepalive.add", own(kam), "plain"], capture_output=True,
                           text=True, timeout=10)  # fmt: skip
    assert plain.stdout == "Ok. Destination added.\n"
    listing = subprocess.run([KAMCMD, "keepalive.list"], capture_output=True, text=True, timeout=10)
    assert "owner: plain" in listing.stdout
    version = subprocess.run([KAMCMD, "core.version"], capture_output=True, text=True, timeout=10)
    assert VERSION.match(version.stdout)
    interactive = subprocess.run([KAMCMD], input="keepalive.list\ncore.uptime\n",
                                 capture_output=True, text=True, timeout=10)  # fmt: skip
    assert "owner: plain" in interactive.stdout and "uptime:" in interactive.stdout


def test_jsonrpc_add_is_pinged_as_soon_as_a_script_add(kam: Kamailio, uas_factory) -> None:
    """The JSON-RPC add runs in a SIP worker; it wakes the pinger like every other add."""
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    time.sleep(1.2)  # the pinger is asleep (no destination: up to 1 s)
    before = time.monotonic()
    assert jsonrpc_call(kam, "keepalive.add", [uri, "h"])["result"] == "Ok. Destination added."
    after = time.monotonic()
    first = uas.wait_requests(1, timeout=3)[0].mono
    assert first - before >= 0.35 and first - after <= 0.5, (first - before, first - after)


def test_a_slow_relayed_command_does_not_delay_pings(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path
) -> None:
    """100 destinations at 1 s while a relayed kamcmd command takes 3 s, twice: no ping
    leaves more than 100 ms off its interval (the relay has its own thread; a core thread
    waiting for the command would put pings 3 s off; the bound leaves room for one late tick
    on a loaded 2-core machine: 59 ms was seen once in the fresh Debian 13 root)."""
    slow = SlowCtl(tmp_path / "slow.sock", delay=3.0)
    uas = uas_factory()
    uris = [f"sip:d{i}@{uas.host}:{uas.port}" for i in range(100)]
    kam = kamailio_factory(
        defines={"KA_CTL_FORWARD": f'"{tmp_path / "slow.sock"}"',
                 "KA_DESTINATION": '"' + " ".join(uris) + '"'},
    )  # fmt: skip
    try:
        uas.wait_requests(300, timeout=10)  # settled: three rounds
        start = time.monotonic()
        for _ in range(2):
            assert kam.kamcmd("core.version", timeout=10) == "slow core.version\n"
        end = time.monotonic()
        assert end - start >= 6 and slow.served == 2
    finally:
        slow.close()
    arrivals: dict[str, list[float]] = {}
    for req in uas.received("OPTIONS"):
        if start - 1 <= req.mono <= end:
            arrivals.setdefault(req.uri, []).append(req.mono)
    errors = [
        abs((b - a) - 1.0) for times in arrivals.values() for a, b in itertools.pairwise(times)
    ]
    assert len(arrivals) == 100 and len(errors) >= 500
    assert max(errors) <= 0.1, sorted(errors)[-5:]
