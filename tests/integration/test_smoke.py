"""The chain works: real Kamailio loads kemi, a Python route answers, state is shared."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory, call_fn
from tests.harness.kamailio import Kamailio
from tests.harness.sipclient import request

pytestmark = pytest.mark.integration


def test_python_route_answers_sip_over_udp_and_tcp(kam: Kamailio) -> None:
    for transport in ("udp", "tcp"):
        reply = request(kam.ip, kam.port, "OPTIONS", transport=transport)
        assert reply.code == 200
        assert (
            request(kam.ip, kam.port, "INVITE", f"sip:bob@{kam.ip}", transport=transport).code
            == 404
        )


def test_state_written_in_one_worker_is_seen_by_another(kam: Kamailio) -> None:
    dest = f"sip:{kam.ip}:{kam.port}"
    added = call_fn(kam, "ka_add_destination", dest, "smoke", transport="udp")
    seen = call_fn(kam, "ka_is_alive", dest, transport="tcp")
    assert added.header("x-result") == "1"
    assert seen.header("x-result") == "1"
    assert added.header("x-pid") != seen.header("x-pid"), "same process: not a cross-process test"
    assert "owner: smoke" in kam.kamcmd("keepalive.list")


def test_example_config_shows_one_up_one_down(kamailio_factory: KamailioFactory) -> None:
    """The main job's promise: with nothing else running, one UP and one DOWN in seconds."""
    probe = kamailio_factory(start=False)
    closed = f"sip:{probe.ip}:{probe.port + 1}"
    kam = kamailio_factory(
        defines={"KA_DESTINATION": f'"sip:{probe.ip}:{probe.port} {closed}"'},
        script=probe.script.parents[3] / "kemi" / "example.py",
        ip=probe.ip,
        port=probe.port,
    )
    kam.wait_log(rf"destination sip:{probe.ip}:{probe.port} owner _params: UNKNOWN -> UP", 5)
    kam.wait_log(rf"destination {closed} owner _params: UNKNOWN -> DOWN", 5)
    listing = kam.kamcmd("keepalive.list")
    assert listing.count("state: 1") == 1 and listing.count("state: 2") == 1, listing


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_sigterm_stops_every_process_and_leaves_no_helper(kam: Kamailio) -> None:
    """On every Kamailio/Python version: no process beyond Kamailio's own (Python 3.14 would
    start a multiprocessing resource tracker for a non-fork lock), and all gone on SIGTERM."""
    assert kam.proc is not None
    pids = _children(kam.proc.pid)
    cmdlines = [Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] for p in pids]
    assert all(c.endswith(b"kamailio") for c in cmdlines), cmdlines
    started = time.monotonic()
    kam.proc.send_signal(signal.SIGTERM)
    assert kam.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "a process outlived Kamailio"
