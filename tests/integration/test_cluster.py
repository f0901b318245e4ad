"""Cluster mode (docs/cluster.md) with three real Kamailio nodes joined by dmq, each on its
own loopback address (one in a network namespace for the link-cut and partition tests), and
real SIP peers that count the OPTIONS they receive."""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import Kamailio
from tests.integration.test_keepalive import state_of
from tests.peers.uas import ScriptedUAS

pytestmark = pytest.mark.integration

HEARTBEAT_MS = 300
Cluster = list[Kamailio]


def cluster_defines(node: Kamailio, notify: Kamailio, **extra: object) -> dict[str, str | int]:
    return {
        "KA_CLUSTER": 1,
        "KA_DMQ_SERVER": f'"sip:{node.ip}:{node.port}"',
        "KA_DMQ_NOTIFY": f'"sip:{notify.ip}:{notify.port}"',
        "KA_CLUSTER_HEARTBEAT_MS": HEARTBEAT_MS,
        **{k: v for k, v in extra.items()},  # type: ignore[misc]
    }


def node_id(kam: Kamailio) -> str:
    return f"{kam.ip}:{kam.port}"


def cluster_info(kam: Kamailio) -> str:
    return kam.kamcmd("keepalive.cluster")


def live_nodes(kam: Kamailio) -> list[str]:
    m = re.search(r"live nodes: (.*)", cluster_info(kam))
    return m.group(1).split() if m else []


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def wait_live(nodes: Cluster, expected: Cluster, timeout: float = 15.0) -> float:
    want = sorted(node_id(k) for k in expected)
    return wait_until(
        lambda: all(live_nodes(k) == want for k in nodes), timeout, f"live set {want}"
    )


def start_cluster(
    factory: KamailioFactory, n: int = 3, defines: dict[str, object] | None = None
) -> Cluster:
    nodes = [factory(start=False) for _ in range(n)]
    for kam in nodes:
        kam.defines.update(cluster_defines(kam, nodes[0], **(defines or {})))
    for kam in nodes:
        kam.start(wait=False)
    for kam in nodes:
        kam.wait_ready()
    wait_live(nodes, nodes)
    return nodes


def listed(kam: Kamailio) -> set[str]:
    return set(re.findall(r"uri: (\S+)", kam.kamcmd("keepalive.list")))


def states(kam: Kamailio, uris: list[str], owner: str = "t") -> list[int | None]:
    return [state_of(kam, uri, owner) for uri in uris]


def senders(uas: ScriptedUAS, since: float = 0.0) -> collections.Counter[str]:
    return collections.Counter(r.source[0] for r in uas.received("OPTIONS") if r.mono >= since)


def prober_of(kam: Kamailio, uri: str) -> str:
    m = re.search(r"probed by: (\S+)", kam.kamcmd("keepalive.cluster", uri))
    assert m, kam.kamcmd("keepalive.cluster", uri)
    return m.group(1)


@pytest.fixture
def peers(uas_factory) -> Iterator[list[ScriptedUAS]]:
    yield [uas_factory() for _ in range(6)]


def uris_of(peers: list[ScriptedUAS]) -> list[str]:
    return [f"sip:{p.host}:{p.port}" for p in peers]


def test_one_prober_per_destination_and_every_node_sees_the_state(
    kamailio_factory: KamailioFactory, peers: list[ScriptedUAS]
) -> None:
    nodes = start_cluster(kamailio_factory)
    uris = uris_of(peers)
    for uri in uris:
        assert result_of(nodes[0], "ka_add_destination", uri, "t") == "1"
    wait_until(lambda: all(listed(k) == set(uris) for k in nodes), 3, "replicated adds")
    wait_until(lambda: all(states(k, uris) == [1] * 6 for k in nodes), 5, "UP everywhere")
    start = time.monotonic()
    time.sleep(4.2)
    for uri, uas in zip(uris, peers, strict=True):
        got = senders(uas, since=start)
        assert len(got) == 1, f"{uri} probed by {dict(got)}"
        assert sum(got.values()) in (4, 5), f"{uri}: {dict(got)} OPTIONS in 4.2 s at 1 s"
        owner_ip = prober_of(nodes[1], uri).rpartition(":")[0]
        assert set(got) == {owner_ip}
    # the destinations are spread: with 6 of them, more than one node probes
    probers = {prober_of(nodes[0], uri) for uri in uris}
    assert len(probers) >= 2, probers
    assert result_of(nodes[2], "ka_is_alive", uris[0]) == "1"
