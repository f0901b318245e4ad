"""Cluster mode's glue on FakeKsr/FakeCluster in virtual time: two nodes in one process,
their dmq messages carried by the test (an in-memory link), as h11's ConnectionPair does."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from ka_core.cluster.codec import node_host
from ka_core.cluster.hashing import owner
from ka_core.cluster.outputs import ClusterOut
from ka_core.state import State
from ka_core.store import registry
from kemi import cluster_receive, functions, pinger, runtime
from tests.unit.conftest import Glue, GlueFactory
from tests.unit.fake_cluster import FakeCluster

A, B = "10.0.0.1:5060", "10.0.0.2:5060"


@dataclass
class Node:
    glue: Glue
    port: FakeCluster
    pinger: pinger.Pinger
    name: str
    outbox: int = 0
    """How many of ``port.bcasts`` were delivered already."""

    @property
    def rt(self) -> runtime.Runtime:
        return self.glue.rt


def make_node(factory: GlueFactory, name: str, **defines: str) -> Node:
    glue = factory(
        KA_PING_INTERVAL="1", KA_PING_TIMEOUT_MS="500", KA_CLUSTER="1",
        KA_DMQ_SERVER=f"sip:{name}", KA_CLUSTER_HEARTBEAT_MS="200", **defines,
    )  # fmt: skip
    port = FakeCluster()
    assert glue.rt.cluster is not None
    glue.rt.cluster.port = port
    return Node(glue, port, pinger.Pinger(glue.rt), name)


def receive(node: Node, sender: str, body: str) -> tuple[int, str]:
    node.port.fields = ("KDMQ", "keepalive", node_host(sender))
    node.port.body = body.encode()
    assert cluster_receive.handle(node.rt) == 1
    return node.port.replies[-1]


def step(nodes: list[Node], now: float) -> None:
    """One pinger step on each node at ``now``, then carry every message sent."""
    for n in nodes:
        n.glue.clock.now = now
        n.rt.wake()
        n.pinger.run_once()
    for n in nodes:
        for other in nodes:
            if other is n:
                continue
            for _, body in n.port.bcasts[n.outbox :]:
                assert receive(other, n.name, body) == (200, "OK")
            for _, uri, body in n.port.sends:
                if uri == f"sip:{other.name}":
                    assert receive(other, n.name, body) == (200, "OK")
        n.outbox = len(n.port.bcasts)
        n.port.sends.clear()


def run(nodes: list[Node], start: float, end: float, dt: float = 0.1) -> None:
    t = start
    while t <= end + 1e-9:
        step(nodes, t)
        t = round(t + dt, 6)


@pytest.fixture
def pair(glue_factory: GlueFactory) -> list[Node]:
    nodes = [make_node(glue_factory, A), make_node(glue_factory, B)]
    run(nodes, 1000.0, 1000.5)
    return nodes


def listed(node: Node) -> dict[str, str]:
    return {r.uri: r.settings for r in node.rt.table.records()}


def live(node: Node) -> list[str]:
    (me, *_) = node.rt.commands.call("keepalive.cluster", [])
    assert isinstance(me, dict)
    return str(me["live nodes"]).split()


def test_nodes_meet_and_adds_deletes_and_flush_replicate(pair: list[Node]) -> None:
    a, b = pair
    assert live(a) == live(b) == [A, B]
    registry.add(a.rt.table, "sip:10.9.0.1", "t", interval_s=None, wall=a.rt.wall())
    a.rt.commands.call("keepalive.add", ["sip:10.9.0.2", "t", "alive=2xx,404"])
    run(pair, 1000.6, 1000.8)
    assert listed(b) == {"sip:10.9.0.1": "", "sip:10.9.0.2": "alive=2xx,404"} == listed(a)
    sets = [json.loads(body) for _, body in b.port.bcasts if '"t":"set"' in body]
    assert sets == [], "B does not send back what it applied"
    b.rt.commands.call("keepalive.del", ["sip:10.9.0.1", "t"])
    run(pair, 1000.9, 1001.0)
    assert list(listed(a)) == ["sip:10.9.0.2"]
    a.rt.commands.call("keepalive.flush", [])
    run(pair, 1001.1, 1001.2)
    assert listed(b) == {}
    digests = {
        dict(r)["digest"] for n in pair for r in [n.rt.commands.call("keepalive.cluster", [])[0]]
    }  # type: ignore[call-overload]
    assert len(digests) == 1


def test_each_destination_is_pinged_by_its_owner_only_and_states_are_shared(
    pair: list[Node],
) -> None:
    a, b = pair
    uris = [f"sip:10.9.1.{i}" for i in range(1, 21)]
    for uri in uris:
        registry.add(a.rt.table, uri, "t", interval_s=None, wall=a.rt.wall())
    run(pair, 1000.6, 1003.0)
    for node, _other in ((a, b), (b, a)):
        sent = {ruri for ruri, _, _ in node.glue.ksr.sent}
        mine = {u for u in uris if owner(f"{u}:5060", [A, B]) == node.name}
        assert mine and sent == mine, f"{node.name} pinged {len(sent)}, owns {len(mine)}"
    # answer b's pings with 200: b changes them to UP and a learns it
    for ruri, _, callid in b.glue.ksr.sent:
        b.glue.ksr.reply = (callid, 200, ruri.removeprefix("sip:"))
        pinger.on_reply(b.rt)
    run(pair, 1003.1, 1003.2)
    b_owned = [u for u in uris if owner(f"{u}:5060", [A, B]) == B]
    on_b = [registry.state_of(b.rt.table, u) for u in b_owned]
    assert State.UP in on_b and [registry.state_of(a.rt.table, u) for u in b_owned] == on_b
    assert any(t.endswith("DOWN -> UP") for t in a.glue.ksr.texts("info")), "logged on a too"
    # an older measurement from elsewhere changes nothing
    cluster = a.pinger._cluster
    assert cluster is not None
    key = f"{b_owned[0]}:5060"
    assert cluster.machine._apply_state(key, "t", int(State.DOWN), 1.0, B) == []


def test_a_silent_peer_is_out_after_three_heartbeats_and_its_share_is_taken_over(
    pair: list[Node],
) -> None:
    a, _b = pair
    uris = [f"sip:10.9.2.{i}" for i in range(1, 11)]
    for uri in uris:
        registry.add(a.rt.table, uri, "t", interval_s=None, wall=a.rt.wall())
    run(pair, 1000.6, 1001.5)
    a.glue.ksr.sent.clear()
    b_owned = {u for u in uris if owner(f"{u}:5060", [A, B]) == B}
    t = 1001.6
    while live(a) != [A]:  # b says nothing any more
        run([a], t, t)
        t = round(t + 0.1, 1)
    out = t
    a.glue.ksr.sent.clear()
    run([a], out, out + 0.5)  # taken over within TAKEOVER_S, not at their own phase
    assert b_owned and {r for r, _, _ in a.glue.ksr.sent} >= b_owned
    run([a], out + 0.6, out + 1.5)
    assert {r for r, _, _ in a.glue.ksr.sent} == set(uris)
    assert any("cluster: live nodes 10.0.0.1:5060 (were" in t for t in a.glue.ksr.texts())


def test_a_new_peer_gets_a_full_dump_with_states(glue_factory: GlueFactory) -> None:
    a = make_node(glue_factory, A)
    registry.add(a.rt.table, "sip:10.9.3.1", "t", interval_s=None, wall=a.rt.wall())
    registry.add(a.rt.table, "sip:10.9.3.2", "t", interval_s=2, wall=a.rt.wall())
    registry.remove(a.rt.table, "sip:10.9.3.2", "t")
    registry.add(a.rt.table, "sip:10.9.3.3", "t", interval_s=2, wall=a.rt.wall())
    run([a], 1000.0, 1000.2)
    slot = a.rt.table.find("sip:10.9.3.1:5060")
    gen = a.rt.table.hot(slot)[0]
    a.rt.table.set_state(slot, gen, State.DOWN, a.rt.wall())
    b = make_node(glue_factory, B)
    run([a, b], 1000.3, 1000.8)
    assert listed(b) == {"sip:10.9.3.1": "", "sip:10.9.3.3": ""}
    assert b.rt.table.read(b.rt.table.find("sip:10.9.3.3:5060")).interval_ms == 2000
    assert registry.state_of(b.rt.table, "sip:10.9.3.1") is State.DOWN
    assert live(a) == live(b) == [A, B]


def test_a_winning_entry_with_other_settings_replaces_the_destination(pair: list[Node]) -> None:
    a, b = pair
    registry.add(a.rt.table, "sip:10.9.4.1", "t", interval_s=None, wall=a.rt.wall())
    run(pair, 1000.6, 1000.7)
    registry.remove(b.rt.table, "sip:10.9.4.1", "t")
    registry.add(b.rt.table, "sip:10.9.4.1", "t", interval_s=None, wall=b.rt.wall() + 1,
                 settings="down_after=2")  # fmt: skip
    run(pair, 1000.8, 1000.9)
    assert listed(a) == {"sip:10.9.4.1": "down_after=2"}


def test_receive_refuses_strangers_bad_bodies_and_impostors(pair: list[Node]) -> None:
    _a, b = pair
    port, rt = b.port, b.rt
    body = '{"v":1,"t":"st","n":"10.0.0.1:5060","s":[["sip:10.9.5.1","t",1,5.0]]}'
    port.from_node = False
    assert receive(b, A, body)[0] == 403
    port.from_node = True
    assert receive(b, A, "{")[0] == 400
    assert receive(b, A, "x" * 70000)[0] == 413
    port.body = None
    assert cluster_receive.handle(rt) == 1 and port.replies[-1][0] == 400
    assert receive(b, "10.0.0.3:5060", body)[0] == 403  # from 10.0.0.3, claims 10.0.0.1
    assert receive(b, B, body.replace(A, B))[0] == 200  # its own echo: dropped quietly
    assert sum("KDMQ refused" in t for t in b.glue.ksr.texts("warn")) == 5
    port.fields = ("KDMQ", "dmq", "10.0.0.1")
    assert cluster_receive.handle(rt) == 1 and port.handled == 1
    port.fields = ("INVITE", None, "10.0.0.1")
    assert cluster_receive.handle(rt) == -1
    assert rt.cluster is not None
    for size in (60000, 1000, 10, 0):
        while rt.cluster.inbox.push(b"x" * size):
            pass
    assert receive(b, A, body)[0] == 503


def test_cluster_off_leaves_requests_alone_and_the_rpc_says_so(glue: Glue) -> None:
    assert glue.rt.cluster is None
    assert cluster_receive.handle(glue.rt) == -1
    with pytest.raises(Exception, match="cluster mode is off"):
        glue.rt.commands.call("keepalive.cluster", [])
    assert functions.ka_cluster_request() == -1


def test_mode_all_pings_everything_on_every_node(glue_factory: GlueFactory) -> None:
    nodes = [make_node(glue_factory, A, KA_CLUSTER_MODE="all"),
             make_node(glue_factory, B, KA_CLUSTER_MODE="all")]  # fmt: skip
    run(nodes, 1000.0, 1000.5)
    for i in range(1, 5):
        registry.add(nodes[0].rt.table, f"sip:10.9.6.{i}", "t", interval_s=None, wall=1.0)
    run(nodes, 1000.6, 1002.0)
    for node in nodes:
        assert len({r for r, _, _ in node.glue.ksr.sent}) == 4
    (_, peer) = nodes[0].rt.commands.call("keepalive.cluster", [])
    assert isinstance(peer, dict) and peer["mode"] == "all"
    (who,) = nodes[0].rt.commands.call("keepalive.cluster", ["sip:10.9.6.1"])
    assert isinstance(who, dict) and who["probed by"] == "every node"


def test_metrics_show_per_node_figures(pair: list[Node]) -> None:
    from kemi.metrics_http import exposition

    a, _ = pair
    registry.add(a.rt.table, "sip:10.9.7.1", "t", interval_s=None, wall=a.rt.wall())
    run(pair, 1000.6, 1001.6)
    text = exposition(a.rt)
    assert "kamailio_keepalive_cluster_live_nodes 2\n" in text
    assert f'kamailio_keepalive_cluster_node_live{{node="{B}",status="live"}} 1' in text
    assert f'kamailio_keepalive_cluster_destinations{{node="{B}"}} 1' in text
    probing = [
        ln for ln in text.splitlines() if ln.startswith("kamailio_keepalive_cluster_probing{")
    ]
    assert sorted(int(ln.split()[-1]) for ln in probing) == [0, 1]
    assert "# TYPE kamailio_keepalive_cluster_messages_sent_total counter" in text


def test_a_failing_dmq_send_is_logged_rate_limited(pair: list[Node]) -> None:
    a, b = pair
    a.port.rc = -1
    registry.add(a.rt.table, "sip:10.9.8.1", "t", interval_s=None, wall=a.rt.wall())
    run(pair, 1000.6, 1001.6)
    errors = [t for t in a.glue.ksr.texts("err") if "dmq broadcast failed" in t]
    assert len(errors) == 1, "once, not once per message"
    b.port.rc = -1
    cluster = b.pinger._cluster
    assert cluster is not None
    cluster.perform(ClusterOut(sends=[(A, b"{}")]))
    assert any(f"cluster: dmq send to {A} failed" in t for t in b.glue.ksr.texts("err"))
