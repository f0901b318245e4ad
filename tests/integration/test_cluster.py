"""Cluster mode (docs/cluster.md) with three real Kamailio nodes joined by dmq, each on its
own loopback address (one in a network namespace for the link-cut and partition tests), and
real SIP peers that count the OPTIONS they receive."""

from __future__ import annotations

import collections
import itertools
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import Kamailio, free_udp_tcp_port
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
    url = f"http://{nodes[1].ip}:{nodes[1].port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    assert "kamailio_keepalive_cluster_live_nodes 3\n" in text
    probing = re.findall(r'^kamailio_keepalive_cluster_probing\{node="[^"]+"\} (\d+)$', text, re.M)
    assert sorted(map(int, probing)) == sorted(
        sum(prober_of(nodes[1], u) == node_id(k) for u in uris) for k in nodes
    )


def test_adds_and_deletes_from_script_rpc_and_api_reach_every_node(
    kamailio_factory: KamailioFactory, peers: list[ScriptedUAS], tmp_path
) -> None:
    nodes = start_cluster(kamailio_factory)
    a, b, c, d = uris_of(peers)[:4]
    assert result_of(nodes[0], "ka_add_destination", a, "t") == "1"
    assert "added" in nodes[1].kamcmd("keepalive.add", b, "t", "interval=2;alive=2xx,404")
    out = str(tmp_path / "cb.jsonl")
    assert result_of(nodes[2], "api_add_destination", c, "t", 1, out) == "0"
    assert result_of(nodes[2], "ka_add_destination", d, "t") == "1"
    wait_until(lambda: all(listed(k) == {a, b, c, d} for k in nodes), 3, "adds replicated")
    info = nodes[0].kamcmd("keepalive.info", b, "t")
    assert "settings: interval=2;alive=2xx,404" in info, info
    assert "ping interval ms: 2000" in info
    assert "Destination removed" in nodes[0].kamcmd("keepalive.del", a, "t")
    assert result_of(nodes[1], "api_del_destination", c, "t") == "0"
    assert result_of(nodes[2], "ka_del_destination", d, "t") == "1"
    wait_until(lambda: all(listed(k) == {b} for k in nodes), 3, "deletes replicated")
    nodes[1].kamcmd("keepalive.flush")
    wait_until(lambda: all(listed(k) == set() for k in nodes), 3, "flush replicated")


def test_a_state_change_reaches_every_node_within_a_second(
    kamailio_factory: KamailioFactory, peers: list[ScriptedUAS]
) -> None:
    nodes = start_cluster(kamailio_factory, defines={"KA_PING_TIMEOUT_MS": 500})
    uris = uris_of(peers)
    for uri in uris:
        assert result_of(nodes[0], "ka_add_destination", uri, "t") == "1"
    wait_until(lambda: all(states(k, uris) == [1] * 6 for k in nodes), 6, "UP everywhere")
    lags = []
    for uri, uas in zip(uris, peers, strict=True):
        uas.answer(503)
        prober = next(k for k in nodes if node_id(k) == prober_of(nodes[0], uri))
        wait_until(lambda u=uri, p=prober: state_of(p, u) == 2, 3, f"{uri} DOWN on its prober")
        seen = time.monotonic()
        others = [k for k in nodes if k is not prober]
        lags.append(
            wait_until(lambda u=uri, o=others: all(state_of(k, u) == 2 for k in o), 2, "DOWN")
        )
        for kam in nodes:
            assert result_of(kam, "ka_is_alive", uri) == "2"
        assert time.monotonic() - seen < 2
    assert max(lags) < 1.0, lags


def busiest(candidates: Cluster, asked: Kamailio, uris: list[str]) -> Kamailio:
    """The candidate that probes the most of ``uris`` (at least one)."""
    counts = collections.Counter(prober_of(asked, u) for u in uris)
    best = max(candidates, key=lambda k: counts[node_id(k)])
    assert counts[node_id(best)], counts
    return best


def _pids(kam: Kamailio) -> list[int]:
    pids = kam.pids()
    assert pids, kam.log()
    return pids


def _first_options_after(uas: ScriptedUAS, when: float, source: str) -> float | None:
    times = [r.mono for r in uas.received("OPTIONS") if r.mono > when and r.source[0] == source]
    return min(times) if times else None


def _max_gap(uas: ScriptedUAS, start: float, end: float) -> float:
    times = sorted({round(r.mono, 2) for r in uas.received("OPTIONS") if start <= r.mono <= end})
    edges = [start, *times, end]
    return max(b - a for a, b in itertools.pairwise(edges))


def test_a_killed_node_is_taken_over_then_restarts_and_syncs(
    kamailio_factory: KamailioFactory, peers: list[ScriptedUAS]
) -> None:
    nodes = start_cluster(kamailio_factory)
    uris = uris_of(peers)
    for uri in uris:
        assert result_of(nodes[0], "ka_add_destination", uri, "t") == "1"
    wait_until(lambda: all(states(k, uris) == [1] * 6 for k in nodes), 5, "UP everywhere")
    victim = busiest(nodes[1:], nodes[0], uris)
    survivors = [k for k in nodes if k is not victim]
    theirs = [i for i, u in enumerate(uris) if prober_of(nodes[0], u) == node_id(victim)]
    pids = _pids(victim)
    killed = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert victim.proc is not None
    victim.proc.wait(timeout=5)
    excluded = killed + wait_live(survivors, survivors, timeout=10)
    time.sleep(2.5)
    for i in theirs:
        first = min(
            t
            for k in survivors
            if (t := _first_options_after(peers[i], excluded - 0.05, k.ip)) is not None
        )
        assert first - excluded <= 1.2, f"{uris[i]} taken over {first - excluded:.2f} s late"
        assert _max_gap(peers[i], killed, time.monotonic()) <= 1.0 + (excluded - killed) + 0.4
    print(f"excluded {excluded - killed:.2f} s after kill -9")
    # new destinations and a delete while it is down, then it comes back
    extra = uris[0].replace(str(peers[0].port), str(peers[0].port + 1))
    assert result_of(survivors[0], "ka_add_destination", extra, "t") == "1"
    assert result_of(survivors[1], "ka_del_destination", uris[1], "t") == "1"
    want = (set(uris) - {uris[1]}) | {extra}
    victim.start(wait=False)
    victim.wait_ready()
    ready = time.monotonic()
    try:
        synced = wait_until(lambda: listed(victim) == want, 5, "restarted node synced")
    except AssertionError as exc:
        got = listed(victim)
        views = "\n".join(cluster_info(k) for k in nodes)
        raise AssertionError(f"{exc}: extra {got - want}, missing {want - got}\n{views}") from None
    assert synced <= 2.0, f"sync took {synced:.2f} s after start"
    wait_live(nodes, nodes)
    back = time.monotonic()
    time.sleep(2.2)
    mine = [i for i, u in enumerate(uris) if prober_of(victim, u) == node_id(victim)]
    mine = [i for i in mine if i != 1]
    for i in mine:
        got = senders(peers[i], since=back + 1.1)
        assert set(got) == {victim.ip}, f"{uris[i]}: {dict(got)}"
    print(f"synced {synced:.2f} s after ready at {ready - killed:.1f}")


def test_a_frozen_node_is_taken_over_and_rejoins_after_sigcont(
    kamailio_factory: KamailioFactory, peers: list[ScriptedUAS]
) -> None:
    nodes = start_cluster(kamailio_factory)
    uris = uris_of(peers)
    for uri in uris:
        assert result_of(nodes[1], "ka_add_destination", uri, "t") == "1"
    wait_until(lambda: all(states(k, uris) == [1] * 6 for k in nodes), 5, "UP everywhere")
    frozen = busiest(nodes, nodes[1], uris)
    others = [k for k in nodes if k is not frozen]
    theirs = [i for i, u in enumerate(uris) if prober_of(nodes[1], u) == node_id(frozen)]
    target = uris[theirs[0]]
    pids = _pids(frozen)
    stopped = time.monotonic()
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        excluded = stopped + wait_live(others, others, timeout=10)
        time.sleep(2.2)
        for i in theirs:
            got = senders(peers[i], since=excluded + 1.05)
            assert got and set(got) <= {k.ip for k in others}, f"{uris[i]}: {dict(got)}"
        peers[theirs[0]].answer(503)
        wait_until(lambda: all(state_of(k, target) == 2 for k in others), 3, "DOWN on the others")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    print(f"frozen node excluded {excluded - stopped:.2f} s after SIGSTOP")
    wait_live(nodes, nodes, timeout=20)
    wait_until(lambda: state_of(frozen, target) == 2, 6, "the thawed node learns the state")


def _kdmq(
    kam: Kamailio, body: bytes, source_ip: str, channel: str = "keepalive"
) -> tuple[int, str]:
    """A KDMQ request from ``source_ip``; (status code, reason)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.bind((source_ip, 0))
        port = sock.getsockname()[1]
        head = (
            f"KDMQ sip:{channel}@{kam.ip}:{kam.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source_ip}:{port};branch=z9hG4bK{os.urandom(6).hex()};rport\r\n"
            f"From: <sip:{channel}@{source_ip}:{port}>;tag=1\r\n"
            f"To: <sip:{channel}@{kam.ip}:{kam.port}>\r\n"
            f"Call-ID: {os.urandom(8).hex()}@test\r\nCSeq: 1 KDMQ\r\nMax-Forwards: 1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendto(head.encode() + body, (kam.ip, kam.port))
        data = sock.recv(65535).decode(errors="replace")
    first = data.split("\r\n", 1)[0].split(" ", 2)
    return int(first[1]), first[2] if len(first) > 2 else ""


def test_kdmq_from_a_non_node_or_with_a_bad_body_is_refused(
    kamailio_factory: KamailioFactory, peers: list[ScriptedUAS]
) -> None:
    nodes = start_cluster(kamailio_factory)
    uri = uris_of(peers)[0]
    assert result_of(nodes[0], "ka_add_destination", uri, "t") == "1"
    wait_until(lambda: all(listed(k) == {uri} for k in nodes), 3, "replicated")
    victim, node = nodes[1], nodes[0]
    me = node_id(node)
    delete = f'{{"v":1,"t":"set","n":"{me}","e":[["{uri}","t",0,4000000000.0,"{me}","",0]]}}'
    stranger = "127.0.21.99"
    assert _kdmq(victim, delete.encode(), stranger)[0] == 403  # a valid delete, from no node
    hostile = [
        b"not json",
        f'{{"v":1,"t":"set","n":"{me}","e":[["sip:x;evil=1","t",0,1.0,"{me}","",0]]}}'.encode(),
        f'{{"v":1,"t":"set","n":"{me}","e":[["{uri}","t",1,1.0,"{me}","socket=x",0]]}}'.encode(),
        f'{{"v":1,"t":"st","n":"{me}","s":[["{uri}","t",7,1.0]]}}'.encode(),
        f'{{"v":1,"t":"hb","n":"{me}","q":1,"h":"zz","c":0,"p":0,"m":"all"}}'.encode(),
        f'{{"v":1,"t":"set","n":"{me}","e":['.encode() + b"[" * 5000 + b"]" * 5000,
        b'{"v":2,"t":"hb"}',
        b"\xff\xfe",
    ]
    for body in hostile:
        assert _kdmq(victim, body, node.ip)[0] in (400, 413), body[:60]
    # a node's address, but claiming to be another node
    spoof = delete.replace(me, node_id(nodes[2])).encode()
    assert _kdmq(victim, spoof, node.ip)[0] == 403
    # another channel is dmq's business (an unknown one: 404 from dmq)
    assert _kdmq(victim, b"x", node.ip, channel="nochannel")[0] in (404, 202, 200)
    time.sleep(0.5)
    assert all(listed(k) == {uri} for k in nodes)
    assert "KDMQ refused with 403 from 127.0.21.99: not a dmq node" in victim.log()
    wait_live(nodes, nodes)


def test_adds_and_deletes_racing_on_two_nodes_converge(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    nodes = start_cluster(kamailio_factory)
    host = uas_factory().host
    uris = [f"sip:{host}:{40000 + i}" for i in range(30)]

    # node 0 adds each destination while node 1 deletes it and adds it back with settings
    def adder() -> None:
        for uri in uris:
            nodes[0].kamcmd("keepalive.add", uri, "t")

    def fighter() -> None:
        for uri in uris:
            nodes[1].kamcmd("keepalive.del", uri, "t")
            nodes[1].kamcmd("keepalive.add", uri, "t", "alive=2xx,404")

    threads = [threading.Thread(target=adder), threading.Thread(target=fighter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def view(kam: Kamailio) -> dict[str, str]:
        out = kam.kamcmd("keepalive.info")
        rows = re.findall(r"uri: (\S+)\n.*?settings: ([^\n]*)", out, re.S)
        return dict(rows)

    def converged() -> bool:
        views = [view(k) for k in nodes]
        return views[0] == views[1] == views[2]

    took = wait_until(converged, 8, "the same destinations and settings on every node")
    digests = {re.search(r"digest: (\w+)", cluster_info(k)).group(1) for k in nodes}  # type: ignore[union-attr]
    assert len(digests) == 1, digests
    assert set(view(nodes[0])) == set(uris), "every destination was re-added last by node 1"
    print(f"converged {took:.2f} s after the race")


@pytest.mark.netns
def test_link_cut_partition_each_side_probes_and_converges_on_heal(
    kamailio_factory: KamailioFactory, uas_factory, netns_host_factory, monkeypatch
) -> None:
    """Node C runs in a network namespace; cutting its link splits {A, B} from {C}."""
    from tests.harness import kamailio as harness

    version = subprocess.run(
        [*harness.kamailio_command(), "-v"], capture_output=True, text=True, check=False
    ).stdout
    if re.search(r"kamailio [6-9]\.", version):
        pytest.skip(
            "A and B share the veth's one root-side address (a /30): on Kamailio 6.x dmq then "
            "never lists one of them (observed on 6.0.1; 5.6.3 tells them apart by port)"
        )

    host = netns_host_factory()
    a = kamailio_factory(start=False, ip=host.gateway, port=free_udp_tcp_port(host.gateway))
    b = kamailio_factory(start=False, ip=host.gateway, port=free_udp_tcp_port(host.gateway))
    c = kamailio_factory(start=False, ip=host.address, port=5060)
    nodes = [a, b, c]
    for kam in nodes:
        kam.defines.update(cluster_defines(kam, a))
    a.start(wait=False)
    b.start(wait=False)
    command = harness.kamailio_command()  # the version matrix's chroot too: same Kamailio
    with monkeypatch.context() as patch:
        patch.setattr(
            harness, "kamailio_command", lambda: ["ip", "netns", "exec", host.name, *command]
        )
        c.start(wait=False)
    for kam in nodes:
        kam.wait_ready()
    wait_live(nodes, nodes)
    peers = [uas_factory(host=host.gateway) for _ in range(6)]
    uris = uris_of(peers)
    for uri in uris[:5]:
        assert result_of(a, "ka_add_destination", uri, "t") == "1"
    wait_until(lambda: all(states(k, uris[:5]) == [1] * 5 for k in nodes), 6, "UP everywhere")
    cut = time.monotonic()
    host.link_down()
    try:
        split = wait_live([a, b], [a, b], timeout=10)
        wait_live([c], [c], timeout=10)
        time.sleep(2.2)
        for uas in peers[:5]:  # the majority side probes everything it can reach
            got = senders(uas, since=cut + split + 1.1)
            assert got and set(got) == {host.gateway}, dict(got)
        # C still probes (it sees nobody else), but its pings cannot leave: DOWN there
        wait_until(lambda: states(c, uris[:5]) == [2] * 5, 4, "C sees its destinations DOWN")
        assert states(a, uris[:5]) == [1] * 5
        # each side changes the set meanwhile
        assert result_of(a, "ka_add_destination", uris[5], "t") == "1"
        assert "Destination removed" in c.kamcmd("keepalive.del", uris[0], "t")
    finally:
        host.link_up()
    healed = time.monotonic()
    joined = wait_live(nodes, nodes, timeout=20)
    want = set(uris[1:])
    took = wait_until(lambda: all(listed(k) == want for k in nodes), 5, "the same set after heal")
    conv = wait_until(
        lambda: all(states(k, uris[1:]) == [1] * 5 for k in nodes), 10, "UP everywhere again"
    )
    print(
        f"partition seen after {split:.2f} s; rejoined {joined:.2f} s after heal; "
        f"set converged +{took:.2f} s, states +{conv:.2f} s"
    )
    assert time.monotonic() - healed < 30


def test_mode_all_every_node_probes_and_destinations_are_still_shared(
    kamailio_factory: KamailioFactory, peers: list[ScriptedUAS]
) -> None:
    nodes = start_cluster(kamailio_factory, defines={"KA_CLUSTER_MODE": "all"})
    uris = uris_of(peers)[:2]
    for uri in uris:
        assert result_of(nodes[2], "ka_add_destination", uri, "t") == "1"
    wait_until(lambda: all(states(k, uris) == [1, 1] for k in nodes), 5, "UP everywhere")
    start = time.monotonic()
    time.sleep(2.2)
    for uas in peers[:2]:
        assert set(senders(uas, since=start)) == {k.ip for k in nodes}
    assert "probed by: every node" in nodes[0].kamcmd("keepalive.cluster", uris[0])
    peers[0].answer(503)
    wait_until(lambda: all(state_of(k, uris[0]) == 2 for k in nodes), 3, "DOWN everywhere")
