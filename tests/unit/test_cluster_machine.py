"""The cluster machine in virtual time, no Kamailio: failover, takeover after a freeze, the
replication of adds and deletes, late messages from a node counted out, and the release of a
state held while this node was cut off.  Nodes meet over ``tests.unit.cluster_link``."""

from __future__ import annotations

import json

import pytest

from ka_core.cluster.codec import (
    Entry,
    Heartbeat,
    SetMessage,
    StateItem,
    StateMessage,
    decode,
    encode_entries,
    encode_heartbeat,
    encode_states,
)
from ka_core.cluster.hashing import owner
from ka_core.cluster.machine import TAKEOVER_S
from ka_core.cluster.outputs import ERR, WARN, DmqReply
from ka_core.events import StateChanged
from ka_core.state import State
from ka_core.store import registry
from ka_core.uri import parse_uri
from tests.unit.cluster_link import Link, Node, make_node, states_sent

A, B, C = "10.0.0.1:5060", "10.0.0.2:5060", "10.0.0.3:5060"
URIS = [f"sip:10.9.0.{i}" for i in range(1, 31)]


def key(uri: str) -> str:
    return parse_uri(uri).key


def formed(
    *names: str, uris: list[str] = URIS, interval_s: int = 1, mode: str = "distributed"
) -> Link:
    """Nodes that met, with ``uris`` added on the first and replicated to all."""
    link = Link([make_node(n, mode, interval_s) for n in names])
    first = link.nodes[0]
    for uri in uris:
        registry.add(first.table, uri, "t", interval_s=None, wall=link.wall())
    link.run_until(lambda: all(n.machine.live == tuple(sorted(names)) for n in link.nodes))
    link.run(1.0)
    for n in link.nodes:
        assert sorted(r.uri for r in n.table.records()) == sorted(uris), n.name
    return link


def pinged(n: Node, since: float) -> set[str]:
    return {p.uri for t, p in n.pings if t >= since}


def test_each_destination_has_one_prober_and_the_others_see_its_state() -> None:
    link = formed(A, B, C)
    since = link.now
    link.run(1.5)
    for n in link.nodes:
        mine = {u for u in URIS if owner(key(u), [A, B, C]) == n.name}
        assert mine and pinged(n, since) == mine, n.name
        assert n.machine.probing() == len(mine)
    for n in link.nodes:  # every node holds every state, measured by its prober
        assert {registry.state_of(n.table, u) for u in URIS} == {State.UP}, n.name


def test_a_node_that_stops_is_counted_out_and_its_share_expedited() -> None:
    link = formed(A, B, C, interval_s=5)  # without the takeover, up to 5 s unprobed
    a, b, c = link.nodes
    share = {u for u in URIS if owner(key(u), [A, B, C]) == C}
    c.running = c.linked = False  # killed: no heartbeat, nothing sent
    took = link.run_until(lambda: a.machine.live == b.machine.live == (A, B))
    assert took <= 3 * 0.2 + 0.5, "three missed heartbeats, one poll"
    assert any(f"cluster: live nodes {A} {B} (were {A} {B} {C})" in t for t in a.logs())
    out_at = link.now - 0.1
    link.run(TAKEOVER_S + 0.1)
    for n in (a, b):
        gained = {u for u in share if owner(key(u), [A, B]) == n.name}
        assert gained and gained <= pinged(n, out_at), f"{n.name} within TAKEOVER_S"
    since = link.now
    link.run(5.5)
    assert pinged(a, since) | pinged(b, since) == set(URIS)
    assert not pinged(a, since) & pinged(b, since), "one prober each"


def test_mode_all_probes_everything_on_every_node_and_takes_nothing_over() -> None:
    link = formed(A, B, mode="all")
    a, b = link.nodes
    since = link.now
    link.run(1.5)
    assert pinged(a, since) == pinged(b, since) == set(URIS)
    assert a.machine.probing() == len(URIS) and not any(
        a.machine.skips(slot, gen) for slot, (gen, _, _) in a.machine.ownership.slots.items()
    )
    b.running = b.linked = False
    link.run_until(lambda: a.machine.live == (A,))
    since = link.now
    link.run(1.5)
    assert pinged(a, since) == set(URIS)


def test_a_frozen_node_is_taken_over_and_its_stale_timeouts_never_reach_the_others() -> None:
    link = formed(A, B, C)
    a, b, c = link.nodes
    share = {u for u in URIS if owner(key(u), [A, B, C]) == C}
    link.run_until(lambda: bool(c.unanswered))
    c.running = False  # SIGSTOP: messages to it queue up, its pings in flight go unanswered
    link.run_until(lambda: a.machine.live == (A, B))
    out_at = link.now - 0.1
    link.run(TAKEOVER_S + 0.1)
    assert share <= pinged(a, out_at) | pinged(b, out_at)
    link.run(2.0)
    before = len(c.outs)
    c.running = True  # SIGCONT: its in-flight pings time out at once
    link.run_until(lambda: a.machine.live == b.machine.live == c.machine.live == (A, B, C))
    link.run(2.0)
    assert c.machine.trust.trusted
    timeouts = [e for e in c.events if isinstance(e, StateChanged) and e.new is State.DOWN]
    assert timeouts, "the frozen node saw its pings time out"
    downs = [
        (uri, ts) for o in c.outs[before:] for uri, st, ts in _states(o.bcasts)
        if st == int(State.DOWN)
    ]  # fmt: skip
    assert downs == [], "the timeouts of the frozen node are its own, never the cluster's"
    for n in (a, b):
        assert {registry.state_of(n.table, u) for u in URIS} == {State.UP}, n.name


def _states(bodies: list[bytes]) -> list[tuple[str, int, float]]:
    return [
        (s.uri, s.state, s.ts)
        for b in bodies
        if isinstance(m := decode(b), StateMessage)
        for s in m.states
    ]


def _entries(bodies: list[bytes]) -> list[Entry]:
    return [e for b in bodies if isinstance(m := decode(b), SetMessage) for e in m.entries]


def test_local_adds_and_deletes_go_out_as_set_entries_and_are_not_echoed() -> None:
    a, b = make_node(A), make_node(B)
    registry.add(a.table, "sip:10.9.1.1", "t", interval_s=2, wall=1000.0, settings="down_after=2")
    registry.add(a.table, "sip:10.9.1.2", "t", interval_s=None, wall=1000.0)
    _, out = a.machine.before(a.table.drain(), [], 1.0, 1000.5)
    assert out.bcasts == [] and out.sends == [], "sent after the step, in one message"
    after = a.machine.after([], 1.0, 1000.5)
    e1, e2 = _entries(after.bcasts)
    assert (e1.uri, e1.present, e1.settings, e1.interval_ms) == (
        "sip:10.9.1.1",
        True,
        "down_after=2",
        2000,
    )
    assert (e2.uri, e2.interval_ms, e2.origin) == ("sip:10.9.1.2", 0, A)
    events, got = b.machine.before(b.table.drain(), after.bcasts, 1.0, 1000.6)
    assert got.wake and events == []
    assert sorted(r.uri for r in b.table.records()) == ["sip:10.9.1.1", "sip:10.9.1.2"]
    b.machine.before(b.table.drain(), [], 1.1, 1000.7)
    assert _entries(b.machine.after([], 1.1, 1000.7).bcasts) == [], "B does not send it back"
    registry.remove(a.table, "sip:10.9.1.1", "t")
    a.table.flush()
    a.machine.before(a.table.drain(), [], 1.2, 1000.8)
    deletes = a.machine.after([], 1.2, 1000.8).bcasts
    tombstones = sorted((e.key, e.present) for e in _entries(deletes))
    assert tombstones == [(key("sip:10.9.1.1"), False), (key("sip:10.9.1.2"), False)]
    b.machine.before(b.table.drain(), deletes, 1.3, 1000.9)
    assert list(b.table.records()) == []


def test_a_delete_whose_slot_a_replicated_add_reused_first_still_goes_out() -> None:
    """A SIP worker deletes X (its ring entry waits for the next step) while the step
    applies B's add of Y, which takes X's freed slot: X's tombstone must still go out, or
    the other nodes keep X for ever."""
    a, b = make_node(A), make_node(B)
    registry.add(a.table, "sip:10.9.1.1", "t", interval_s=None, wall=1000.0)
    a.machine.before(a.table.drain(), [], 1.0, 1000.1)
    b.machine.before(b.table.drain(), a.machine.after([], 1.0, 1000.1).bcasts, 1.0, 1000.1)
    registry.add(b.table, "sip:10.9.1.2", "t", interval_s=None, wall=1000.2)
    b.machine.before(b.table.drain(), [], 1.1, 1000.2)
    y_add = b.machine.after([], 1.1, 1000.2).bcasts
    x_slot = a.table.find(key("sip:10.9.1.1"), "t")
    registry.remove(a.table, "sip:10.9.1.1", "t")  # a worker's delete, not drained yet
    a.machine.before([], y_add, 1.2, 1000.3)
    assert a.table.find(key("sip:10.9.1.2"), "t") == x_slot, "the freed slot was reused"
    a.machine.before(a.table.drain(), [], 1.3, 1000.4)
    deletes = a.machine.after([], 1.3, 1000.4).bcasts
    assert [(e.key, e.present) for e in _entries(deletes)] == [(key("sip:10.9.1.1"), False)]
    b.machine.before(b.table.drain(), deletes, 1.4, 1000.5)
    assert sorted(r.uri for r in b.table.records()) == ["sip:10.9.1.2"]


def test_a_state_a_node_measured_while_counted_out_is_dropped_even_when_it_arrives_late() -> None:
    link = formed(A, B, C)
    a, _b, c = link.nodes
    uri = next(u for u in URIS if owner(key(u), [A, B, C]) == B)  # A never probes it

    def from_c(ts: float) -> list[bytes]:
        return encode_states(C, [StateItem(key(uri), uri, "t", int(State.DOWN), ts)])

    c.running = c.linked = False
    link.run_until(lambda: a.machine.live == (A, B))
    measured_out = link.wall()
    assert a.machine.before([], from_c(measured_out), link.now, link.wall())[0] == []
    c.running = c.linked = True
    link.run_until(lambda: a.machine.live == (A, B, C))
    link.run(0.5)
    late = a.machine.before([], from_c(measured_out), link.now, link.wall())[0]
    assert late == [] and registry.state_of(a.table, uri) is State.UP, "held in a queue: dropped"
    (change,) = a.machine.before([], from_c(link.wall()), link.now, link.wall())[0]
    assert isinstance(change, StateChanged) and (change.old, change.new) == (State.UP, State.DOWN)
    assert registry.state_of(a.table, uri) is State.DOWN


def test_a_peers_up_does_not_lift_this_nodes_ejection() -> None:
    """Passive health is local: this node's calls failed there, a peer's probe saying UP
    leaves the ejection (and ka_is_alive's 4) until it ends by its own rules."""
    link = formed(A, B, C)
    a = link.nodes[0]
    uri = next(u for u in URIS if owner(key(u), [A, B, C]) == B)  # A never probes it
    slot = a.table.find(key(uri), "t")
    gen = a.table.hot(slot)[0]
    held = (True, 1, int(link.wall()) + 60, False)
    change = a.table.write_state(slot, gen, State.DOWN, link.wall(), code=503, ejected=held)
    assert isinstance(change, StateChanged) and change.new is State.DOWN

    def from_b(state: State) -> list[bytes]:
        later = link.wall() + 1.0  # measured after the ejection
        return encode_states(B, [StateItem(key(uri), uri, "t", int(state), later)])

    assert a.machine.before([], from_b(State.UP), link.now, link.wall())[0] == []
    rec = a.table.read(slot)
    assert rec.state is State.DOWN and rec.ejected
    other = next(u for u in URIS if u != uri and owner(key(u), [A, B, C]) == B)
    items = [StateItem(key(other), other, "t", int(State.DOWN), link.wall() + 1.0)]
    (change,) = a.machine.before([], encode_states(B, items), link.now, link.wall())[0]
    assert change.uri == other and change.new is State.DOWN, "others' reports still apply"


def test_a_change_held_while_cut_off_goes_out_with_the_first_trusted_measurement() -> None:
    link = formed(A, B, uris=["sip:10.9.3.1"])
    a, b = link.nodes
    uri = "sip:10.9.3.1"
    prober = a if owner(key(uri), [A, B]) == A else b
    other = b if prober is a else a
    prober.linked = False  # its link cut both ways
    link.run_until(lambda: not prober.machine.trust.trusted)
    prober.reply_code = 503  # the destination fails while the prober is cut off
    link.run_until(lambda: registry.state_of(prober.table, uri) is State.DOWN)
    assert prober.machine.trust.held == {(key(uri), "t")}
    assert not [s for s in states_sent(prober) if s[1] == int(State.DOWN)], "held"
    cut_sent = len(prober.outs)
    prober.linked = True
    link.run_until(lambda: prober.machine.trust.trusted and not prober.machine.trust.held)
    sent = [s for o in prober.outs[cut_sent:] for s in _states(o.bcasts)]
    assert (uri, int(State.DOWN)) in [(u, st) for u, st, _ in sent]
    link.run_until(lambda: registry.state_of(other.table, uri) is State.DOWN, limit_s=2.0)


def test_bad_queued_messages_cost_one_message_and_are_logged() -> None:
    a = make_node(A)
    good = encode_heartbeat(Heartbeat(B, 1, "0" * 16, 0, 0, "distributed"))
    events, out = a.machine.before([], [b"{", good], 1.0, 1000.0)
    assert events == [] and (a.machine.bad, a.machine.received) == (1, 1)
    assert out.logs[0][0] == WARN and "dropping a bad queued message" in out.logs[0][1]
    assert B in a.machine.members.peers


def test_a_failing_apply_is_logged_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_node(A)

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(a.machine, "_heartbeat", broken)
    good = encode_heartbeat(Heartbeat(B, 1, "0" * 16, 0, 0, "distributed"))
    _, out = a.machine.before([], [good], 1.0, 1000.0)
    ((level, text),) = out.logs
    assert level == ERR and "applying a message failed" in text and "RuntimeError: boom" in text
    assert a.machine.bad == 1


def test_another_mode_is_announced_once_per_node() -> None:
    a = make_node(A)
    hb = encode_heartbeat(Heartbeat(B, 1, "0" * 16, 0, 0, "all"))
    _, out = a.machine.before([], [hb], 1.0, 1000.0)
    assert out.announce == [
        (f"mode-{B}", f"cluster: node {B} runs KA_CLUSTER_MODE all, this one distributed")
    ]


def test_an_entry_the_table_cannot_take_is_logged_and_retried_later() -> None:
    a = make_node(A)
    for i in range(64):
        registry.add(a.table, f"sip:10.8.0.{i}", "t", interval_s=None, wall=1.0)
    uri = "sip:10.9.4.1:5060"
    body = encode_entries(B, [Entry(key(uri), uri, "t", True, 1000.0, B)])
    _, out = a.machine.before([], body, 1.0, 1000.0)
    ((level, text),) = out.logs
    assert level == WARN and text.startswith(f"cluster: cannot apply {uri} owner t:")
    assert a.machine.replica.get(key(uri), "t") is None, "not taken: the next dump retries"


def test_dmq_is_polled_twice_a_second_and_an_unreadable_list_changes_nothing() -> None:
    a = make_node(A)
    assert a.machine.wants_dmq_nodes(1.0)
    reply = {"result": [{"host": "10.0.0.2", "port": 5060, "status": "disabled"}]}
    out = a.machine.after([], 1.0, 1000.0, DmqReply(json.dumps(reply)))
    assert not a.machine.wants_dmq_nodes(1.4) and a.machine.wants_dmq_nodes(1.5)
    assert a.machine.next_deadline() == pytest.approx(1.0 + 0.2)
    a.machine.after([], 1.5, 1000.5, DmqReply(None))
    a.machine.after([], 1.6, 1000.6, DmqReply("not json"))
    assert a.machine.members.dmq == {B: "disabled"}
    assert out.status is not None and json.loads(out.status)["peers"][0]["dmq"] == "disabled"


def test_status_is_published_on_change_and_every_second_only() -> None:
    a = make_node(A)
    assert a.machine.after([], 1.0, 1000.0).status is not None
    assert a.machine.after([], 1.1, 1000.1).status is None
    assert a.machine.after([], 1.2, 1000.2).status is not None, "a heartbeat more was sent"
    assert a.machine.after([], 1.25, 1000.25).status is None
    doc = json.loads(a.machine.after([], 2.25, 1001.25).status or b"")
    assert (doc["node"], doc["mode"], doc["channel"], doc["live"]) == (
        A,
        "distributed",
        "keepalive",
        [A],
    )
