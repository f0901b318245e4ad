"""Hostile and stray input: spoofed replies, floods, scanners.  Nothing may change a state
that a real answer did not change, and Kamailio must keep serving."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.integration.test_keepalive import add, state_of, wait_state
from tests.peers.uas import Request, ScriptedUAS, build_response

pytestmark = pytest.mark.integration


def reply_to(req: Request, code: int = 200, callid: str | None = None, branch: str | None = None):
    raw = build_response(req, code)
    if callid is not None:
        raw = re.sub(rb"(?im)^(call-id\s*:).*$", b"\\1 " + callid.encode(), raw)
    if branch is not None:
        raw = re.sub(rb"branch=[^;\r\n]+", b"branch=" + branch.encode(), raw)
    return raw


def test_spoofed_stray_late_and_duplicated_replies(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    kam = kamailio_factory(defines={"KA_PING_INTERVAL": 30, "KA_PING_TIMEOUT_MS": 2500})
    uas: ScriptedUAS = uas_factory()
    uas.blackhole()
    other: ScriptedUAS = uas_factory()  # another address, same network
    uri = f"sip:{uas.host}:{uas.port}"
    add(kam, uri)
    ping = uas.wait_requests(1, timeout=3)[0]
    callid = ping.headers["Call-ID"]
    prefix, seq, slot = callid.rsplit(".", 2)
    target = (kam.ip, kam.port)
    unknown_ping = f"{prefix}.{int(seq, 16) + 7:x}.{slot}"
    uas.send_raw(reply_to(ping, callid=unknown_ping), target)
    uas.send_raw(reply_to(ping, callid="unrelated@elsewhere"), target)  # not ours
    uas.send_raw(reply_to(ping, branch="z9hG4bKforged"), target)  # not our branch
    other.send_raw(reply_to(ping), target)  # right ids, wrong source address
    time.sleep(0.5)
    assert state_of(kam, uri) == 0, "no spoofed reply may change the state"
    kam.wait_log(r"ignoring reply 200 with our Call-ID but not our branch", 2)
    wait_state(kam, uri, 2, timeout=4)  # the real outcome: timeout
    uas.send_raw(reply_to(ping), target)  # late, after the timeout
    uas.send_raw(reply_to(ping), target)  # and duplicated
    time.sleep(0.5)
    assert state_of(kam, uri) == 2, "a late reply must not revive the destination"
    assert kam.log().count(f"{uri} owner t: UNKNOWN -> DOWN") == 1
    assert "-> UP" not in kam.log()


def test_duplicated_reply_counts_once(kamailio_factory: KamailioFactory, uas_factory) -> None:
    kam = kamailio_factory(defines={"KA_PING_INTERVAL": 30, "KA_PING_TIMEOUT_MS": 2500})
    uas: ScriptedUAS = uas_factory()
    uas.blackhole()
    uri = f"sip:{uas.host}:{uas.port}"
    add(kam, uri)
    ping = uas.wait_requests(1, timeout=3)[0]
    for _ in range(3):
        uas.send_raw(reply_to(ping), (kam.ip, kam.port))
    wait_state(kam, uri, 1, timeout=2)
    time.sleep(0.3)
    info = kam.kamcmd("keepalive.info", uri, "t")
    assert "replies: 1\n" in info and "pings sent: 1\n" in info


def test_add_flood_is_bounded_by_max_destinations(kamailio_factory: KamailioFactory) -> None:
    kam = kamailio_factory(defines={"KA_MAX_DESTINATIONS": 50, "KA_PING_INTERVAL": 60})
    results = [result_of(kam, "ka_add_destination", f"sip:10.3.0.{i}", "flood") for i in range(60)]
    assert results.count("1") == 50 and results.count("-1") == 10
    kam.wait_log(r"ka_add_destination: max_destinations \(50\) reached", 2)
    assert (
        kam.kamcmd("keepalive.add", "sip:10.3.1.1", "rpc")
        == "error: 500 - couldn't add data to list\n"
    )
    assert result_of(kam, "ka_del_destination", "sip:10.3.0.1", "flood") == "1"
    assert result_of(kam, "ka_add_destination", "sip:10.3.1.1", "flood") == "1"
    assert kam.kamcmd("keepalive.list", "0", "100").count("owner: flood") == 50


SV = Path(sys.executable).parent


@pytest.mark.timeout(180)
def test_sipvicious_scans_do_not_disturb_probing(kam, uas_factory, tmp_path) -> None:
    uas: ScriptedUAS = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    add(kam, uri)
    wait_state(kam, uri, 1)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    scan = subprocess.run(
        [str(SV / "sipvicious_svmap"), f"{kam.ip}", "-p", str(kam.port), "--timeout", "1"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert f"{kam.ip}:{kam.port}" in scan.stdout, scan.stdout + scan.stderr
    war = subprocess.run(
        [str(SV / "sipvicious_svwar"), kam.ip, "-p", str(kam.port), "-e", "100-110",
         "-m", "INVITE", "--timeout", "1"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert war.returncode == 0, war.stdout + war.stderr
    assert state_of(kam, uri) == 1 and result_of(kam, "ka_is_alive", uri) == "1"
    assert "-> DOWN" not in kam.log()
    before = len(uas.requests)
    uas.wait_requests(before + 1, timeout=3)  # still probing
