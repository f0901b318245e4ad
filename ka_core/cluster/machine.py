"""Cluster mode's decisions, sans I/O: replicate destinations and states, and tell the prober
which destinations this node probes.  ``kemi.cluster`` (the dmq adapter) feeds it and performs
what it returns (``ka_core.cluster.outputs.ClusterOut``); time comes in as arguments.

Theory of operation.  The pinger's core thread calls it around each prober step:

* ``before(entries, messages, now, wall)``: the shared ring's ``ADDED``/``REMOVED``/
  ``FLUSHED`` entries are this node's adds and deletes (script, RPC, API, start-up list):
  each becomes a ``set`` entry, stamped and stored in the ``Replica`` (last writer wins) and
  broadcast after the step.  Then the messages SIP workers queued (``kemi.cluster_receive``)
  are applied: heartbeats feed the ``Membership`` (a new or out-of-sync peer gets a dump);
  entries that win are written to the shared table (so every process sees them); states newer
  than the table's are written with ``set_state`` and returned as ``StateChanged`` events (log
  line, callbacks), and the prober re-reads the record.  Writes made here are remembered so
  their own ring entries are not broadcast back.
* ``skips(slot, gen)`` (the prober's hook for each due ping): True when, by rendezvous
  hashing over the live nodes, another node probes the destination (mode ``all``: never).
* ``after(events, now, wall, dmq)``: ``Trust`` (``ka_core.cluster.trust``) decides whether
  this node may publish; the step's state changes are broadcast (``st``; those measured while
  untrusted are held, and sent with the first trusted measurement); then the timers: a
  heartbeat every ``heartbeat_s`` (digest, live set), dmq's node list twice a second (asked
  with ``wants_dmq_nodes``, handed in as ``dmq``), the states this node probes every
  ``DIGEST_S``, the status for ``keepalive.cluster`` every second.  When a node leaves the
  live set, what this node gains is expedited within ``TAKEOVER_S``.  A peer that is new, or
  whose digest differs, gets a full dump, at most once per ``DUMP_EVERY_S``.
* ``next_deadline()``: when ``after`` must run again (the next heartbeat or dmq poll).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Iterator

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
from ka_core.cluster.members import Membership, parse_dmq_nodes
from ka_core.cluster.outputs import ERR, INFO, WARN, ClusterOut, ClusterSettings, DmqReply
from ka_core.cluster.ownership import Ownership
from ka_core.cluster.replica import Replica
from ka_core.cluster.status import status_json
from ka_core.cluster.trust import Trust
from ka_core.errors import KaError
from ka_core.events import Event
from ka_core.probe.prober import Prober
from ka_core.probe.scheduler import on_grid
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.layout import FLAG_OWN_INTERVAL, FLAG_TARGET
from ka_core.store.ring import KIND_ADDED, KIND_FLUSHED, KIND_REMOVED, RingEntry
from ka_core.store.table import SharedTable

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
_STATE_ROW = ("slot", "uri", "owner", "state", "last_checked")
"""What the digest and the dump read of each destination."""


class ClusterMachine:
    def __init__(self, table: SharedTable, prober: Prober, settings: ClusterSettings) -> None:
        self._table, self._prober, self._cfg = table, prober, settings
        self.me = settings.node
        self.members = Membership(
            self.me,
            timeout_s=MISSED_HEARTBEATS * settings.heartbeat_s,
            grace_s=MISSED_HEARTBEATS * settings.heartbeat_s,
        )
        self.replica = Replica()
        self.trust = Trust(self.me, settle_s=settings.settle_s)
        self.ownership = Ownership(self.me, settings.mode)
        self._ours: set[tuple[int, int]] = set()
        """(slot, gen) this machine inserted or deleted: their ring entries are not local ops."""
        self._out_entries: list[Entry] = []
        self._out_states: list[StateItem] = []
        self._dumped: dict[str, float] = {}
        self._next = {"hb": 0.0, "dmq": 0.0, "digest": 0.0, "status": 0.0, "gc": 0.0}
        self._seq = 0
        self.sent = self.received = self.bad = 0
        self._shown: tuple[tuple[str, ...], str, int] = ((), "", -1)
        self.skips = self.ownership.skips
        """The prober's question for each due ping: True when another live node probes
        this destination."""
        prober.skip = self.skips

    @property
    def live(self) -> tuple[str, ...]:
        return self.ownership.live

    # -- before the prober's step --------------------------------------------------------

    def before(
        self, entries: Iterable[RingEntry], messages: Iterable[bytes], now: float, wall: float
    ) -> tuple[list[Event], ClusterOut]:
        """Take this node's adds and deletes (``entries``) and apply the queued ``messages``
        (KDMQ bodies); returns the other nodes' state changes and what to send now."""
        out = ClusterOut()
        for entry in entries:
            if entry.kind == KIND_ADDED:
                self._local_added(entry.slot, entry.gen, now)
            elif entry.kind == KIND_REMOVED:
                self._local_removed(entry.slot, entry.gen, now, wall)
            elif entry.kind == KIND_FLUSHED:
                self._local_flushed(now, wall)
        events: list[Event] = []
        for body in messages:
            try:
                message = decode(body)
            except BadMessage as exc:  # checked by the worker already: never in practice
                self.bad += 1
                out.logs.append((WARN, f"cluster: dropping a bad queued message: {exc}"))
                continue
            self.received += 1
            try:
                events.extend(self._apply(message, now, wall, out))
            except Exception:  # a bug must cost one message, not the pinger's loop
                self.bad += 1
                out.logs.append(
                    (ERR, f"cluster: applying a message failed: {traceback.format_exc()}")
                )
        return events, out

    def _apply(self, message: Message, now: float, wall: float, out: ClusterOut) -> list[Event]:
        events: list[Event] = []
        if isinstance(message, Heartbeat):
            self._heartbeat(message, now, out)
        elif isinstance(message, SetMessage):
            for item in message.entries:
                events.extend(self._apply_entry(item, now, wall, message.node, out))
        else:
            for state in message.states:
                events.extend(
                    self._apply_state(state.key, state.owner, state.state, state.ts, message.node)
                )
        return events

    def _local_added(self, slot: int, gen: int, now: float) -> None:
        table = self._table
        if (slot, gen) in self._ours:
            self._ours.discard((slot, gen))
            return
        if not table.is_used(slot, gen) or table.flags(slot) & FLAG_TARGET:
            return
        rec = table.read(slot)
        self.ownership.learn(slot, gen, rec.key, rec.owner)
        own = table.flags(slot) & FLAG_OWN_INTERVAL
        entry = Entry(
            rec.key, rec.uri, rec.owner, True, rec.added, self.me, rec.settings,
            rec.interval_ms if own else 0,
        )  # fmt: skip
        self._local(entry, now)

    def _local_removed(self, slot: int, gen: int, now: float, wall: float) -> None:
        if (slot, gen) in self._ours:
            self._ours.discard((slot, gen))
            return
        known = self.ownership.removed(slot, gen)
        if known is None:
            return
        key, owner_name = known
        self._local(Entry(key, key, owner_name, False, wall, self.me), now)

    def _local_flushed(self, now: float, wall: float) -> None:
        self.ownership.forget_all()
        for entry in self.replica.entries():
            if entry.present:
                self._local(Entry(entry.key, entry.key, entry.owner, False, wall, self.me), now)

    def _local(self, entry: Entry, now: float) -> None:
        entry = self.replica.local(entry)
        self.replica.put(entry)
        self._out_entries.append(entry)
        self.members.recheck(now=now, my_digest=self.replica.digest)

    def _heartbeat(self, hb: Heartbeat, now: float, out: ClusterOut) -> None:
        fresh = self.members.heard(hb, now=now, my_digest=self.replica.digest)
        if hb.mode != self._cfg.mode:
            out.announce.append((
                f"mode-{hb.node}",
                f"cluster: node {hb.node} runs KA_CLUSTER_MODE {hb.mode}, "
                f"this one {self._cfg.mode}",
            ))  # fmt: skip
        peer = self.members.peers[hb.node]
        # a mismatch that outlives two heartbeats is not a message still in flight
        differs = now - peer.agreed > 2 * self._cfg.heartbeat_s
        last = self._dumped.get(hb.node, float("-inf"))
        if fresh or (differs and now - last >= DUMP_EVERY_S):
            self._dumped[hb.node] = now
            self._dump(hb.node, out)

    def _apply_entry(
        self, e: Entry, now: float, wall: float, sender: str, out: ClusterOut
    ) -> list[Event]:
        if not self.replica.is_stale_tombstone(e, wall) and self.replica.wins(e):
            try:
                out.wake |= self._write(e)
            except KaError as exc:  # table full, a racing local add: the next dump retries
                out.logs.append((WARN, f"cluster: cannot apply {e.uri} owner {e.owner}: {exc}"))
                return []
            self.replica.put(e)
            self.members.recheck(now=now, my_digest=self.replica.digest)
        if e.present and e.state >= 0:
            return self._apply_state(e.key, e.owner, e.state, e.state_ts, sender)
        return []

    def _write(self, e: Entry) -> bool:
        """Make the shared table agree with a winning entry; True when it added one (the
        prober schedules it at its next step, which must not wait for a long sleep)."""
        table = self._table
        slot = table.find(e.key, e.owner)
        if slot >= 0:
            rec = table.read(slot)
            own = table.flags(slot) & FLAG_OWN_INTERVAL
            same = rec.settings == e.settings and (rec.interval_ms if own else 0) == e.interval_ms
            if e.present and same:
                return False
            table.remove(e.key, e.owner)
            self._ours.add((slot, rec.gen))
            self.ownership.forget(slot)
        if not e.present:
            return False
        rec = registry.add(
            table, e.uri, e.owner, interval_s=e.interval_ms / 1000.0 if e.interval_ms else None,
            wall=e.ts, settings=e.settings,
        )  # fmt: skip
        self._ours.add((rec.slot, rec.gen))
        self.ownership.learn(rec.slot, rec.gen, rec.key, rec.owner)
        return True

    def _apply_state(
        self, key: str, owner_name: str, state: int, ts: float, sender: str
    ) -> list[Event]:
        """Write another node's measurement when ``Trust`` accepts it; the change is an
        event here too."""
        table = self._table
        slot = table.find(key, owner_name)
        if slot < 0:
            return []
        gen, _, current = table.hot(slot)
        if current == state:
            return []
        rec = table.read(slot)
        if rec.ejected:  # this node's own calls failed there: its ejection holds until it ends
            return []
        accepted = self.trust.accepts(
            sender=sender, sender_live=sender in self.live, ts=ts,
            local_state_known=rec.state != State.UNKNOWN, local_checked=rec.last_checked,
        )  # fmt: skip
        change = table.set_state(slot, gen, State(state), ts) if accepted else None
        if change is None:
            return []
        self._prober.refresh(slot, gen)
        return [change]

    # -- after the prober's step ----------------------------------------------------------

    def wants_dmq_nodes(self, now: float) -> bool:
        """True when ``after`` at ``now`` wants dmq's node list (``dmq.list_nodes``)."""
        return now >= self._next["dmq"]

    def after(
        self, events: list[Event], now: float, wall: float, dmq: DmqReply | None = None
    ) -> ClusterOut:
        """Publish the step's state changes (``events``: this node's measurements), run the
        timers and follow the live set; ``dmq``: the node list ``wants_dmq_nodes`` asked for."""
        out = ClusterOut()
        news = self.trust.observe_members(self.members, self.live, now=now, wall=wall)
        if news:
            out.logs.append((WARN, news))
        self._out_states.extend(self.trust.outgoing(events, wall, self._table))
        if self._out_entries:
            self._bcast(out, encode_entries(self.me, self._out_entries))
            self._out_entries = []
        if self._out_states:
            self._bcast(out, encode_states(self.me, self._out_states))
            self._out_states = []
        due = self._next
        if dmq is not None:
            due["dmq"] = now + DMQ_POLL_S
            self.members.set_dmq(parse_dmq_nodes(dmq.body))
        live = self.members.live(now)
        if live != self.live:
            out.logs.append(
                (INFO, f"cluster: live nodes {' '.join(live)} (were {' '.join(self.live)})")
            )
            self._take_over(self.ownership.move_to(live), now)
            due["status"] = now  # keepalive.cluster shows it at once
        if now >= due["hb"]:
            due["hb"] = now + self._cfg.heartbeat_s
            self._send_heartbeat(out)
        if now >= due["digest"]:
            due["digest"] = now + DIGEST_S
            mine = list(self._my_states())
            self._bcast(out, encode_states(self.me, mine))
            self.trust.covered(mine)
        shown = (self.live, self.replica.digest, self.sent)
        if now >= due["status"] or shown != self._shown:
            due["status"], self._shown = now + STATUS_S, shown
            out.status = self._status(now)
        if now >= due["gc"]:
            due["gc"] = now + GC_S
            self.replica.forget_tombstones(wall)
            self.members.forget(now, GC_S * 10)
        return out

    def _take_over(self, mine: list[tuple[int, int]], now: float) -> None:
        """A node left: ping what this node now owns (``mine``) soon (``TAKEOVER_S``)
        instead of at each destination's own phase (up to an interval later), so no
        destination waits an interval more than the time it took to count the node out."""
        if not mine:
            return
        spread = min(
            max(TAKEOVER_S, len(mine) / TAKEOVER_RATE), self._table.header.ping_interval / 2
        )
        for i, (slot, gen) in enumerate(mine):
            self._prober.expedite(slot, gen, on_grid(now + spread * (i + 1) / len(mine)))

    def next_deadline(self) -> float:
        return min(self._next["hb"], self._next["dmq"])

    def _send_heartbeat(self, out: ClusterOut) -> None:
        self._seq += 1
        hb = Heartbeat(
            self.me, self._seq, self.replica.digest, self.replica.present, self.probing(),
            self._cfg.mode, self.live,
        )  # fmt: skip
        self._bcast(out, [encode_heartbeat(hb)])

    def probing(self) -> int:
        return self.ownership.probing()

    def _my_states(self) -> Iterator[StateItem]:
        """The states this node measures (all of them in ``all`` mode), for the digest."""
        for slot, uri, owner, state, checked in self._table.rows(_STATE_ROW):
            known = self.ownership.slots.get(slot)
            if known is None or state == State.UNKNOWN:
                continue
            if not self.skips(slot, known[0]) and self.trust.publishable(checked):
                yield StateItem(known[1], uri, owner, state, checked)

    def _dump(self, node: str, out: ClusterOut) -> None:
        """Every entry (tombstones too) with the states held here, to one node."""
        states = {
            (known[1], owner): (state, checked)
            for slot, _, owner, state, checked in self._table.rows(_STATE_ROW)
            if (known := self.ownership.slots.get(slot)) is not None
            and self.trust.publishable(checked)
        }
        rows = self.replica.dump(states)
        if not rows:
            return
        for body in encode_entries(self.me, rows):
            out.sends.append((node, body))
            self.sent += 1

    def _bcast(self, out: ClusterOut, bodies: list[bytes]) -> None:
        out.bcasts.extend(bodies)
        self.sent += len(bodies)

    def _status(self, now: float) -> bytes:
        mine = {
            "mode": self._cfg.mode, "channel": self._cfg.channel, "live": list(self.live),
            "digest": self.replica.digest, "destinations": self.replica.present,
            "probing": self.probing(), "heartbeat_ms": round(self._cfg.heartbeat_s * 1000),
            "sent": self.sent, "received": self.received, "bad": self.bad,
            "publishing": int(self.trust.trusted),
        }  # fmt: skip
        return status_json(self.members, now, mine)
