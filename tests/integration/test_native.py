"""kamailio-native.cfg in a real Kamailio with real peers: UP/DOWN, runtime add/del through
``python_exec``, the ``$rc`` codes (and the ``if (python_exec(...) == 2)`` trap), events in
``event_route[keepalive:*]`` (each once, in order), kamcmd and HTTP (JSON-RPC, metrics, and
another path left to the cfg's own ``event_route[xhttp:request]``)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory
from tests.harness.kamailio import REPO, Kamailio, free_address
from tests.harness.sipclient import request

pytestmark = pytest.mark.integration

TEST_ROUTE = r"""
# test only: MESSAGE sip:call@... runs python_exec("$hdr(X-Fn)", "$hdr(X-Arg)") and answers
# "rc=<$rc>"; with X-If: 1 it runs it inside "if (... == 2)" and says whether that matched.
route[KA_TEST] {
	if ($hdr(X-If) == "1") {
		if (python_exec("$hdr(X-Fn)", "$hdr(X-Arg)") == 2) {
			$var(rc) = $rc;
			$var(t) = "matched";
		} else {
			$var(rc) = $rc;
			$var(t) = "not-matched";
		}
		sl_send_reply("200", "rc=$var(rc) if=$var(t)");
		exit;
	}
	python_exec("$hdr(X-Fn)", "$hdr(X-Arg)");
	$var(rc) = $rc;
	sl_send_reply("200", "rc=$var(rc)");
	exit;
}
"""
EVENT = re.compile(
    r"keepalive event: (\S+) owner (\S+) (up|down|degraded) "
    r"\((\d) -> (\d), code (\d+), rtt (\d+) ms\)"
)


def native_cfg(directory: Path, cfg: Path = REPO / "kamailio-native.cfg") -> Path:
    """``cfg`` with the test route hooked first into its request_route."""
    text = cfg.read_text()
    assert text.count("request_route {\n") == 1
    text = text.replace(
        "request_route {\n", 'request_route {\n\tif ($rU == "call") {\n\t\troute(KA_TEST);\n\t}\n'
    )
    path = directory / "native-test.cfg"
    path.write_text(text + TEST_ROUTE)
    return path


def start_native(factory: KamailioFactory, tmp_path: Path, **defines: str | int) -> Kamailio:
    return factory(
        defines=defines, script=REPO / "kemi" / "native.py", cfg_file=native_cfg(tmp_path)
    )


def py_exec(kam: Kamailio, fn: str, arg: str, in_if: bool = False) -> str:
    headers = {"X-Fn": fn, "X-Arg": arg}
    if in_if:
        headers["X-If"] = "1"
    reply = request(kam.ip, kam.port, "MESSAGE", f"sip:call@{kam.ip}:{kam.port}", headers)
    assert reply.code == 200, reply.raw
    return reply.reason


def state_of(kam: Kamailio, uri: str, owner: str) -> int | None:
    m = re.search(r"state: (\d)", kam.kamcmd("keepalive.get", uri, owner))
    return int(m.group(1)) if m else None


def wait_state(kam: Kamailio, uri: str, owner: str, state: int, timeout: float = 6.0) -> None:
    deadline = time.monotonic() + timeout
    while state_of(kam, uri, owner) != state:
        assert time.monotonic() < deadline, kam.kamcmd("keepalive.list")
        time.sleep(0.05)


def events(kam: Kamailio, uri: str) -> list[tuple[str, ...]]:
    return [m.groups()[1:] for m in EVENT.finditer(kam.log()) if m.group(1) == uri]


def http(kam: Kamailio, path: str, body: bytes | None = None) -> tuple[int, str]:
    url = f"http://{kam.ip}:{kam.port}{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_native_cfg_probes_fires_each_event_once_in_order_and_serves_rpc(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    uas = uas_factory()
    up = f"sip:{uas.host}:{uas.port}"
    closed = f"sip:{free_address()[0]}:5999"
    kam = start_native(kamailio_factory, tmp_path, KA_DESTINATION=f'"{up} {closed}"')
    wait_state(kam, up, "_params", 1)
    wait_state(kam, closed, "_params", 2)
    uas.answer(503)
    wait_state(kam, up, "_params", 2)
    uas.answer(200)
    wait_state(kam, up, "_params", 1)
    kam.wait_log(rf"keepalive event: {re.escape(up)} owner _params up \(2 -> 1", timeout=3)
    time.sleep(1.5)  # more pings, no more changes: no more events
    assert [e[:4] for e in events(kam, up)] == [
        ("_params", "up", "0", "1"),
        ("_params", "down", "1", "2"),
        ("_params", "up", "2", "1"),
    ]
    first_up, down, _ = events(kam, up)
    assert first_up[4] == "200" and down[4] == "503"
    assert events(kam, closed) == [("_params", "down", "0", "2", "408", "0")]
    listing = kam.kamcmd("keepalive.list")
    assert f"uri: {up}" in listing and f"uri: {closed}" in listing
    status, text = http(kam, "/metrics")
    assert status == 200 and "kamailio_keepalive_destinations 2" in text and up in text
    rpc = json.dumps({"jsonrpc": "2.0", "method": "keepalive.list", "id": 1}).encode()
    status, text = http(kam, "/RPC", rpc)
    assert status == 200 and up in text
    # Not ka-kemi's path: ka_xhttp leaves it to the cfg, whose own 404 answers.
    assert http(kam, "/ws") == (404, "not found\n")


def test_rc_codes_and_the_if_trap(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    good, slow = uas_factory(), uas_factory()
    slow.delay(0.3)
    kam = start_native(kamailio_factory, tmp_path)
    up, degraded = f"sip:{good.host}:{good.port}", f"sip:{slow.host}:{slow.port}"
    down = f"sip:{free_address()[0]}:5999"
    assert py_exec(kam, "ka_add_destination", f"{up} t") == "rc=1"
    assert py_exec(kam, "ka_add_destination", f"{down} t") == "rc=1"
    assert py_exec(kam, "ka_add_destination", f"{degraded} t degraded_ms=100") == "rc=1"
    for uri, state in ((up, 1), (down, 2), (degraded, 3)):
        wait_state(kam, uri, "t", state)
    assert py_exec(kam, "ka_is_alive", up) == "rc=1"
    assert py_exec(kam, "ka_is_alive", down) == "rc=2"
    assert py_exec(kam, "ka_is_alive", degraded) == "rc=3"
    assert py_exec(kam, "ka_is_alive", "sip:192.0.2.1:5060") == "rc=-1"  # not monitored
    assert py_exec(kam, "ka_is_alive", "sip:h:50600000") == "rc=-1"  # bad URI
    # The native language turns a call inside an expression into true/false: "== 2" never
    # matches, even for a DOWN destination, while $rc right after it is exact.
    assert py_exec(kam, "ka_is_alive", down, in_if=True) == "rc=2 if=not-matched"
    assert py_exec(kam, "ka_is_alive", up, in_if=True) == "rc=1 if=not-matched"
    kam.wait_log(r"keepalive event: \S+ owner t degraded \(0 -> 3, code 200, rtt \d+ ms\)")


def test_runtime_add_and_del_with_one_string_argument(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    kam = start_native(kamailio_factory, tmp_path)
    assert py_exec(kam, "ka_add_destination", f"{uri} gw") == "rc=1"
    assert py_exec(kam, "ka_add_destination", f"{uri} gw") == "rc=-1"  # duplicate
    wait_state(kam, uri, "gw", 1)
    kam.wait_log(rf"keepalive event: {re.escape(uri)} owner gw up \(0 -> 1, code 200")
    assert py_exec(kam, "ka_del_destination", f"{uri} gw") == "rc=1"
    assert py_exec(kam, "ka_del_destination", f"{uri} gw") == "rc=-1"
    assert f"uri: {uri}" not in kam.kamcmd("keepalive.list")
    assert py_exec(kam, "ka_add_destination", uri) == "rc=-1"  # no owner
    assert py_exec(kam, "ka_is_alive", "") == "rc=-1"
    log = kam.log()
    assert 'ka_add_destination: use python_exec("ka_add_destination", "<uri> <owner>' in log
    assert 'ka_is_alive: use python_exec("ka_is_alive", "<uri>"), not' in log
