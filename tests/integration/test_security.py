"""The management interface faces the network closed by default (docs/security.md).

An "outside host" is a network namespace whose address is not loopback; Kamailio listens on
the root side of its veth.  A refused request must change nothing: the table stays the same
and jsonrpcs never runs (a ``cfg.set_now_int`` it would have applied stays unapplied).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory
from tests.harness.kamailio import Kamailio, free_port
from tests.harness.netns import Host

pytestmark = pytest.mark.integration
TOKEN = "ka-kemi-test-token-0123456789"
SET_CFG = {"jsonrpc": "2.0", "method": "cfg.set_now_int",
           "params": ["core", "max_while_loops", 4321], "id": 1}  # fmt: skip


def rpc(method: str, *params: object, req_id: int = 1) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": req_id})


def curl(host: Host | None, url: str, body: str | bytes = b"", *extra: str) -> tuple[int, str]:
    """POST ``body`` with curl, inside ``host`` (None: the root namespace); (status, body).
    Status 0: no HTTP answer at all (connection refused, reset or TLS failure)."""
    argv = ["curl", "-s", "-k", "-m", "8", "--data-binary", "@-", "-w", "\n%{http_code}",
            "-H", "Content-Type: application/json", *extra, url]  # fmt: skip
    data = body.encode() if isinstance(body, str) else body
    if host is None:
        out = subprocess.run(argv, input=data, capture_output=True, timeout=15).stdout
    else:
        proc = host.run(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = proc.communicate(data, timeout=15)
    text, _, code = out.decode(errors="replace").rpartition("\n")
    return int(code or 0), text


def cfg_value(kam: Kamailio) -> str:
    """What ``SET_CFG`` changes, if jsonrpcs ever runs it."""
    return kam.ctl("cfg.get", "core", "max_while_loops").strip()


def state_snapshot(kam: Kamailio) -> tuple[list[str], str]:
    """The destinations (uri and owner lines: states move on their own as pings complete)
    and the cfg value jsonrpcs would have changed."""
    listing = kam.kamcmd("keepalive.list").splitlines()
    return [ln for ln in listing if ln.startswith(("\turi:", "\towner:"))], cfg_value(kam)


@pytest.fixture
def outside(netns_host_factory) -> Host:
    return netns_host_factory()


def on_gateway(factory: KamailioFactory, host: Host, tls: bool = False, **defines: object):
    gw = host.gateway
    port = free_port(gw)
    listen = {"LISTEN_UDP": f"udp:{gw}:{port}", "LISTEN_TCP": f"tcp:{gw}:{port}"}
    return factory(defines={**listen, **defines}, ip=gw, port=port, tls=tls)


def refusal_lines(kam: Kamailio, source: str) -> list[str]:
    return [ln for ln in kam.log().splitlines() if f"JSON-RPC over HTTP from {source}:" in ln]


def test_outside_host_is_refused_and_nothing_changes(
    kamailio_factory: KamailioFactory, outside: Host
) -> None:
    kam = on_gateway(kamailio_factory, outside)
    assert "Ok" in kam.kamcmd("keepalive.add", "sip:192.0.2.1", "keep")
    before = state_snapshot(kam)
    base = f"http://{kam.ip}:{kam.port}"
    for path in ("/RPC", "/anything/at/all", "/"):
        for body in (rpc("keepalive.flush"), rpc("keepalive.add", "sip:192.0.2.9", "x"),
                     rpc("core.version"), json.dumps(SET_CFG)):  # fmt: skip
            code, text = curl(outside, base + path, body)
            assert code == 403, (path, body, text)
            assert "kamailio " not in text and "Ok" not in text
    assert state_snapshot(kam) == before, "a refused request changed the table or ran jsonrpcs"
    lines = refusal_lines(kam, outside.address)
    assert lines and "403, source not in the allow-list" in lines[0]
    # 12 refusals above; a scan of 60 more adds at most 10 lines per TCP worker and minute
    for _ in range(60):
        assert curl(outside, base + "/RPC", rpc("core.version"))[0] == 403
    assert len(refusal_lines(kam, outside.address)) <= 2 * 10
    assert state_snapshot(kam) == before


def test_allow_list_and_token_open_it_to_that_host(
    kamailio_factory: KamailioFactory, outside: Host
) -> None:
    kam = on_gateway(
        kamailio_factory, outside,
        KA_RPC_HTTP_ALLOW=f'"127.0.0.1/32 {outside.address}/32"',
        KA_RPC_HTTP_TOKEN=f'"{TOKEN}"',
    )  # fmt: skip
    url = f"http://{kam.ip}:{kam.port}/RPC"
    bearer = ("-H", f"Authorization: Bearer {TOKEN}")
    assert curl(outside, url, rpc("keepalive.add", "sip:192.0.2.1", "o"))[0] == 403, "no token"
    wrong = ("-H", f"Authorization: Bearer {TOKEN}x")
    assert curl(outside, url, rpc("keepalive.add", "sip:192.0.2.1", "o"), *wrong)[0] == 403
    assert "owner" not in kam.kamcmd("keepalive.list")
    code, text = curl(outside, url, rpc("keepalive.add", "sip:192.0.2.1", "o"), *bearer)
    assert (code, json.loads(text)["result"]) == (200, "Ok. Destination added.")
    assert "owner: o" in kam.kamcmd("keepalive.list")
    code, text = curl(outside, url, json.dumps(SET_CFG), *bearer)
    assert code == 200 and cfg_value(kam) == "4321", "allowed: other methods reach jsonrpcs"
    code, _ = curl(outside, f"http://{kam.ip}:{kam.port}/rpc", rpc("keepalive.flush"), *bearer)
    assert code == 404
    assert "owner: o" in kam.kamcmd("keepalive.list")
    assert "missing or wrong bearer token" in refusal_lines(kam, outside.address)[0]


def test_custom_path_and_an_empty_allow_list(kamailio_factory: KamailioFactory) -> None:
    kam = kamailio_factory(defines={"KA_RPC_HTTP_PATH": '"/ka/json"'})
    base = f"http://{kam.ip}:{kam.port}"
    assert curl(None, base + "/RPC", rpc("keepalive.list"))[0] == 404
    code, text = curl(None, base + "/ka/json", rpc("keepalive.list"))
    assert (code, json.loads(text)["result"]) == (200, [])
    closed = kamailio_factory(defines={"KA_RPC_HTTP_ALLOW": '""'})
    code, _ = curl(None, f"http://{closed.ip}:{closed.port}/RPC", rpc("keepalive.list"))
    assert code == 403, "an empty allow-list closes JSON-RPC over HTTP, loopback included"


def test_tls_listener_follows_the_same_rules(
    kamailio_factory: KamailioFactory, outside: Host
) -> None:
    kam = on_gateway(kamailio_factory, outside, tls=True)
    tls = f"https://{kam.ip}:{kam.tls_port}"
    before = state_snapshot(kam)
    assert curl(outside, tls + "/RPC", rpc("keepalive.flush"))[0] == 403
    assert curl(outside, tls + "/x", json.dumps(SET_CFG))[0] == 403
    plain = f"http://{kam.ip}:{kam.tls_port}/RPC"
    assert curl(outside, plain, rpc("keepalive.flush"))[0] == 0, "plain HTTP on the TLS port"
    assert state_snapshot(kam) == before
    assert refusal_lines(kam, outside.address)
    opened = on_gateway(kamailio_factory, outside, tls=True,
                        KA_RPC_HTTP_ALLOW=f'"{outside.address}"')  # fmt: skip
    url = f"https://{opened.ip}:{opened.tls_port}/RPC"
    code, text = curl(outside, url, rpc("keepalive.add", "sip:192.0.2.1", "tls"))
    assert (code, json.loads(text)["result"]) == (200, "Ok. Destination added.")
    assert (
        curl(outside, f"https://{opened.ip}:{opened.tls_port}/x", rpc("keepalive.list"))[0] == 404
    )


def test_bad_http_input_gets_a_clear_4xx(kam: Kamailio) -> None:
    url = f"http://{kam.ip}:{kam.port}/RPC"

    def error_of(body: bytes) -> tuple[int, str]:
        code, text = curl(None, url, body)
        return code, json.loads(text)["error"]["message"]

    assert error_of(b"x" * 9000) == (413, "request over 8192 bytes")
    assert error_of(b'{"jsonrpc":"2.0","method":"keepalive.\xff","id":1}') == (
        400, "body is not UTF-8",
    )  # fmt: skip
    assert error_of(b"{not json") == (400, "Parse error")
    assert error_of(b'"keepalive.flush"') == (400, "the request must be a JSON object")
    small_batch = json.dumps([json.loads(rpc("keepalive.flush")), SET_CFG]).encode()
    assert error_of(small_batch) == (400, "batch requests are not supported")
    big_batch = "[" + ",".join(rpc("keepalive.add", f"sip:10.9.{i // 250}.{i % 250}", "b", req_id=i)
                               for i in range(10_000)) + "]"  # fmt: skip
    code, _ = curl(None, url, big_batch)
    assert code == 0, "over Kamailio's TCP read buffer: the core drops the connection"
    assert kam.kamcmd("keepalive.list") == "", "no call of either batch ran"
    assert cfg_value(kam) != "4321"
    code, text = curl(None, url, rpc("keepalive.list"))
    assert (code, json.loads(text)["result"]) == (200, []), "still serving"
    assert not [ln for ln in kam.log().splitlines() if "parse_first_line" in ln]


def test_trickling_clients_do_not_hold_up_the_interface(kam: Kamailio) -> None:
    """Slowloris: connections that send a request a byte at a time tie up no worker."""
    request = (f"POST /RPC HTTP/1.1\r\nHost: x\r\nContent-Length: {len(rpc('keepalive.flush'))}"
               f"\r\n\r\n{rpc('keepalive.flush')}").encode()  # fmt: skip
    slow = []
    try:
        for _ in range(20):
            s = socket.create_connection((kam.ip, kam.port), timeout=5)
            s.sendall(request[:10])
            slow.append(s)
        assert "Ok" in kam.kamcmd("keepalive.add", "sip:192.0.2.1", "o")
        for i in range(5):
            for s in slow:
                s.sendall(request[10 + i : 11 + i])
            started = time.monotonic()
            code, text = curl(None, f"http://{kam.ip}:{kam.port}/RPC", rpc("keepalive.list"))
            assert code == 200 and json.loads(text)["result"][0]["owner"] == "o"
            assert time.monotonic() - started < 1.0
    finally:
        for s in slow:
            s.close()
    assert "owner: o" in kam.kamcmd("keepalive.list"), "no trickled flush completed"


def test_add_rate_limit_over_kamcmd_and_http(kamailio_factory: KamailioFactory) -> None:
    kam = kamailio_factory(defines={"KA_RPC_ADD_RATE": 5})
    answers = [kam.kamcmd("keepalive.add", f"sip:192.0.2.{i}", "r") for i in range(1, 9)]
    refused = [a for a in answers if a.startswith("error: 429 - too many keepalive.add")]
    assert len(refused) >= 2 and answers.count("Ok. Destination added.\n") <= 6, answers
    assert "limit is 5 per second (rpc_add_rate)" in refused[0]
    body = rpc("keepalive.add", "sip:192.0.2.99", "r").encode()
    req = urllib.request.Request(f"http://{kam.ip}:{kam.port}/RPC", data=body)
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(req, timeout=5)
    assert http.value.code == 429
    assert json.loads(http.value.read())["error"]["code"] == 429
    listed = kam.kamcmd("keepalive.list").count("owner: r")
    assert listed == answers.count("Ok. Destination added.\n")
    time.sleep(1.1)
    assert kam.kamcmd("keepalive.add", "sip:192.0.2.100", "r") == "Ok. Destination added.\n"


def _owner_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^Uid:\s+(\d+)", status, re.M)
    assert match
    return int(match.group(1))


def test_unix_sockets_have_no_world_access(kam: Kamailio) -> None:
    assert kam.proc is not None
    uid = _owner_uid(kam.proc.pid)
    ka = os.stat(kam.rpc_socket)
    ctl = os.stat(kam.ctl_socket)
    assert stat.S_IMODE(ka.st_mode) == 0o660, "kamcmd socket: owner and group"
    assert stat.S_IMODE(ctl.st_mode) == 0o600, "Kamailio's ctl behind the relay: owner only"
    assert ka.st_uid == ctl.st_uid == uid
