"""Cluster mode in the pinger process: replicate destinations and states over dmq, and tell
the prober which destinations this node probes.

Theory of operation.  Everything runs in the pinger's core thread (``kemi.pinger``), the one
KSR caller there, around each prober step:

* ``before_step``: the shared ring's ``ADDED``/``REMOVED``/``FLUSHED`` entries are this
  node's adds and deletes (script, RPC, API, start-up list): each becomes a ``set`` entry,
  stamped and stored in the ``Replica`` (last writer wins) and broadcast.  Then the messages
  SIP workers queued (``kemi.cluster_receive``) are applied: heartbeats feed the
  ``Membership``; entries that win are written to the shared table (so every process sees
  them); states newer than the table's are written with ``set_state`` and become
  ``StateChanged`` events here (log line, callbacks), and the prober re-reads the record.
  Writes made here are remembered so their own ring entries are not broadcast back.
* ``skips`` (called by the prober for each due ping): True when, by rendezvous hashing over
  the live nodes, another node probes the destination (``KA_CLUSTER_MODE all``: never).
* ``after_step``: ``Trust`` (``ka_core.cluster.trust``) decides whether this node may
  publish; the step's state changes are broadcast (``st``; those measured while untrusted
  are held, and sent with the first trusted measurement); then the timers: a heartbeat
  every ``heartbeat_ms`` (digest, live set), dmq's node list twice a second, the states this
  node probes every ``DIGEST_S``, the status for ``keepalive.cluster`` every second.  A peer
  that is new, or whose digest differs, gets a full dump, at most once per ``DUMP_EVERY_S``.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator

from ka_core.cluster.codec import (
    BadMessage,
    Entry,
    Heartbeat,
    Message,
    SetMessage,
    StateItem,
    decode,
    encode_entries,
    encode_heartbeat,
    encode_states,
)
from ka_core.cluster.hashing import gained, owner
from ka_core.cluster.members import Membership, parse_dmq_nodes
from ka_core.cluster.replica import Replica
from ka_core.cluster.status import status_json
from ka_core.cluster.trust import Trust
from ka_core.errors import KaError
from ka_core.events import Event, StateChanged
from ka_core.probe.prober import Prober
from ka_core.probe.scheduler import on_grid
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.layout import FLAG_OWN_INTERVAL, FLAG_TARGET
from ka_core.store.ring import KIND_ADDED, KIND_FLUSHED, KIND_REMOVED, RingEntry
from kemi.cluster_port import ClusterRuntime
from kemi.runtime import Runtime

DMQ_POLL_S = 0.5
DIGEST_S = 5.0
DUMP_EVERY_S = 2.0
STATUS_S = 1.0
GC_S = 60.0
TAKEOVER_S = 0.5
TAKEOVER_RATE = 2000
"""Destinations taken over from a node that left are pinged within ``TAKEOVER_S``, or at
this many per second for a large share (half an interval at most)."""
MISSED_HEARTBEATS = 3
LIST_NODES = '{"jsonrpc":"2.0","method":"dmq.list_nodes","id":1}'


class Cluster:
    def __init__(self, rt: Runtime, cluster: ClusterRuntime) -> None:
        self._rt, self._c, self.me = rt, cluster, cluster.node
        self.members = Membership(
            self.me,
            timeout_s=MISSED_HEARTBEATS * cluster.heartbeat_s,
            grace_s=MISSED_HEARTBEATS * cluster.heartbeat_s,
        )
        self.replica = Replica()
        self.trust = Trust(self.me, settle_s=rt.config.ping_timeout_ms / 1000.0)
        self.live: tuple[str, ...] = (self.me,)
        self._epoch = 0
        self._prober: Prober | None = None
        self._slots: dict[int, tuple[int, str, str]] = {}
        """slot -> (gen, key, owner) of every destination in the table."""
        self._ours: set[tuple[int, int]] = set()
        """(slot, gen) this module inserted or deleted: their ring entries are not local ops."""
        self._owned: dict[int, tuple[int, int, bool]] = {}
        """slot -> (gen, epoch, skip): ``skips`` cached per live-set epoch."""
        self._out_entries: list[Entry] = []
        self._out_states: list[StateItem] = []
        self._dumped: dict[str, float] = {}
        self._next = {"hb": 0.0, "dmq": 0.0, "digest": 0.0, "status": 0.0, "gc": 0.0}
        self._seq = 0
        self.sent = self.received = self.bad = 0
        self._probing = 0
        self._changes = 0
        """Bumped when ``_slots`` changes: ``probing`` recounts only then."""
        self._probing_version = (-1, -1)
        self._shown: tuple[tuple[str, ...], str, int] = ((), "", -1)

    def attach(self, prober: Prober) -> None:
        self._prober = prober
        prober.skip = self.skips

    # -- the prober's question -----------------------------------------------------------

    def skips(self, slot: int, gen: int) -> bool:
        """True when another live node probes this destination."""
        if self._c.mode == "all" or len(self.live) == 1:
            return False
        hit = self._owned.get(slot)
        if hit is not None and hit[0] == gen and hit[1] == self._epoch:
            return hit[2]
        known = self._slots.get(slot)
        if known is None or known[0] != gen:
            return False  # not learnt yet: probe it (an overlap, never a gap)
        skip = owner(known[1], self.live) != self.me
        self._owned[slot] = (gen, self._epoch, skip)
        return skip

    # -- before the prober's step --------------------------------------------------------

    def before_step(self, entries: list[RingEntry], now: float, wall: float) -> list[Event]:
        for entry in entries:
            if entry.kind == KIND_ADDED:
                self._local_added(entry.slot, entry.gen)
            elif entry.kind == KIND_REMOVED:
                self._local_removed(entry.slot, entry.gen, wall)
            elif entry.kind == KIND_FLUSHED:
                self._local_flushed(wall)
        events: list[Event] = []
        for body in self._c.inbox.drain():
            try:
                message = decode(body)
            except BadMessage as exc:  # checked by the worker already: never in practice
                self.bad += 1
                self._rt.ksr.warn(f"cluster: dropping a bad queued message: {exc}")
                continue
            self.received += 1
            try:
                events.extend(self._apply(message, now, wall))
            except Exception:  # a bug must cost one message, not the pinger's loop
                self.bad += 1
                self._rt.ksr.err(f"cluster: applying a message failed: {traceback.format_exc()}")
        return events

    def _apply(self, message: Message, now: float, wall: float) -> list[Event]:
        events: list[Event] = []
        if isinstance(message, Heartbeat):
            self._heartbeat(message, now)
        elif isinstance(message, SetMessage):
            for item in message.entries:
                events.extend(self._apply_entry(item, wall, message.node))
        else:
            for state in message.states:
                events.extend(
                    self._apply_state(state.key, state.owner, state.state, state.ts, message.node)
                )
        return events

    def _local_added(self, slot: int, gen: int) -> None:
        table = self._rt.table
        if (slot, gen) in self._ours:
            self._ours.discard((slot, gen))
            return
        if not table.is_used(slot, gen) or table.flags(slot) & FLAG_TARGET:
            return
        rec = table.read(slot)
        self._slots[slot] = (gen, rec.key, rec.owner)
        self._changes += 1
        own = table.flags(slot) & FLAG_OWN_INTERVAL
        entry = Entry(
            rec.key, rec.uri, rec.owner, True, rec.added, self.me, rec.settings,
            rec.interval_ms if own else 0,
        )  # fmt: skip
        self._local(entry)

    def _local_removed(self, slot: int, gen: int, wall: float) -> None:
        if (slot, gen) in self._ours:
            self._ours.discard((slot, gen))
            return
        known = self._slots.get(slot)
        if known is None or known[0] != gen:
            return
        del self._slots[slot]
        self._changes += 1
        self._local(Entry(known[1], known[1], known[2], False, wall, self.me))

    def _local_flushed(self, wall: float) -> None:
        self._slots.clear()
        self._changes += 1
        for entry in self.replica.entries():
            if entry.present:
                self._local(Entry(entry.key, entry.key, entry.owner, False, wall, self.me))

    def _local(self, entry: Entry) -> None:
        entry = self.replica.local(entry)
        self.replica.put(entry)
        self._out_entries.append(entry)
        self.members.recheck(now=self._rt.monotonic(), my_digest=self.replica.digest)

    def _heartbeat(self, hb: Heartbeat, now: float) -> None:
        fresh = self.members.heard(hb, now=now, my_digest=self.replica.digest)
        if hb.mode != self._c.mode:
            self._rt.announce(
                f"mode-{hb.node}",
                f"cluster: node {hb.node} runs KA_CLUSTER_MODE {hb.mode}, this one {self._c.mode}",
            )
        peer = self.members.peers[hb.node]
        # a mismatch that outlives two heartbeats is not a message still in flight
        differs = now - peer.agreed > 2 * self._c.heartbeat_s
        last = self._dumped.get(hb.node, float("-inf"))
        if fresh or (differs and now - last >= DUMP_EVERY_S):
            self._dumped[hb.node] = now
            self._dump(hb.node)

    def _apply_entry(self, e: Entry, wall: float, sender: str) -> list[Event]:
        events: list[Event] = []
        if not self.replica.is_stale_tombstone(e, wall) and self.replica.wins(e):
            try:
                self._write(e)
            except KaError as exc:  # table full, a racing local add: the next dump retries
                self._rt.ksr.warn(f"cluster: cannot apply {e.uri} owner {e.owner}: {exc}")
                return events
            self.replica.put(e)
            self.members.recheck(now=self._rt.monotonic(), my_digest=self.replica.digest)
        if e.present and e.state >= 0:
            events.extend(self._apply_state(e.key, e.owner, e.state, e.state_ts, sender))
        return events

    def _write(self, e: Entry) -> None:
        """Make the shared table agree with a winning entry."""
        table = self._rt.table
        slot = table.find(e.key, e.owner)
        if slot >= 0:
            rec = table.read(slot)
            own = table.flags(slot) & FLAG_OWN_INTERVAL
            same = rec.settings == e.settings and (rec.interval_ms if own else 0) == e.interval_ms
            if e.present and same:
                return
            table.remove(e.key, e.owner)
            self._ours.add((slot, rec.gen))
            self._slots.pop(slot, None)
            self._changes += 1
        if not e.present:
            return
        rec = registry.add(
            table, e.uri, e.owner, interval_s=e.interval_ms / 1000.0 if e.interval_ms else None,
            wall=e.ts, settings=e.settings,
        )  # fmt: skip
        self._ours.add((rec.slot, rec.gen))
        self._slots[rec.slot] = (rec.gen, rec.key, rec.owner)
        self._changes += 1
        self._rt.wake()  # the prober schedules it at its next step, not after a long sleep

    def _apply_state(
        self, key: str, owner_name: str, state: int, ts: float, sender: str
    ) -> list[Event]:
        """Write another node's measurement when ``Trust`` accepts it; the change is an
        event here too."""
        table = self._rt.table
        slot = table.find(key, owner_name)
        if slot < 0:
            return []
        gen, _, current = table.hot(slot)
        if current == state:
            return []
        rec = table.read(slot)
        accepted = self.trust.accepts(
            sender=sender, sender_live=sender in self.live, ts=ts,
            local_state_known=rec.state != State.UNKNOWN, local_checked=rec.last_checked,
        )  # fmt: skip
        if not accepted or not table.set_state(slot, gen, State(state), ts):
            return []
        if self._prober is not None:
            self._prober.refresh(slot, gen)
        return [StateChanged(rec.uri, rec.owner, rec.state, State(state), rec.state_cb, rec.user)]

    # -- after the prober's step ----------------------------------------------------------

    def after_step(self, events: list[Event], now: float, wall: float) -> None:
        news = self.trust.observe_members(self.members, self.live, now=now, wall=wall)
        if news:
            self._rt.ksr.warn(news)
        self._out_states.extend(self.trust.outgoing(events, wall, self._rt.table))
        if self._out_entries:
            self._bcast(encode_entries(self.me, self._out_entries))
            self._out_entries = []
        if self._out_states:
            self._bcast(encode_states(self.me, self._out_states))
            self._out_states = []
        due = self._next
        if now >= due["dmq"]:
            due["dmq"] = now + DMQ_POLL_S
            self.members.set_dmq(parse_dmq_nodes(self._rt.ksr.jsonrpc_exec(LIST_NODES)[1]))
        live = self.members.live(now)
        if live != self.live:
            self._rt.ksr.info(f"cluster: live nodes {' '.join(live)} (were {' '.join(self.live)})")
            if set(self.live) - set(live):
                self._take_over(self.live, live, now)
            self.live, self._epoch = live, self._epoch + 1
            self._owned.clear()
            due["status"] = now  # keepalive.cluster shows it at once
        if now >= due["hb"]:
            due["hb"] = now + self._c.heartbeat_s
            self._send_heartbeat()
        if now >= due["digest"]:
            due["digest"] = now + DIGEST_S
            self._bcast(encode_states(self.me, list(self._my_states())))
        shown = (self.live, self.replica.digest, self.sent)
        if now >= due["status"] or shown != self._shown:
            due["status"], self._shown = now + STATUS_S, shown
            self._publish(now)
        if now >= due["gc"]:
            due["gc"] = now + GC_S
            self.replica.forget_tombstones(wall)
            self.members.forget(now, GC_S * 10)

    def _take_over(self, before: tuple[str, ...], after: tuple[str, ...], now: float) -> None:
        """A node left: ping what this node now owns soon (``TAKEOVER_S``) instead of at
        each destination's own phase (up to an interval later), so no destination waits an
        interval more than the time it took to count the node out."""
        if self._prober is None or self._c.mode == "all":
            return
        mine = gained(self._slots, before, after, self.me)
        spread = min(max(TAKEOVER_S, len(mine) / TAKEOVER_RATE), self._rt.table.ping_interval / 2)
        for i, (slot, gen) in enumerate(mine):
            self._prober.expedite(slot, gen, on_grid(now + spread * (i + 1) / len(mine)))

    def next_deadline(self) -> float:
        return min(self._next["hb"], self._next["dmq"])

    def _send_heartbeat(self) -> None:
        self._seq += 1
        hb = Heartbeat(
            self.me, self._seq, self.replica.digest, self.replica.present, self.probing(),
            self._c.mode, self.live,
        )  # fmt: skip
        self._bcast([encode_heartbeat(hb)])

    def probing(self) -> int:
        """How many destinations this node probes (recounted when the live set changes)."""
        if self._c.mode == "all" or len(self.live) == 1:
            return len(self._slots)
        version = (self._epoch, self._changes)
        if self._probing_version != version:
            self._probing = sum(not self.skips(slot, g) for slot, (g, _, _) in self._slots.items())
            self._probing_version = version
        return self._probing

    def _my_states(self) -> Iterator[StateItem]:
        """The states this node measures (all of them in ``all`` mode), for the digest."""
        for row in self._rt.table.summaries():
            known = self._slots.get(row.slot)
            if known is None or row.state == State.UNKNOWN:
                continue
            if not self.skips(row.slot, known[0]) and self.trust.publishable(row.last_checked):
                yield StateItem(known[1], row.uri, row.owner, row.state, row.last_checked)

    def _dump(self, node: str) -> None:
        """Every entry (tombstones too) with the states held here, to one node."""
        states = {
            (known[1], row.owner): (row.state, row.last_checked)
            for row in self._rt.table.summaries()
            if (known := self._slots.get(row.slot)) is not None
            and self.trust.publishable(row.last_checked)
        }
        rows = self.replica.dump(states)
        if not rows:
            return
        for body in encode_entries(self.me, rows):
            self._send(node, body)

    def _bcast(self, bodies: list[bytes]) -> None:
        for body in bodies:
            if self._c.kamailio().bcast(self._c.channel, body.decode()) < 0:
                self._rt.limited_err("dmq bcast", "cluster: dmq broadcast failed")
            self.sent += 1

    def _send(self, node: str, body: bytes) -> None:
        if self._c.kamailio().send(self._c.channel, f"sip:{node}", body.decode()) < 0:
            self._rt.limited_err("dmq send", f"cluster: dmq send to {node} failed")
        self.sent += 1

    def _publish(self, now: float) -> None:
        mine = {
            "mode": self._c.mode, "channel": self._c.channel, "live": list(self.live),
            "digest": self.replica.digest, "destinations": self.replica.present,
            "probing": self.probing(), "heartbeat_ms": round(self._c.heartbeat_s * 1000),
            "sent": self.sent, "received": self.received, "bad": self.bad,
            "publishing": int(self.trust.trusted),
        }  # fmt: skip
        self._c.inbox.publish(status_json(self.members, now, mine))
