"""ka_core's cluster pieces: rendezvous hashing, the message codec and its checks, the
last-writer-wins replica, membership, the shared inbox and the keepalive.cluster view."""

from __future__ import annotations

import contextlib
import json
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ka_core.cluster.codec import (
    CHUNK_BYTES,
    MAX_BODY_BYTES,
    BadMessage,
    Entry,
    Heartbeat,
    SetMessage,
    StateItem,
    StateMessage,
    decode,
    encode_entries,
    encode_heartbeat,
    encode_states,
    node_host,
    node_id,
)
from ka_core.cluster.hashing import digest_text, entry_hash, owner, weight
from ka_core.cluster.inbox import Inbox, inbox_size
from ka_core.cluster.members import Membership, parse_dmq_nodes
from ka_core.cluster.replica import TOMBSTONE_S, Replica
from ka_core.cluster.status import rpc_view
from ka_core.errors import RpcFault

A, B, C = "10.0.0.1:5060", "10.0.0.2:5060", "10.0.0.3:5060"
KEYS = [f"sip:10.1.{i // 250}.{i % 250}:5060" for i in range(3000)]


# -- hashing -----------------------------------------------------------------------------------


def test_owner_is_spread_evenly_and_stable() -> None:
    counts = {n: 0 for n in (A, B, C)}
    for key in KEYS:
        counts[owner(key, [A, B, C])] += 1
    assert all(800 < c < 1200 for c in counts.values()), counts
    assert owner(KEYS[0], [C, B, A]) == owner(KEYS[0], [A, B, C])  # order does not matter


def test_a_node_leaving_moves_only_its_own_destinations() -> None:
    before = {k: owner(k, [A, B, C]) for k in KEYS}
    after = {k: owner(k, [A, B]) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved and all(before[k] == C for k in moved)
    assert all(after[k] == before[k] for k in KEYS if before[k] != C)


def test_owner_needs_a_node() -> None:
    with pytest.raises(ValueError):
        owner("k", [])
    assert weight(A, "k") != weight(B, "k")
    assert digest_text(entry_hash("k", "o", 1.5)) != digest_text(entry_hash("k", "o", 1.25))


# -- codec -------------------------------------------------------------------------------------


def entry(uri: str = "sip:10.9.0.1", present: bool = True, ts: float = 100.0, origin: str = A,
          **kw: object) -> Entry:  # fmt: skip
    key = node_key(uri)
    return Entry(key, uri, "t", present, ts, origin, **kw)  # type: ignore[arg-type]


def node_key(uri: str) -> str:
    from ka_core.uri import parse_uri

    return parse_uri(uri).key


def test_messages_round_trip() -> None:
    hb = Heartbeat(A, 7, "0123456789abcdef", 3, 1, "distributed")
    assert decode(encode_heartbeat(hb)) == hb
    entries = [entry(), entry("sip:10.9.0.2", False, 5.0, B), entry(
        "sip:10.9.0.3;transport=tcp", settings="down_after=3;alive=2xx,404", interval_ms=2000,
        state=1, state_ts=99.5)]  # fmt: skip
    (body,) = encode_entries(A, entries)
    assert decode(body) == SetMessage(A, tuple(entries))
    states = [StateItem(node_key("sip:10.9.0.1"), "sip:10.9.0.1", "t", 2, 12.5)]
    (body,) = encode_states(B, states)
    assert decode(body) == StateMessage(B, tuple(states))


def test_large_sets_are_cut_into_chunks_that_all_decode() -> None:
    entries = [entry(f"sip:10.9.{i // 250}.{i % 250}") for i in range(2000)]
    bodies = encode_entries(A, entries)
    assert len(bodies) > 1
    assert all(len(b) < CHUNK_BYTES + 400 for b in bodies)
    got = [e for b in bodies for e in decode(b).entries]  # type: ignore[union-attr]
    assert got == entries


def test_node_ids_are_canonical() -> None:
    assert node_id("sip:10.0.0.1") == "10.0.0.1:5060"
    assert node_id("10.0.0.1:5070") == "10.0.0.1:5070"
    assert node_id("[::1]:5060") == "[::1]:5060" and node_host("[::1]:5060") == "::1"
    for bad in ("sip:u@10.0.0.1", "sips:10.0.0.1", "10.0.0.1;transport=tcp", 5, "", None):
        with pytest.raises(BadMessage):
            node_id(bad)


BAD_BODIES = [
    b"x" * (MAX_BODY_BYTES + 1),
    b"\xff",
    b"[1]",
    b"{}",
    b'{"v":1,"t":"zz","n":"10.0.0.1:5060"}',
    b'{"v":true,"t":"hb","n":"10.0.0.1:5060"}',
    b'{"v":1,"t":"hb","n":"10.0.0.1:5060","q":1,"h":"0123456789abcdef","c":0,"p":0,"m":"x"}',
    b'{"v":1,"t":"hb","n":"10.0.0.1:5060","q":-1,"h":"0123456789abcdef","c":0,"p":0,"m":"all"}',
    b'{"v":1,"t":"hb","n":"10.0.0.1:5060","q":1,"h":"0123456789ABCDEF","c":0,"p":0,"m":"all"}',
    b'{"v":1,"t":"hb","n":"10.0.0.1:5060","q":1,"h":"0123456789abcdef","c":0,"p":0,"m":"all",'
    b'"x":1}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[1]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","t",1,1.0,"10.0.0.1:5060",""]]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","",1,1.0,"10.0.0.1:5060","",0]]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","t",2,1.0,"10.0.0.1:5060","",0]]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","t",1,NaN,"10.0.0.1:5060","",0]]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","t",1,1e20,"10.0.0.1:5060","",0]]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","t",1,1.0,"10.0.0.1:5060","x=1",0]]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","t",1,1.0,"10.0.0.1:5060",7,0]]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","t",1,1.0,"10.0.0.1:5060","",5]]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","t",1,1.0,"bad node","",0]]}',
    b'{"v":1,"t":"set","n":"10.0.0.1:5060","e":[["sip:h","t",1,1.0,"10.0.0.1:5060","",0,9,1.0]]}',
    b'{"v":1,"t":"st","n":"10.0.0.1:5060","s":[["sip:h","t",1]]}',
    b'{"v":1,"t":"st","n":"10.0.0.1:5060","s":[["sip:h","t",true,1.0]]}',
    b'{"v":1,"t":"st","n":"10.0.0.1:5060","s":[["http://h","t",1,1.0]]}',
    b'{"v":1,"t":"st","n":"10.0.0.1:5060","s":' + b"[" * 10000 + b"]" * 10000 + b"}",
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_bodies_raise_bad_message(body: bytes) -> None:
    with pytest.raises(BadMessage):
        decode(body)


@given(st.binary(max_size=300))
def test_decode_never_raises_anything_else(body: bytes) -> None:
    with contextlib.suppress(BadMessage):
        decode(body)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=4), max_leaves=20),
       st.sampled_from(["hb", "set", "st"]))  # fmt: skip
def test_any_json_under_a_valid_header_is_checked(payload: object, kind: str) -> None:
    doc = {"v": 1, "t": kind, "n": A, "e": payload, "s": payload}
    if kind == "set":
        del doc["s"]
    elif kind == "st":
        del doc["e"]
    with contextlib.suppress(BadMessage):
        decode(json.dumps(doc).encode())


# -- replica -----------------------------------------------------------------------------------


def test_last_writer_wins_in_any_order() -> None:
    ops = [entry(ts=1.0), entry(present=False, ts=2.0, origin=B), entry(ts=2.0, origin=A),
           entry(ts=1.5, origin=C)]  # fmt: skip
    results = set()
    for order in (ops, ops[::-1], ops[1:] + ops[:1]):
        r = Replica()
        for op in order:
            if r.wins(op):
                r.put(op)
        got = r.get(op.key, "t")
        assert got is not None
        results.add((got.present, got.ts, got.origin, r.digest, r.present))
    # (2.0, "10.0.0.2:5060") beats (2.0, "10.0.0.1:5060"): the delete wins everywhere
    assert results == {(False, 2.0, B, digest_text(0), 0)}


def test_local_operations_win_on_their_node_and_digest_follows_the_set() -> None:
    r = Replica()
    r.put(entry(ts=50.0, origin=B))
    first = r.digest
    mine = r.local(entry(present=False, ts=10.0, origin=A))  # a clock behind the other node
    assert mine.ts > 50.0 and r.wins(mine)
    r.put(mine)
    assert r.present == 0 and r.digest == digest_text(0) != first
    back = r.local(entry(ts=mine.ts + 5))
    r.put(back)
    assert r.present == 1 and r.digest != digest_text(0)


def test_tombstones_are_forgotten_after_their_lifetime_and_stale_ones_ignored() -> None:
    r = Replica()
    r.put(entry(present=False, ts=100.0))
    r.put(entry("sip:10.9.0.2", ts=100.0))
    assert r.forget_tombstones(100.0 + TOMBSTONE_S - 1) == 0
    assert r.forget_tombstones(100.0 + TOMBSTONE_S + 1) == 1
    assert r.get(node_key("sip:10.9.0.1"), "t") is None
    assert r.is_stale_tombstone(entry(present=False, ts=1.0), 2.0 + TOMBSTONE_S)
    assert not r.is_stale_tombstone(entry(ts=1.0), 2.0 + TOMBSTONE_S)
    assert len(list(r.entries())) == 1


# -- membership --------------------------------------------------------------------------------


def hb(node: str, digest: str = "0" * 16, mode: str = "distributed") -> Heartbeat:
    return Heartbeat(node, 1, digest, 0, 0, mode)


def test_a_peer_is_live_while_it_beats_and_agrees() -> None:
    m = Membership(A, timeout_s=1.0, grace_s=1.0)
    assert m.live(0.0) == (A,)
    assert m.heard(hb(B), now=0.0, my_digest="0" * 16)  # new: wants a dump
    assert not m.heard(hb(B), now=0.5, my_digest="0" * 16)
    assert m.live(0.6) == (A, B)
    assert m.live(1.6) == (A,) and m.status(B, 1.6) == "silent"
    assert m.heard(hb(B), now=5.0, my_digest="0" * 16)  # back after silence: a dump again
    # a different set: still live during the grace period, then out until it agrees
    m.heard(hb(B, "1" * 16), now=5.5, my_digest="0" * 16)
    assert m.live(5.9) == (A, B)
    m.heard(hb(B, "1" * 16), now=6.2, my_digest="0" * 16)
    assert m.status(B, 6.2) == "syncing" and m.live(6.2) == (A,)
    m.recheck(now=6.3, my_digest="1" * 16)
    assert m.live(6.3) == (A, B)


def test_dmq_status_counts_too() -> None:
    m = Membership(A, timeout_s=1.0, grace_s=1.0)
    m.heard(hb(B), now=0.0, my_digest="0" * 16)
    m.heard(hb(C), now=0.0, my_digest="0" * 16)
    body = json.dumps({"result": [
        {"host": "10.0.0.2", "port": "5060", "status": "active", "local": 0},
        {"host": "10.0.0.3", "port": "5060", "status": "disabled", "local": 0},
        {"host": "10.0.0.1", "port": "5060", "status": "active", "local": 1},
        {"host": "10.0.0.1", "port": "", "status": "active", "local": 0},
    ]})  # fmt: skip
    nodes = parse_dmq_nodes(body)
    assert nodes is not None and len(nodes) == 4
    m.set_dmq(nodes)
    assert m.live(0.1) == (A, B)
    assert m.status(C, 0.1) == "dmq-disabled"
    assert m.known() == [A, B, C]
    m.set_dmq(None)  # unreadable: the last list stays
    assert m.live(0.1) == (A, B)
    for bad in (None, "", "{", '{"result": 5}', '{"result": [{"port": 1}]}'):
        assert parse_dmq_nodes(bad) is None
    m.forget(100.0, 10.0)
    assert m.peers == {}


# -- inbox -------------------------------------------------------------------------------------


def test_inbox_queues_wraps_and_refuses_when_full() -> None:
    inbox = Inbox(bytearray(inbox_size(1024)), threading.Lock())
    assert inbox.drain() == []
    for round_ in range(20):  # messages wrap around the ring's end
        msgs = [bytes([round_]) * n for n in (100, 300, 1)]
        assert all(inbox.push(m) for m in msgs)
        assert inbox.drain() == msgs
    assert inbox.push(b"x" * 1000)
    assert not inbox.push(b"y" * 100)
    assert inbox.drain() == [b"x" * 1000]
    inbox.publish(b'{"a": 1}')
    assert inbox.status() == b'{"a": 1}'
    with pytest.raises(ValueError):
        Inbox(bytearray(inbox_size(10)), threading.Lock())


# -- keepalive.cluster -------------------------------------------------------------------------


def status_doc(mode: str = "distributed") -> bytes:
    return json.dumps({
        "node": A, "mode": mode, "channel": "keepalive", "live": [A, B], "digest": "0" * 16,
        "destinations": 2, "probing": 1, "heartbeat_ms": 1000, "sent": 5, "received": 4,
        "bad": 0, "peers": [{"node": B, "status": "live", "dmq": "active", "heard_s": 0.2,
                             "digest": "0" * 16, "count": 2, "probing": 1, "mode": mode}],
    }).encode()  # fmt: skip


def test_rpc_view_lists_nodes_and_who_probes_a_uri() -> None:
    me, peer = rpc_view(status_doc(), [])
    assert isinstance(me, dict) and me["live nodes"] == f"{A} {B}" and me["this node"] == 1
    assert isinstance(peer, dict) and peer["status"] == "live" and peer["this node"] == 0
    (who,) = rpc_view(status_doc(), ["10.9.0.1"])
    assert isinstance(who, dict) and who["probed by"] == owner("sip:10.9.0.1:5060", [A, B])
    (who,) = rpc_view(status_doc("all"), ["10.9.0.1"])
    assert isinstance(who, dict) and who["probed by"] == "every node"
    with pytest.raises(RpcFault, match="invalid destination"):
        rpc_view(status_doc(), ["http://x"])
    with pytest.raises(RpcFault, match="not published"):
        rpc_view(b"", [])


# -- configuration -----------------------------------------------------------------------------


def test_cluster_parameters_are_checked() -> None:
    from ka_core.config.kaconfig import load_config
    from ka_core.errors import InvalidArgument

    on = load_config({"CLUSTER": "1", "DMQ_SERVER": '"sip:10.0.0.1:5070"'})
    assert (on.cluster, on.dmq_server, on.cluster_mode, on.cluster_channel) == (
        1, "10.0.0.1:5070", "distributed", "keepalive",
    )  # fmt: skip
    assert load_config({}).cluster == 0
    bad = [
        ({"CLUSTER": "1"}, "dmq_server: needed"),
        ({"CLUSTER": "1", "DMQ_SERVER": "sip:h", "DNS": "1"}, "not supported together"),
        ({"CLUSTER": "2", "DMQ_SERVER": "sip:h"}, "cluster"),
        ({"DMQ_SERVER": "sips:h"}, "dmq_server"),
        ({"CLUSTER_MODE": "some"}, "cluster_mode"),
        ({"CLUSTER_CHANNEL": "a b"}, "cluster_channel"),
        ({"CLUSTER_HEARTBEAT_MS": "50"}, "cluster_heartbeat_ms"),
    ]
    for defines, message in bad:
        with pytest.raises(InvalidArgument, match=message):
            load_config(defines)
