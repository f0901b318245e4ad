"""pytest fixtures for SIP peers and test hosts; loaded by tests/conftest.py (pytest_plugins).

Every factory stops what it made at teardown, also when the test failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.kamailio import free_address
from tests.harness.netns import Host, check_available
from tests.peers.dns_zone import ZoneServer
from tests.peers.sipp import SippUAS
from tests.peers.uas import ScriptedUAS

UASFactory = Callable[..., ScriptedUAS]
SippUASFactory = Callable[..., SippUAS]
HostFactory = Callable[..., Host]


@pytest.fixture
def uas_factory() -> Iterator[UASFactory]:
    """``uas_factory(host=None, port=0, **kw)``: a started ScriptedUAS.

    Without ``host`` it gets a fresh random 127.x.y.z; ``port`` 0 picks one free for both
    UDP and TCP.  ``kw`` goes to ScriptedUAS (``udp=False``, ``tls_context=...``).
    """
    started: list[ScriptedUAS] = []

    def make(host: str | None = None, port: int = 0, **kw: Any) -> ScriptedUAS:
        uas = ScriptedUAS(host or free_address()[0], port, **kw)
        uas.start()
        started.append(uas)
        return uas

    yield make
    for uas in started:
        uas.stop()


@pytest.fixture
def zone_server() -> Iterator[ZoneServer]:
    """A dnslib DNS server for a test zone on a fresh loopback address (tests/peers/dns_zone.py)."""
    ip, port = free_address()
    server = ZoneServer(ip, port)
    yield server
    server.stop()


@pytest.fixture
def sipp_uas_factory(tmp_path: Path) -> Iterator[SippUASFactory]:
    """``sipp_uas_factory(host=None, port=None, transport="u1", runner=None)``: sipp
    answering OPTIONS with 200 (``runner=host.run`` starts it in a netns host)."""
    started: list[SippUAS] = []

    def make(
        host: str | None = None,
        port: int | None = None,
        transport: str = "u1",
        runner: Callable[..., Any] | None = None,
    ) -> SippUAS:
        if host is None or port is None:
            free_host, free_port = free_address()
            host, port = host or free_host, port or free_port
        sipp = SippUAS(host, port, tmp_path / f"sipp{len(started)}", transport, runner)
        started.append(sipp)
        return sipp.start()

    yield make
    for sipp in started:
        sipp.stop()


@pytest.fixture
def netns_host_factory() -> Iterator[HostFactory]:
    """``netns_host_factory(**kw)``: a new network-namespace Host (``ipv6=True`` for an
    fd00::/64 too); skips without root/netns support; all removed at teardown."""
    check_available()
    hosts: list[Host] = []

    def make(**kw: Any) -> Host:
        hosts.append(Host(**kw))
        return hosts[-1]

    yield make
    for host in hosts:
        host.close()
