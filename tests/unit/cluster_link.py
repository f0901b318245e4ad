"""Cluster machines on an in-memory dmq link, in virtual time (h11's ``ConnectionPair``): each
node is a table, a prober and a ``ClusterMachine``, stepped by ``ka_core.node.Node``; the test
moves the bodies they broadcast and send, answers their pings, and can stop, freeze or cut off
a node."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from ka_core.cluster.codec import Message, StateMessage, decode, node_host
from ka_core.cluster.machine import ClusterMachine
from ka_core.cluster.outputs import ClusterOut, ClusterSettings, DmqReply
from ka_core.events import Event
from ka_core.node import Inputs
from ka_core.node import Node as KaNode
from ka_core.probe.prober import Ping, Prober
from ka_core.store.table import SharedTable, buffer_size

WALL0 = 1_700_000_000.0
HEARTBEAT_S = 0.2
PING_TIMEOUT_S = 0.5
DT = 0.1


@dataclass
class Node:
    name: str
    table: SharedTable
    prober: Prober
    machine: ClusterMachine
    inbox: list[bytes] = field(default_factory=list)
    outs: list[ClusterOut] = field(default_factory=list)
    """Every ``ClusterOut`` of before and after, oldest first."""
    events: list[Event] = field(default_factory=list)
    pings: list[tuple[float, Ping]] = field(default_factory=list)
    unanswered: list[Ping] = field(default_factory=list)
    running: bool = True
    """False: stopped or frozen (no steps, nothing sent; messages to it wait in ``inbox``)."""
    linked: bool = True
    """False: its link is cut (nothing it sends arrives, nothing reaches it)."""
    reply_code: int = 200
    node: KaNode = field(init=False)
    """The node machine that steps them together, as the pinger does."""

    def __post_init__(self) -> None:
        self.node = KaNode(self.table, self.prober, self.machine)

    def sent(self) -> list[Message]:
        return [decode(b) for o in self.outs for b in [*o.bcasts, *(x for _, x in o.sends)]]

    def logs(self) -> list[str]:
        return [text for o in self.outs for _, text in o.logs]


def make_node(name: str, mode: str = "distributed", interval_s: int = 1) -> Node:
    buf = bytearray(buffer_size(64, 256))
    SharedTable.format_buffer(buf, 64, 256, ping_interval=interval_s)
    table = SharedTable(buf, threading.Lock())
    table.notes_deletes = True
    prober = Prober(table, delete_counter=0, ping_timeout_s=PING_TIMEOUT_S)
    settings = ClusterSettings(name, mode, "keepalive", HEARTBEAT_S, PING_TIMEOUT_S)
    return Node(name, table, prober, ClusterMachine(table, prober, settings))


def dmq_list(nodes: list[Node]) -> DmqReply:
    """dmq.list_nodes' reply: every node active (dmq itself never fails here)."""
    rows = [{"host": node_host(n.name), "port": 5060, "status": "active"} for n in nodes]
    return DmqReply(json.dumps({"result": rows}))


class Link:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.now = 100.0

    def wall(self) -> float:
        return WALL0 + self.now

    def step(self) -> None:
        """One step on every running node at ``now``, then carry what each sent."""
        now, wall = self.now, self.wall()
        for n in self.nodes:
            if n.running:
                self._step(n, now, wall)
            else:
                n.unanswered = []  # the replies to a frozen node's pings are lost
        self.now = round(now + DT, 6)

    def _step(self, n: Node, now: float, wall: float) -> None:
        for ping in n.unanswered:  # the replies to last step's pings
            n.table.push_reply(ping.seq, n.reply_code, now, wall)
        n.unanswered = []
        inbox, n.inbox = n.inbox, []
        dmq = dmq_list(self.nodes) if n.node.wants_dmq_nodes(now) else None
        step = n.node.step(now, wall, Inputs(n.table.drain(), messages=inbox, dmq=dmq))
        for out in step.cluster:
            self._carry(n, out)
        n.pings += [(now, p) for p in step.pings]
        n.unanswered = list(step.pings)
        n.events += step.events

    def _carry(self, n: Node, out: ClusterOut) -> None:
        n.outs.append(out)
        if not n.linked:
            return
        for other in self.nodes:
            if other is not n and other.linked:
                other.inbox += out.bcasts
        for node, body in out.sends:
            (other,) = [o for o in self.nodes if o.name == node]
            if other.linked:
                other.inbox.append(body)

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / DT)):
            self.step()

    def run_until(self, done: object, limit_s: float = 10.0) -> float:
        """Step until ``done()`` holds; returns the virtual time it took."""
        start = self.now
        while not done():  # type: ignore[operator]
            assert self.now - start < limit_s, "never happened"
            self.step()
        return self.now - start


def states_sent(n: Node) -> list[tuple[str, int, float]]:
    """(uri, state, ts) of every state message item the node sent."""
    return [
        (s.uri, s.state, s.ts) for m in n.sent() if isinstance(m, StateMessage) for s in m.states
    ]
