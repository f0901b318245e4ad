"""``KA_STATE_FILE`` with a real Kamailio: runtime destinations and their states survive a
restart (SIGTERM) and a crash (kill -9 of every Kamailio process), and a bad file never
stops Kamailio."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ka_core.ops import binrpc
from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import Kamailio
from tests.harness.rpc_client import BinrpcClient

pytestmark = pytest.mark.integration

ADDED = "Ok. Destination added."


def defines(path: Path, **more: str | int) -> dict[str, str | int]:
    return {"KA_STATE_FILE": f'"{path}"', **more}


def add_many(kam: Kamailio, uris: list[str], owner: str = "rpc", chunk: int = 200) -> list[float]:
    """``keepalive.add`` each URI over one BINRPC connection, pipelined in chunks under
    ``KA_RPC_ADD_RATE`` (1000/s); returns the monotonic time each add was answered."""
    done = []
    with BinrpcClient(kam.rpc_socket, timeout=10) as client:
        for start in range(0, len(uris), chunk):
            part = uris[start : start + chunk]
            client.sock.sendall(
                b"".join(
                    binrpc.encode_request(i, "keepalive.add", [uri, owner])
                    for i, uri in enumerate(part)
                )
            )
            for _ in part:
                assert client.receive()[:2] == (False, [ADDED])
                done.append(time.monotonic())
            if start + chunk < len(uris):
                time.sleep(0.25)
    return done


def listing(kam: Kamailio) -> list[dict[str, object]]:
    """``keepalive.list`` in full, in pages (kamcmd's limit: ~700 per reply)."""
    rows: list[dict[str, object]] = []
    with BinrpcClient(kam.rpc_socket, timeout=10) as client:
        while True:
            fault, values, _ = client.call("keepalive.list", len(rows), 500)
            assert not fault, values
            rows += values  # type: ignore[arg-type]
            if len(values) < 500:
                return rows


def saved(path: Path) -> list[dict[str, object]]:
    try:
        return json.loads(path.read_bytes())["destinations"]  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return []


def wait_saved(path: Path, check, timeout: float = 10.0) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        dests = saved(path)
        if check(dests):
            return dests
        if time.monotonic() > deadline:
            raise AssertionError(f"state file not as expected after {timeout} s: {len(dests)}")
        time.sleep(0.1)


def changes(kam: Kamailio, pattern: str) -> list[str]:
    return [ln for ln in kam.log().splitlines() if re.search(pattern, ln)]


def kill_9(kam: Kamailio, pids: list[int]) -> None:
    """A crash: SIGKILL every Kamailio process (``pids``: ``kam.pids()``; main first, so
    nobody logs a dead child).  The fixture's stop then has nothing left to do."""
    assert kam.proc is not None and kam.proc.pid in pids
    for pid in [kam.proc.pid, *(p for p in pids if p != kam.proc.pid)]:
        os.kill(pid, signal.SIGKILL)
    kam.proc.wait(timeout=10)
    kam.proc = None
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-f", str(kam.workdir)], capture_output=True).stdout:
        assert time.monotonic() < deadline, "Kamailio processes left after kill -9"
        time.sleep(0.05)


def test_a_thousand_runtime_destinations_and_their_states_survive_a_restart(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    up, down = uas_factory(), uas_factory()
    down.answer(503)
    ups = [f"sip:a{i}@{up.host}:{up.port}" for i in range(500)]
    downs = [f"sip:b{i}@{down.host}:{down.port}" for i in range(500)]
    path = tmp_path / "ka.state"
    kam = kamailio_factory(defines=defines(path))
    add_many(kam, ups + downs)
    kam.wait_log(r"owner rpc: UNKNOWN -> UP", timeout=15, count=500)
    kam.wait_log(r"owner rpc: UNKNOWN -> DOWN", timeout=15, count=500)
    wait_saved(path, lambda d: sorted(x["state"] for x in d) == [1] * 500 + [2] * 500)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert kam.stop() == 0
    stopped = time.monotonic()

    up.answer(503)  # each peer now answers the other way: a probe changes every state
    down.answer(200)
    second = kamailio_factory(defines=defines(path))
    ready = time.monotonic()
    second.wait_log(
        rf"state file {re.escape(str(path))} \(written .*\): 1000 runtime destinations added "
        r"back, last state of 1000 restored, 0 skipped",
        timeout=1,
    )
    rows = listing(second)
    assert len(rows) == 1000 and {r["uri"] for r in rows} == set(ups + downs)
    # restored before the first probe: every change starts from the old state, none from UNKNOWN
    second.wait_log(r"owner rpc: UP -> DOWN", timeout=5, count=500)
    second.wait_log(r"owner rpc: DOWN -> UP", timeout=5, count=500)
    assert changes(second, r"owner rpc: UNKNOWN ->") == []
    # and probed again within one interval (1 s), spread over it
    first: dict[str, float] = {}
    for req in sorted(up.requests + down.requests, key=lambda r: r.mono):
        if req.mono > stopped and req.uri not in first:
            first[req.uri] = req.mono
    assert len(first) == 1000
    times = sorted(first.values())
    assert times[-1] - ready < 1.5 and times[-1] - times[0] > 0.5, (times[0], times[-1], ready)
    assert result_of(second, "ka_is_alive", ups[0]) == "2"
    assert result_of(second, "ka_is_alive", downs[0]) == "1"


def test_kill_9_loses_at_most_the_last_second(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    peer = uas_factory()
    path = tmp_path / "ka.state"
    kam = kamailio_factory(defines=defines(path))
    pids = kam.pids()
    added: list[tuple[str, float]] = []
    for batch in range(30):  # 10 adds every 0.1 s for 3 s, then the crash at once
        time.sleep(0.1)
        uris = [f"sip:k{batch}x{i}@{peer.host}:{peer.port}" for i in range(10)]
        added += zip(uris, add_many(kam, uris), strict=True)
    crash = time.monotonic()
    kill_9(kam, pids)

    second = kamailio_factory(defines=defines(path))
    back = {str(r["uri"]) for r in listing(second)}
    assert back <= {uri for uri, _ in added}
    lost = [(uri, round(crash - t, 2)) for uri, t in added if uri not in back]
    assert all(age < 1.0 for _, age in lost), lost
    assert len(back) >= 200, "only the last second may be missing"
    assert not changes(second, r"ERROR: .*state file")


@pytest.mark.parametrize("problem", ["corrupt", "directory", "wrong version"])
def test_a_bad_state_file_is_one_error_line_and_kamailio_works(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path, problem: str
) -> None:
    path = tmp_path / "ka.state"
    if problem == "directory":  # unreadable even for root (chmod 000 is not)
        path.mkdir()
        reason = re.escape("cannot read it: not a regular file (a directory); nothing restored")
    else:
        contents = {
            "corrupt": b'{"format": "ka-kemi-state", "version": 1, "destinations": [{',
            "wrong version": b'{"format": "ka-kemi-state", "version": 2}',
        }
        reasons = {
            "corrupt": r"not valid JSON \(.*\)",
            "wrong version": r"version 2 not supported \(this ka-kemi reads 1\)",
        }
        content = contents[problem]
        path.write_bytes(content)
        reason = reasons[problem] + re.escape(f"; nothing restored (moved to {path}.rejected)")
    peer = uas_factory()
    kam = kamailio_factory(defines=defines(path))
    uri = f"sip:{peer.host}:{peer.port}"
    assert result_of(kam, "ka_add_destination", uri, "t") == "1"
    deadline = time.monotonic() + 5
    while result_of(kam, "ka_is_alive", uri) != "1" or "state: 1" not in kam.kamcmd(
        "keepalive.get", uri, "t"
    ):
        assert time.monotonic() < deadline, kam.kamcmd("keepalive.info")
        time.sleep(0.1)
    errors = changes(kam, r"ERROR: .*state file")
    assert re.search(rf"keepalive: state file {re.escape(str(path))}: {reason}$", errors[0])
    if problem == "directory":
        time.sleep(1.0)
        errors = changes(kam, r"ERROR: .*state file")
        assert len(errors) == 2, errors
        assert errors[1].endswith(f"state file {path}: cannot write it: Is a directory (retrying)")
    else:
        assert len(errors) == 1, errors
        assert (tmp_path / "ka.state.rejected").read_bytes() == content
        wait_saved(path, lambda d: [x["uri"] for x in d] == [uri])
