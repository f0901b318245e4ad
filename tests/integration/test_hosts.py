"""Peers on other "hosts" (network namespaces): cut links, lost addresses, killed and frozen
peers.  Kamailio listens on the root side of each host's veth."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory
from tests.harness.kamailio import REPO, Kamailio, free_port
from tests.harness.netns import Host
from tests.integration.test_keepalive import add, state_of, wait_state

pytestmark = [pytest.mark.integration, pytest.mark.netns]
SIP_PORT = 5060


def start_peer(host: Host, mode_file: Path) -> int:
    mode_file.write_text("200")
    proc = host.run(
        ["python3", str(REPO / "tests" / "peers" / "uas.py"), "--host", host.address,
         "--port", str(SIP_PORT), "--mode-file", str(mode_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc.pid


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
    kam, host, uri, _, _ = setup
    host.link_down()
    assert transition_time(kam, uri, 2, 4) < 2.6, "next ping (<=1 s) + timeout (1 s) + tick"
    host.link_up()
    assert transition_time(kam, uri, 1, 4) < 2.6


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
