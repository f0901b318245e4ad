"""Cluster membership: which nodes are live, as this node sees it.

Two sources, both needed:

* dmq's node list (``dmq.list_nodes``, polled by the pinger): dmq marks a node ``disabled``
  when a KDMQ to it times out (our heartbeats are KDMQs, so within about one heartbeat plus
  tm's ``fr_timer``) and deletes it at the next failure;
* our own heartbeats: a node is live only while its heartbeats arrive (a frozen node stops
  them at once) **and** its set digest agreed with ours within ``grace_s``.  A node whose
  destinations differ from ours (it just joined, or missed messages) would be handed
  destinations it does not have; until the dumps bring it in sync, the others count it out
  and probe its share themselves.  Both errors a view can make are then overlaps (two nodes
  probe a destination for a moment), never gaps.

The live set always contains this node, and is sorted so that equal views compare equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ka_core.cluster.codec import BadMessage, Heartbeat, node_id


@dataclass(frozen=True, slots=True)
class DmqNode:
    node: str
    status: str
    local: bool


@dataclass(slots=True)
class Peer:
    node: str
    first_heard: float
    last_heard: float
    agreed: float
    """When its digest last equalled ours (-inf: never)."""
    digest: str = ""
    count: int = 0
    probing: int = 0
    mode: str = ""
    seq: int = 0
    live: tuple[str, ...] | None = None
    """The nodes it counts live, as its last heartbeat said (None: it does not say)."""


def parse_dmq_nodes(body: object) -> list[DmqNode] | None:
    """dmq.list_nodes' JSON-RPC reply body to nodes; None when it cannot be read."""
    if not isinstance(body, str):
        return None
    try:
        result = json.loads(body).get("result")
        nodes = []
        for item in result:
            port = str(item.get("port") or "5060")
            node = node_id(f"{item['host']}:{port}")
            nodes.append(DmqNode(node, str(item.get("status")), bool(item.get("local"))))
    except (ValueError, TypeError, AttributeError, KeyError, BadMessage):
        return None
    return nodes


class Membership:
    def __init__(self, me: str, *, timeout_s: float, grace_s: float) -> None:
        self.me = me
        self._timeout_s = timeout_s
        self._grace_s = grace_s
        self.peers: dict[str, Peer] = {}
        self.dmq: dict[str, str] | None = None
        """node -> dmq status (local entries left out); None: not read yet."""

    def heard(self, hb: Heartbeat, *, now: float, my_digest: str) -> bool:
        """Record a heartbeat; True when this peer is new or was not live (it needs a dump)."""
        peer = self.peers.get(hb.node)
        fresh = peer is None or now - peer.last_heard > self._timeout_s
        if peer is None or fresh:
            peer = Peer(hb.node, now, now, float("-inf"))
            self.peers[hb.node] = peer
        peer.last_heard = now
        peer.digest, peer.count, peer.probing, peer.mode, peer.seq, peer.live = (
            hb.digest, hb.count, hb.probing, hb.mode, hb.seq, hb.live,
        )  # fmt: skip
        if hb.digest == my_digest:
            peer.agreed = now
        return fresh

    def recheck(self, *, now: float, my_digest: str) -> None:
        """Our digest changed: peers that already hold the same set agree again."""
        for peer in self.peers.values():
            if peer.digest == my_digest:
                peer.agreed = now

    def set_dmq(self, nodes: list[DmqNode] | None) -> None:
        if nodes is None:
            return
        self.dmq = {n.node: n.status for n in nodes if not n.local and n.node != self.me}

    def status(self, node: str, now: float) -> str:
        """``live``, ``silent`` (no heartbeat), ``syncing`` (digest differs) or
        ``dmq-<status>`` (dmq does not count it active)."""
        peer = self.peers.get(node)
        if self.dmq is not None and self.dmq.get(node) != "active":
            return f"dmq-{self.dmq.get(node, 'unknown')}"
        if peer is None or now - peer.last_heard > self._timeout_s:
            return "silent"
        if now - peer.agreed > self._grace_s:
            return "syncing"
        return "live"

    def live(self, now: float) -> tuple[str, ...]:
        nodes = [n for n in self.peers if self.status(n, now) == "live"]
        return tuple(sorted([self.me, *nodes]))

    def known(self) -> list[str]:
        """Every node heard of or listed by dmq, this one first."""
        others = set(self.peers) | set(self.dmq or {})
        return [self.me, *sorted(others - {self.me})]

    def forget(self, now: float, after_s: float) -> None:
        """Drop peers silent for ``after_s`` (a node removed for good)."""
        for node in [n for n, p in self.peers.items() if now - p.last_heard > after_s]:
            del self.peers[node]
