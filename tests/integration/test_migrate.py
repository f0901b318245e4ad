"""``python3 -m kemi.migrate`` against the C keepalive module: the C documentation example and
a config using every C parameter, run as they are (keepalive.so) and migrated (ka-kemi) at
the same time on the same peers, must give the same UP/DOWN, over the same kamcmd socket."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.kamailio import REPO, Kamailio, free_address
from tests.harness.sipclient import request

pytestmark = pytest.mark.integration
DATA = REPO / "tests" / "data"
READY_S = 20.0


@dataclass
class CfgKamailio(Kamailio):
    """A Kamailio running a given cfg text; kamcmd goes to ``ctl.sock`` in its work dir
    (ctl's socket for the C module, ka-kemi's for the migrated cfg)."""

    text: str = ""

    @property
    def rpc_socket(self) -> Path:
        return self.workdir / "ctl.sock"

    def cfg_text(self) -> str:
        return self.text.replace("@IP@", self.ip).replace("@PORT@", str(self.port))

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while not self.rpc_socket.exists():  # ctl's, or ka-kemi's pinger's
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited at start:\n{self.log()}")
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)


def migrated(text: str) -> tuple[str, str]:
    """(new cfg, stderr) from the command, run by Kamailio's own Python."""
    proc = subprocess.run(
        ["/usr/bin/python3", "-m", "kemi.migrate", "/dev/stdin"], input=text, cwd=REPO,
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return proc.stdout, proc.stderr


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[CfgKamailio]]:
    """Started later by the test; stopped by PID here, the logs shown on failure."""
    kams: list[CfgKamailio] = []
    yield kams
    for kam in kams:
        kam.stop()
        assert not kam.crash_lines(), kam.log()


def start_both(pair: list[CfgKamailio], tmp_path: Path, text: str) -> tuple[CfgKamailio, ...]:
    new, notes = migrated(text)
    assert not re.search(r"(?m)^loadmodule \"keepalive", new), notes
    for side, cfg in (("c", text), ("ka", new)):
        work = tmp_path / side
        work.mkdir()
        cfg = cfg.replace("@CTL@", str(work / "ctl.sock"))
        pair.append(CfgKamailio(work, script=REPO / "kemi" / "native.py", text=cfg))
    for kam in pair:
        kam.start()
    return tuple(pair)


def states(kam: Kamailio) -> dict[str, int]:
    """URI (without ``sip:``) -> state, from ``kamcmd keepalive.list``."""
    out = kam.kamcmd("keepalive.list")
    pairs = re.findall(r"uri: (?:sip:)?(\S+)\n.*?state: (\d)", out, re.S)
    return {uri: int(state) for uri, state in pairs}


def wait_same(kams: tuple[CfgKamailio, ...], want: dict[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = [states(k) for k in kams]
        if all(all(s.get(u) == v for u, v in want.items()) for s in seen):
            return
        assert time.monotonic() < deadline, f"want {want}, C {seen[0]}, ka-kemi {seen[1]}"
        time.sleep(0.1)


def message(kam: Kamailio, user: str, uri: str = "") -> tuple[int, str]:
    reply = request(kam.ip, kam.port, "MESSAGE", f"sip:{user}@{kam.ip}:{kam.port}", {"X-Uri": uri})
    return reply.code, reply.reason


def test_c_docs_example_migrated_gives_the_c_modules_states(pair, tmp_path, uas_factory) -> None:
    up, failing = uas_factory(), uas_factory()
    failing.answer(503)
    text = (DATA / "c_docs_example.cfg").read_text()
    text = text.replace('"192.168.10.20"', f'"{up.host}:{up.port}"')
    text = text.replace('"sip.provider.com"', f'"{failing.host}:{failing.port}"')
    text = text.replace("192.168.1.", "127.28.1.")  # added and deleted in one request
    header = (
        'listen=udp:@IP@:@PORT@\nloadmodule "ctl.so"\nmodparam("ctl", "binrpc", "unix:@CTL@")\n'
    )
    c, ka = start_both(pair, tmp_path, text.replace("\nloadmodule", f"\n{header}loadmodule", 1))
    want = {f"{up.host}:{up.port}": 1, f"{failing.host}:{failing.port}": 2}
    wait_same((c, ka), want, timeout=25)  # ping_interval 10
    assert message(c, "x") == message(ka, "x") == (200, "alive")
    assert set(states(c)) == set(states(ka)) == set(want)  # the per-request add/del left none


def test_full_c_config_migrated_matches_c_and_carries_fr_timer(pair, tmp_path, uas_factory) -> None:
    up, failing, added = uas_factory(), uas_factory(), uas_factory()
    failing.answer(503)
    closed = f"{free_address()[0]}:5999"
    text = (DATA / "c_full.cfg").read_text()
    marks = {"@UP@": f"{up.host}:{up.port}", "@FAIL@": f"{failing.host}:{failing.port}"}
    for marker, uri in (*marks.items(), ("@CLOSED@", closed)):
        text = text.replace(marker, uri)
    started = time.monotonic()
    c, ka = start_both(pair, tmp_path, text)
    want = {f"{up.host}:{up.port}": 1, f"{failing.host}:{failing.port}": 2, closed: 2}
    wait_same((c, ka), want, timeout=6)
    # fr_timer 1500 carried over: the closed port is DOWN as early as with C (ka-kemi's own
    # default, 5000 ms, would take longer than this).
    assert time.monotonic() - started < 4.5
    new_uri = f"sip:{added.host}:{added.port}"
    assert message(c, "add", new_uri) == message(ka, "add", new_uri) == (200, "added")
    wait_same((c, ka), {**want, new_uri[4:]: 1}, timeout=5)
    # C finds a destination by its URI without "sip:" only; ka-kemi takes either form
    bare = new_uri.removeprefix("sip:")
    assert message(c, "check", bare) == message(ka, "check", bare) == (200, "usable")
    assert message(ka, "check", new_uri) == (200, "usable")
    assert message(c, "check", "sip:127.28.9.9:5060") == (404, "unknown")
    assert message(ka, "check", "sip:127.28.9.9:5060") == (404, "unknown")
    # The migrated "ka_is_alive(...) == 2" is exact ($rc): DOWN answers 503 with either form
    # of the URI.  (The C module's own answer for this static destination is not compared:
    # its "== 2" is a boolean test, see docs/native.md.)
    assert message(ka, "check", closed) == message(ka, "check", f"sip:{closed}") == (503, "down")
    assert message(c, "del", new_uri) == message(ka, "del", new_uri) == (200, "deleted")
    assert new_uri[4:] not in states(c) and new_uri[4:] not in states(ka)
    # the operator's event routes run in both, as often
    for name in ("dst-up", "dst-down"):
        counts = [k.log().count(f"cfg event: {name}") for k in (c, ka)]
        assert counts[0] == counts[1] == 2, (name, counts)
    assert all(r.headers["From"].startswith("<sip:probe@example.test>") for r in up.requests)
