"""Cluster faults on a LAN (tests/harness/lan.py): three nodes, each in its own network
namespace plugged into one bridge, 300 destinations answering on the bridge's address, ping
interval 2 s.  One node loses its link (or is frozen) for 5 s and comes back; the healthy
nodes must never report a reachable destination DOWN, the cut node's RPC must stay fast, and
the destinations the lost node probed must be taken over within an interval of it being
counted out (docs/cluster.md, "Guarantees")."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory
from tests.harness import kamailio as harness
from tests.harness.kamailio import Kamailio
from tests.harness.lan import Lan
from tests.integration.test_cluster import cluster_defines, live_nodes, node_id, wait_until
from tests.peers.port_farm import PortFarm

pytestmark = [pytest.mark.integration, pytest.mark.netns]

N_DEST = 300
INTERVAL_S = 2
HEARTBEAT_MS = 500
CUT_S = 5.0


@pytest.fixture
def lan() -> Iterator[Lan]:
    with Lan() as net:
        yield net


def states(kam: Kamailio) -> dict[str, int]:
    text = kam.kamcmd("keepalive.list")
    return {
        uri: int(state) for uri, state in re.findall(r"uri: (\S+).*?state: (\d)", text, flags=re.S)
    }


def down_events(path: Path, since_line: int = 0) -> list[list[object]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines()[since_line:]]
    return [r for r in rows if r[4] in (2, "DOWN")]


def start_lan_cluster(
    factory: KamailioFactory, lan: Lan, farm: PortFarm, tmp_path: Path, monkeypatch
) -> list[Kamailio]:
    hosts = [lan.add_host() for _ in range(3)]
    nodes = [factory(start=False, ip=h.address, port=5060) for h in hosts]
    destinations = " ".join(farm.uris)
    for i, kam in enumerate(nodes):
        kam.defines.update(
            cluster_defines(
                kam, nodes[0], KA_CLUSTER_HEARTBEAT_MS=HEARTBEAT_MS,
                KA_PING_INTERVAL=INTERVAL_S, KA_PING_TIMEOUT_MS=1000,
                KA_DESTINATION=f'"{destinations}"', KA_EVENT_CALLBACK="ka_event",
                KA_TEST_EVENTS=f'"{tmp_path / f"events{i}.jsonl"}"',
            )
        )  # fmt: skip
    command = harness.kamailio_command()
    for host, kam in zip(hosts, nodes, strict=True):
        with monkeypatch.context() as patch:
            in_ns = ["ip", "netns", "exec", host.name, *command]
            patch.setattr(harness, "kamailio_command", lambda in_ns=in_ns: in_ns)
            kam.start(wait=False)
    for kam in nodes:
        kam.wait_ready()
    want = sorted(node_id(k) for k in nodes)
    wait_until(lambda: all(live_nodes(k) == want for k in nodes), 20, "all three live")
    wait_until(
        lambda: all(set(states(k).values()) == {1} and len(states(k)) == N_DEST for k in nodes),
        15, "every destination UP on every node",
    )  # fmt: skip
    return nodes


class Sampler(threading.Thread):
    """Polls the healthy nodes' states and the faulty node's RPC latency until stopped."""

    def __init__(self, healthy: list[Kamailio], faulty: Kamailio | None) -> None:
        super().__init__(daemon=True)
        self.healthy, self.faulty = healthy, faulty
        self.not_up: list[tuple[str, str, int]] = []
        self.rpc_s: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for kam in self.healthy:
                for uri, state in states(kam).items():
                    if state != 1:
                        self.not_up.append((node_id(kam), uri, state))
            if self.faulty is not None:
                for args in (("keepalive.get", "sip:192.0.2.1", "x"), ("keepalive.list", "0", "5")):
                    start = time.monotonic()
                    self.faulty.kamcmd(*args, timeout=30)
                    self.rpc_s.append(time.monotonic() - start)
            time.sleep(0.1)


def owned_by(kam: Kamailio, who: Kamailio, uris: list[str]) -> list[str]:
    out = []
    for uri in uris:
        m = re.search(r"probed by: (\S+)", kam.kamcmd("keepalive.cluster", uri))
        if m and m.group(1) == node_id(who):
            out.append(uri)
    return out


def counted_out(healthy: list[Kamailio]) -> float:
    """When every healthy node counts only the healthy ones live."""
    want = sorted(node_id(k) for k in healthy)
    wait_until(lambda: all(live_nodes(k) == want for k in healthy), 15, "counted out")
    return time.monotonic()


def check_takeover(farm: PortFarm, uris: list[str], out_at: float) -> float:
    """Every destination the lost node probed gets an OPTIONS within one interval of the
    node being counted out; returns the latest first ping after that moment."""
    ports = {int(u.rsplit(":", 1)[1]) for u in uris}
    first: dict[int, float] = {}
    for a in farm.received(out_at):
        if a.port in ports and a.port not in first:
            first[a.port] = a.mono
    missing = ports - set(first)
    assert not missing, f"{len(missing)} destinations never pinged after the takeover"
    worst = max(first.values()) - out_at
    assert worst <= INTERVAL_S, f"a destination waited {worst:.2f} s after the count-out"
    return worst


def check_healthy_nodes(tmp_path: Path, sampler: Sampler) -> None:
    """No DOWN event on the two healthy nodes, and nothing but UP in what they listed."""
    false_down = [down_events(tmp_path / f"events{i}.jsonl") for i in (0, 1)]
    assert false_down == [[], []], (
        f"false DOWN events on healthy nodes: {[len(f) for f in false_down]}, "
        f"first {false_down[0][:2] + false_down[1][:2]}"
    )
    assert not sampler.not_up, f"healthy nodes reported not UP: {sampler.not_up[:10]}"


def check_gaps(farm: PortFarm, fault: float, out_at: float) -> float:
    """The longest time a destination went without an OPTIONS, from an interval before the
    fault on: at most the last ping before it (an interval), the count-out, one interval
    more.  Returns it."""
    gaps = farm.max_gap(fault - INTERVAL_S, time.monotonic())
    longest = max(gaps.values())
    bound = 2 * INTERVAL_S + (out_at - fault) + 0.5
    assert longest <= bound, f"a destination went {longest:.2f} s"
    return longest


def test_a_node_that_loses_its_link_never_makes_the_others_report_down(
    kamailio_factory: KamailioFactory, lan: Lan, tmp_path: Path, monkeypatch
) -> None:
    farm = PortFarm(lan.gateway, N_DEST)
    try:
        a, b, c = start_lan_cluster(kamailio_factory, lan, farm, tmp_path, monkeypatch)
        theirs = owned_by(a, c, farm.uris)
        sampler = Sampler([a, b], c)
        sampler.start()
        cut = time.monotonic()
        lan.hosts[2].link_down()
        try:
            out_at = counted_out([a, b])
            time.sleep(max(0.0, cut + CUT_S - time.monotonic()))
        finally:
            lan.hosts[2].link_up()
        healed = time.monotonic()
        want = sorted(node_id(k) for k in (a, b, c))
        wait_until(lambda: all(live_nodes(k) == want for k in (a, b, c)), 20, "rejoined")
        wait_until(lambda: set(states(c).values()) == {1}, 10, "the cut node sees UP again")
        time.sleep(2 * INTERVAL_S)
        sampler.stop.set()
        sampler.join(timeout=30)
        worst = check_takeover(farm, theirs, out_at)
        check_healthy_nodes(tmp_path, sampler)
        slowest = max(sampler.rpc_s)  # 1.8-3.8 s before kemi.udp_gate
        assert slowest < 0.5, f"the cut node's RPC took {slowest:.2f} s"
        longest = check_gaps(farm, cut, out_at)
        print(
            f"counted out {out_at - cut:.2f} s after the cut; takeover within {worst:.2f} s; "
            f"rejoined {time.monotonic() - healed:.1f} s after heal; cut node RPC max "
            f"{slowest * 1000:.0f} ms over {len(sampler.rpc_s)} calls; max gap "
            f"{longest:.2f} s"
        )
    finally:
        farm.close()


def test_a_frozen_node_is_taken_over_within_an_interval_and_rejoins_without_false_down(
    kamailio_factory: KamailioFactory, lan: Lan, tmp_path: Path, monkeypatch
) -> None:
    farm = PortFarm(lan.gateway, N_DEST)
    try:
        a, b, c = start_lan_cluster(kamailio_factory, lan, farm, tmp_path, monkeypatch)
        theirs = owned_by(a, c, farm.uris)
        pids = c.pids()
        sampler = Sampler([a, b], None)
        sampler.start()
        stopped = time.monotonic()
        try:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            out_at = counted_out([a, b])
            time.sleep(max(0.0, stopped + CUT_S - time.monotonic()))
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        want = sorted(node_id(k) for k in (a, b, c))
        wait_until(lambda: all(live_nodes(k) == want for k in (a, b, c)), 20, "rejoined")
        time.sleep(2 * INTERVAL_S)
        sampler.stop.set()
        sampler.join(timeout=30)
        worst = check_takeover(farm, theirs, out_at)
        check_healthy_nodes(tmp_path, sampler)
        assert set(states(c).values()) == {1}, "the thawed node sees every destination UP"
        check_gaps(farm, stopped, out_at)
        print(f"counted out {out_at - stopped:.2f} s after SIGSTOP; takeover within {worst:.2f} s")
    finally:
        farm.close()
