"""ka_core.cluster.trust in virtual time: a node cut off, frozen or not yet counted in keeps
its results to itself, and results from nodes counted out never override measured states."""

from __future__ import annotations

import threading

from ka_core.cluster.codec import Heartbeat, StateItem, decode, encode_heartbeat
from ka_core.cluster.members import Membership
from ka_core.cluster.trust import STALL_S, Trust
from ka_core.events import StateChanged
from ka_core.state import State
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import parse_uri

ME, B, C = "10.0.0.1:5060", "10.0.0.2:5060", "10.0.0.3:5060"
WALL0 = 1_000_000.0


def step(trust: Trust, t: float, live: list[str], seen_by=None, known: int = 2, heard=None):
    views = seen_by if seen_by is not None else {p: (ME, p) for p in live}
    return trust.observe(
        now=t, wall=WALL0 + t, known_peers=known, live_peers=live, seen_by=views,
        last_heard=heard,
    )  # fmt: skip


def formed(settle: float = 1.0) -> Trust:
    trust = Trust(ME, settle_s=settle)
    for t in (0.0, 0.5):
        step(trust, t, [B, C])
    return trust


def test_a_node_alone_by_design_publishes_everything() -> None:
    trust = Trust(ME, settle_s=1.0)
    assert step(trust, 0.0, [], known=0) is None
    assert trust.publishable(WALL0) and trust.trusted


def test_a_cut_off_node_publishes_nothing_measured_from_its_last_heartbeat_on() -> None:
    trust = formed()
    for t in (1.0, 1.5, 2.0):
        step(trust, t, [B, C], heard=t)
    # the link goes at 2.1; the peers are counted out at 3.6 (three heartbeats)
    line = step(trust, 3.6, [], heard=2.0)
    assert line is not None and "cut off" in line
    assert not trust.trusted
    assert not trust.publishable(WALL0 + 1.9), "nothing is sent while cut off"
    assert not trust.provisional(WALL0 + 1.9), "measured before the cut: true"
    assert trust.provisional(WALL0 + 2.5), "a timeout seen before the count-out"
    assert trust.provisional(WALL0 + 3.6)
    # healed at 8: the peers are live again and count this node in
    line = step(trust, 8.0, [B, C], heard=8.0)
    assert line is not None and "counted in again" in line
    assert not trust.publishable(WALL0 + 8.5), "within one ping timeout after: provisional"
    assert trust.publishable(WALL0 + 9.1)
    assert trust.publishable(WALL0 + 1.9)
    assert not trust.publishable(WALL0 + 5.0), "measured while cut off: never sent"


def test_live_peers_that_still_count_this_node_out_keep_it_untrusted() -> None:
    trust = formed()
    step(trust, 1.0, [B, C], seen_by={B: (B, C), C: (B, C)})
    assert not trust.trusted
    step(trust, 1.5, [B, C], seen_by={B: (B, C, ME), C: (B, C)})
    assert trust.trusted, "one live node counting it in is enough"


def test_peers_that_do_not_send_their_view_count_this_node_in() -> None:
    trust = Trust(ME, settle_s=1.0)
    step(trust, 0.0, [B], seen_by={B: None})
    assert trust.trusted


def test_a_stall_of_the_loop_makes_what_was_measured_in_it_provisional() -> None:
    trust = formed(settle=1.0)
    step(trust, 1.0, [B, C])
    step(trust, 1.0 + STALL_S + 3.5, [B, C])  # SIGSTOP for 5 s, then the timeouts fire
    assert trust.trusted
    assert not trust.publishable(WALL0 + 1.0 + STALL_S + 3.5)
    assert not trust.publishable(WALL0 + 3.0)
    assert trust.publishable(WALL0 + 0.9)
    assert trust.publishable(WALL0 + 1.0 + STALL_S + 3.5 + 1.1)


def test_forming_the_cluster_is_not_logged_as_a_cut() -> None:
    trust = Trust(ME, settle_s=1.0)
    assert step(trust, 0.0, [], known=2) is None
    assert step(trust, 0.5, [B, C]) is None
    assert not trust.publishable(WALL0 + 0.2), "measured before anyone counted it in"


def test_states_from_nodes_counted_out_only_fill_what_was_never_measured() -> None:
    trust = formed()
    kw = {"ts": WALL0 + 5.0, "local_checked": WALL0 + 1.0}
    assert not trust.accepts(sender_live=False, local_state_known=True, **kw)
    assert trust.accepts(sender_live=False, local_state_known=False, **kw)
    assert trust.accepts(sender_live=True, local_state_known=True, **kw)
    older = {"ts": WALL0 + 0.5, "local_checked": WALL0 + 1.0}
    assert not trust.accepts(sender_live=True, local_state_known=True, **older)


def test_a_provisional_local_state_gives_way_to_a_live_node_even_if_older() -> None:
    trust = formed()
    step(trust, 1.0, [B, C], heard=1.0)
    step(trust, 2.5, [], heard=1.0)  # cut off
    local = WALL0 + 2.4
    assert trust.accepts(sender_live=True, ts=WALL0 + 2.0, local_state_known=True,
                         local_checked=local)  # fmt: skip
    assert not trust.accepts(sender_live=False, ts=WALL0 + 3.0, local_state_known=True,
                             local_checked=local)  # fmt: skip


def test_heartbeats_carry_the_live_set_and_membership_keeps_it() -> None:
    hb = Heartbeat(B, 7, "0" * 16, 3, 1, "distributed", (B, ME))
    back = decode(encode_heartbeat(hb))
    assert back == hb
    old = decode(encode_heartbeat(Heartbeat(B, 7, "0" * 16, 3, 1, "distributed")))
    assert isinstance(old, Heartbeat) and old.live is None
    members = Membership(ME, timeout_s=1.5, grace_s=1.5)
    members.heard(hb, now=0.0, my_digest="0" * 16)
    trust = Trust(ME, settle_s=1.0)
    trust.observe_members(members, (B, ME), now=0.0, wall=WALL0)
    assert trust.trusted
    members.heard(Heartbeat(B, 8, "0" * 16, 3, 1, "distributed", (B,)), now=0.5,
                  my_digest="0" * 16)  # fmt: skip
    trust.observe_members(members, (B, ME), now=0.5, wall=WALL0 + 0.5)
    assert not trust.trusted


def test_what_a_peer_measured_while_counted_out_is_dropped_even_when_it_arrives_late() -> None:
    members = Membership(ME, timeout_s=1.5, grace_s=1.5)
    trust = Trust(ME, settle_s=1.0)
    digest = "0" * 16
    members.heard(Heartbeat(C, 1, digest, 3, 1, "distributed", (C, ME)), now=0.0, my_digest=digest)
    trust.observe_members(members, (C, ME), now=0.0, wall=WALL0)
    trust.observe_members(members, (ME,), now=1.6, wall=WALL0 + 1.6)  # C counted out
    kw = {"sender_live": True, "local_state_known": True, "local_checked": WALL0 - 5}
    assert not trust.accepts(sender=C, ts=WALL0 + 0.5, **kw), "measured after C went quiet"
    assert trust.accepts(sender=C, ts=WALL0 - 0.5, **kw), "measured before: true"
    members.heard(Heartbeat(C, 2, digest, 3, 1, "distributed", (C, ME)), now=5.0, my_digest=digest)
    trust.observe_members(members, (C, ME), now=5.0, wall=WALL0 + 5.0)  # back
    assert not trust.accepts(sender=C, ts=WALL0 + 3.0, **kw), "queued during the cut"
    assert trust.accepts(sender=C, ts=WALL0 + 5.5, **kw)
    assert trust.accepts(sender=B, ts=WALL0 + 3.0, **kw), "only C's span"


def _table_with(uri: str) -> tuple[SharedTable, int, int]:
    buf = bytearray(buffer_size(4, 80))
    SharedTable.format_buffer(buf, 4, 80)
    table = SharedTable(buf, threading.Lock())
    slot, gen = table.insert(parse_uri(uri), "o", interval_ms=1000, wall=WALL0)
    return table, slot, gen


def test_a_change_measured_while_untrusted_goes_out_with_the_first_trusted_measurement() -> None:
    """Without this a stable state measured in the settle window reached the other nodes
    only at the next digest (5 s): seen as a CI flake, one node UNKNOWN for 5 s."""
    table, slot, gen = _table_with("10.9.9.9:5060")
    trust = Trust(ME, settle_s=1.0)
    step(trust, 0.0, [B, C], seen_by={B: (B,), C: (C,)})  # not counted in yet
    step(trust, 0.5, [B, C])  # counted in: provisional until 1.5
    table.set_state(slot, gen, State.UP, WALL0 + 0.6)
    up = StateChanged("sip:10.9.9.9:5060", "o", State.UNKNOWN, State.UP, None, None)
    assert trust.outgoing([up], WALL0 + 0.6, table) == []
    assert trust.outgoing([], WALL0 + 1.2, table) == []  # still settling, not re-measured
    assert trust.outgoing([], WALL0 + 1.8, table) == []  # trusted, but measured untrusted
    table.set_state(slot, gen, State.UP, WALL0 + 1.9)  # the next probe result
    (item,) = trust.outgoing([], WALL0 + 1.9, table)
    assert (item.uri, item.owner, item.state, item.ts) == ("sip:10.9.9.9:5060", "o", 1, WALL0 + 1.9)
    assert trust.outgoing([], WALL0 + 2.5, table) == [] and not trust.held


def test_a_held_change_of_a_deleted_destination_is_forgotten() -> None:
    table, _, _ = _table_with("10.9.9.8:5060")
    trust = Trust(ME, settle_s=1.0)
    step(trust, 0.0, [B, C], seen_by={B: (B,), C: (C,)})
    down = StateChanged("sip:10.9.9.8:5060", "o", State.UNKNOWN, State.DOWN, None, None)
    trust.outgoing([down], WALL0, table)
    assert trust.held
    table.remove(parse_uri("10.9.9.8:5060").key, "o")
    step(trust, 0.5, [B, C])
    assert trust.outgoing([], WALL0 + 3.0, table) == [] and not trust.held


def test_the_first_forming_of_the_cluster_is_not_reported_as_a_cut() -> None:
    trust = Trust(ME, settle_s=1.0)
    assert step(trust, 0.0, [], known=0) is None  # alone: the others are not up yet
    assert step(trust, 0.5, [], known=2) is None  # dmq knows them, none live yet
    assert step(trust, 1.0, [B, C]) is None


def test_a_held_change_a_digest_carried_is_not_sent_again() -> None:
    """The digest broadcasts the trusted states; a held change it carried is dropped, so
    the next trusted step does not publish it a second time."""
    table, slot, gen = _table_with("10.9.9.7:5060")
    trust = Trust(ME, settle_s=1.0)
    step(trust, 0.0, [B, C], seen_by={B: (B,), C: (C,)})
    step(trust, 0.5, [B, C])
    table.set_state(slot, gen, State.DOWN, WALL0 + 0.6)
    down = StateChanged("sip:10.9.9.7:5060", "o", State.UNKNOWN, State.DOWN, None, None)
    assert trust.outgoing([down], WALL0 + 0.6, table) == []
    key = parse_uri("10.9.9.7:5060").key
    other = StateItem("sip:other:5060", "sip:other:5060", "o", 2, WALL0)
    trust.covered([other])
    assert trust.held == {(key, "o")}, "only what the digest carried is dropped"
    trust.covered([StateItem(key, "sip:10.9.9.7:5060", "o", 2, WALL0 + 1.9)])
    table.set_state(slot, gen, State.DOWN, WALL0 + 1.9)
    assert not trust.held and trust.outgoing([], WALL0 + 1.9, table) == []
