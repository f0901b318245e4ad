"""Which probe results a node may publish, and which results from others it may apply.

A node that has lost its network sees every destination time out; a node that was frozen
(SIGSTOP, a VM pause) sees the pings it had in flight time out the moment it runs again.  Those
results are true about the node, not about the destinations, and must never become the
cluster's state (issue: 120 false ``dst-down`` on the healthy nodes after a 5 s link cut).

The rule, in two halves:

* **Publish only while trusted.**  A node is *untrusted* while it knows other nodes but counts
  none of them live, or while none of the live ones counts it live (their heartbeats carry
  their live sets), and across a stall of its own loop.  A state measured while untrusted, or
  within ``settle_s`` (one ping timeout) after trust came back, is *provisional*: the node
  keeps it for its own routing but never sends it (state messages, periodic repair, dumps).
* **Apply only from live nodes.**  A state from a node this one does not count live only fills
  a destination never measured here (a restarted node learning the cluster's states); a
  state from a live node wins when it is newer, as before.  A provisional state of this node's
  own gives way to any live node's state: it knows it was not in a position to measure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ka_core.cluster.codec import StateItem
from ka_core.cluster.members import Membership
from ka_core.events import Event, StateChanged
from ka_core.state import State
from ka_core.store.table import SharedTable
from ka_core.uri import parse_uri

_HELD_ROW = ("state", "last_checked", "uri")
"""What ``outgoing`` reads of a held destination: one slot's three fields, not its record."""

STALL_S = 1.5
"""A gap this long between two pinger steps (they run at least twice a second) is a stall."""
WINDOWS_KEPT = 8


class Trust:
    def __init__(self, me: str, *, settle_s: float) -> None:
        self.me = me
        self.settle_s = settle_s
        self._windows: list[tuple[float, float]] = []
        """Closed untrusted spans (wall from, wall to + settle), newest last."""
        self._since: float | None = None
        """Wall time this node became untrusted; None while trusted."""
        self._last: tuple[float, float] | None = None
        """(monotonic, wall) of the previous step."""
        self._live_before: tuple[str, ...] = ()
        self._peer_out: dict[str, float] = {}
        """Peer -> wall time it was last heard, while it is counted out."""
        self._peer_windows: dict[str, list[tuple[float, float]]] = {}
        self._was_in = False
        """Counted in at least once: losing trust is news only after that."""
        self.held: set[tuple[str, str]] = set()
        """(key, owner) of changes measured while untrusted: published by ``release``."""

    @property
    def trusted(self) -> bool:
        return self._since is None

    def observe(
        self,
        *,
        now: float,
        wall: float,
        known_peers: int,
        live_peers: Iterable[str],
        seen_by: dict[str, tuple[str, ...] | None],
        last_heard: float | None = None,
    ) -> str | None:
        """Called once per pinger step.  ``seen_by``: each peer's last advertised live set
        (None: an older node that does not send one, taken as counting this node in);
        ``last_heard``: when (monotonic) any peer was last heard.  A cut is noticed only
        heartbeats later, but began after the last message that got through: the untrusted
        span starts there, so the timeouts seen meanwhile are provisional too.  Returns the
        line to log when trust is lost or regained (not while the cluster first forms)."""
        last, self._last = self._last, (now, wall)
        if last is not None and now - last[0] > STALL_S:
            self._close(last[1], wall)  # the stall itself: nothing measured in it counts
        live = list(live_peers)
        counted_in = any(seen_by.get(p) is None or self.me in (seen_by[p] or ()) for p in live)
        cut_off = known_peers > 0 and not (live and counted_in)
        if cut_off and self._since is None:
            self._since = wall - max(0.0, now - last_heard) if last_heard is not None else wall
            if self._was_in:
                return (
                    "cluster: cut off (no live node counts this one in): probe results stay "
                    "local until it is counted in again"
                )
        elif not cut_off and self._since is not None:
            self._close(self._since, wall)
            self._since = None
            if self._was_in:
                return "cluster: counted in again: publishing probe results"
            self._was_in = True
        elif not cut_off and known_peers:
            self._was_in = True
        return None

    def observe_members(
        self, members: Membership, live: Sequence[str], *, now: float, wall: float
    ) -> str | None:
        """``observe`` with what ``Membership`` knows (``live``: this node's live set).
        Also keeps, per peer, the spans it was counted out (from the last time it was heard):
        its messages can arrive late (held in a kernel queue while its link was down), and
        what it measured in such a span is not taken (``accepts``)."""
        peers = members.peers.values()
        out_now = set(self._live_before) - set(live)
        for node in out_now:
            peer = members.peers.get(node)
            heard = wall - (now - peer.last_heard) if peer is not None else wall
            self._peer_out[node] = heard
        for node in set(live) - set(self._live_before):
            since = self._peer_out.pop(node, None)
            if since is not None:
                spans = self._peer_windows.setdefault(node, [])
                spans.append((since, wall))
                del spans[:-WINDOWS_KEPT]
        self._live_before = tuple(live)
        return self.observe(
            now=now, wall=wall, known_peers=len(members.known()) - 1,
            live_peers=[n for n in live if n != self.me],
            seen_by={p.node: p.live for p in peers},
            last_heard=max((p.last_heard for p in peers), default=None),
        )  # fmt: skip

    def _close(self, start: float, end: float) -> None:
        self._windows.append((start, end + self.settle_s))
        del self._windows[:-WINDOWS_KEPT]

    def provisional(self, checked: float) -> bool:
        """True for a state this node measured at wall time ``checked`` while untrusted."""
        if self._since is not None and checked >= self._since:
            return True
        return any(start <= checked <= end for start, end in self._windows)

    def counted_out(self, node: str, ts: float) -> bool:
        """True when ``node`` measured ``ts`` while this node counted it out."""
        since = self._peer_out.get(node)
        if since is not None and ts >= since:
            return True
        return any(a <= ts <= b for a, b in self._peer_windows.get(node, ()))

    def publishable(self, checked: float) -> bool:
        return self.trusted and not self.provisional(checked)

    def accepts(
        self,
        *,
        sender: str = "",
        sender_live: bool,
        ts: float,
        local_state_known: bool,
        local_checked: float,
    ) -> bool:
        """Whether another node's state (measured at ``ts``) replaces the one held here."""
        if self.counted_out(sender, ts):
            return False
        if not sender_live:
            return not local_state_known
        return ts > local_checked or (local_state_known and self.provisional(local_checked))

    def outgoing(self, events: Iterable[Event], wall: float, table: SharedTable) -> list[StateItem]:
        """The states to broadcast after a step: its changes while publishable; a change
        measured while untrusted is held and goes out with the first trusted measurement
        of that destination (not at the next digest, seconds later)."""
        out: list[StateItem] = []
        publish = self.publishable(wall)
        for event in events:
            if isinstance(event, StateChanged):
                key = parse_uri(event.uri).key
                if publish:
                    out.append(StateItem(key, event.uri, event.owner, int(event.new), wall))
                else:
                    self.held.add((key, event.owner))
        for key, owner in list(self.held) if publish else ():
            slot = table.find(key, owner)
            found = table.rows(_HELD_ROW, [slot]) if slot >= 0 else []
            if not found or found[0][0] == State.UNKNOWN:
                self.held.discard((key, owner))
                continue
            state, checked, uri = found[0]
            if self.publishable(checked):
                self.held.discard((key, owner))
                out.append(StateItem(key, uri, owner, int(state), checked))
        return out

    def covered(self, items: Iterable[StateItem]) -> None:
        """A digest carried ``items``: their held changes have gone out with it."""
        if self.held:
            self.held.difference_update((item.key, item.owner) for item in items)
