"""Peers on other "hosts" (network namespaces): cut links, lost addresses, killed and frozen
peers.  Kamailio listens on the root side of each host's veth."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory
from tests.harness.kamailio import REPO, Kamailio, free_port
from tests.harness.netns import Host
from tests.integration.test_keepalive import add, seen_at, state_of, wait_state

pytestmark = [pytest.mark.integration, pytest.mark.netns]
SIP_PORT = 5060


def start_peer(host: Host, mode_file: Path) -> int:
    """The UAS in the host; it logs each request's arrival time to ``<mode_file>.log``."""
    mode_file.write_text("200")
    with open(f"{mode_file}.log", "a") as log:
        proc = host.run(
            ["python3", str(REPO / "tests" / "peers" / "uas.py"), "--host", host.address,
             "--port", str(SIP_PORT), "--mode-file", str(mode_file), "-v"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    return proc.pid


def arrivals(mode_file: Path) -> list[float]:
    """Monotonic arrival times of the OPTIONS the peer got (same clock as this process)."""
    lines = Path(f"{mode_file}.log").read_text().splitlines()
    return [float(ln.split()[0]) for ln in lines if " OPTIONS " in ln]


@pytest.fixture
def setup(kamailio_factory: KamailioFactory, netns_host_factory, tmp_path: Path):
    host = netns_host_factory()
    port = free_port(host.gateway)
    gw = host.gateway
    listen = {"LISTEN_UDP": f"udp:{gw}:{port}", "LISTEN_TCP": f"tcp:{gw}:{port}"}
    kam = kamailio_factory(defines=listen, ip=host.gateway, port=port)
    mode = tmp_path / "mode"
    pid = start_peer(host, mode)
    uri = f"sip:{host.address}:{SIP_PORT}"
    add(kam, uri)
    wait_state(kam, uri, 1, timeout=5)
    return kam, host, uri, pid, mode


def transition_time(kam: Kamailio, uri: str, state: int, timeout: float) -> float:
    return wait_state(kam, uri, state, timeout=timeout)


def test_link_cut_and_restored(setup) -> None:
    kam, host, uri, _, mode = setup
    host.link_down()
    cut = time.monotonic()
    down = seen_at(kam, uri, 2, timeout=4)
    last = max(t for t in arrivals(mode) if t < cut)
    # The next ping is due 1 s after the last one that arrived; it fails when tm's first
    # retransmission finds no route (+0.5 s) or at the latest when its 1 s timeout ends.
    assert 0.95 < down - last < 2.5, (down - last, down - cut)
    host.link_up()
    restored = time.monotonic()
    up = seen_at(kam, uri, 1, timeout=4)
    first = min(t for t in arrivals(mode) if t > restored)
    assert first - restored < 1.15, "the next ping after the link is back"
    assert up - first < 0.4, "UP as soon as its 200 is in"


def test_address_removed_and_restored(setup) -> None:
    kam, host, uri, _, _ = setup
    host.remove_address()
    transition_time(kam, uri, 2, 4)
    host.restore_address()
    transition_time(kam, uri, 1, 6)


def test_peer_frozen_then_resumed(setup) -> None:
    kam, _, uri, pid, _ = setup
    os.kill(pid, signal.SIGSTOP)
    try:
        transition_time(kam, uri, 2, 4)
    finally:
        os.kill(pid, signal.SIGCONT)
    transition_time(kam, uri, 1, 4)


def test_peer_killed_is_down_and_a_new_peer_is_up(setup) -> None:
    kam, host, uri, pid, mode = setup
    os.kill(pid, signal.SIGKILL)
    transition_time(kam, uri, 2, 4)
    start_peer(host, mode)
    transition_time(kam, uri, 1, 5)


def test_peer_answering_503_then_every_other_ping(setup) -> None:
    kam, _, uri, _, mode = setup
    mode.write_text("503")
    transition_time(kam, uri, 2, 4)
    mode.write_text("200")
    transition_time(kam, uri, 1, 4)
    assert state_of(kam, uri) == 1
    mode.write_text("alternate")
    downs = kam.log().count(f"{uri} owner t: UP -> DOWN")
    ups = kam.log().count(f"{uri} owner t: DOWN -> UP")
    kam.wait_log(rf"{re.escape(uri)} owner t: UP -> DOWN", 6, count=downs + 2)
    kam.wait_log(rf"{re.escape(uri)} owner t: DOWN -> UP", 6, count=ups + 2)
