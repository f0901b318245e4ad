"""One node's machine: the prober and, when configured, the cluster and names machines,
stepped together in the one order that is correct, so no glue has to know it.

Theory of operation.  ``kemi.pinger`` reads the clock once, drains its inputs (the shared
ring, the cluster inbox, the resolver's answers, dmq's node list when asked for), calls
``Node.step`` and performs the returned lists; then it sleeps until ``Step.deadline``.  In
``step``:

1. the names machine notices the names just added (their lookups go out in ``names``);
2. the cluster machine takes this node's adds and deletes and applies the other nodes'
   messages, which decides who probes what before any ping is chosen;
3. the prober sends what is due (through ``send`` before replies are applied: interval
   accuracy at 5,000+ destinations), applies replies, resends, timeouts;
4. the names machine derives the names' states from the step's results;
5. the cluster machine publishes this node's measurements and runs its timers.

Events come out in delivery order: this node's measurements, the names' derived states,
then the other nodes' measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ka_core.cluster.machine import ClusterMachine
from ka_core.cluster.outputs import ClusterOut, DmqReply
from ka_core.events import Event
from ka_core.names.machine import NamesMachine, NamesOut
from ka_core.names.resolve import Resolution
from ka_core.names.schedule import Key
from ka_core.probe.liveness import PingerStatus, ReplyWatch
from ka_core.probe.prober import Ping, Prober
from ka_core.store.ring import KIND_REPLY, RingEntry
from ka_core.store.table import SharedTable

LAG_WINDOW_S = 10.0
"""The /metrics ``lag max`` is the largest lag of this window."""


@dataclass(slots=True)
class Inputs:
    entries: list[RingEntry]
    """The shared ring since the last step: adds, deletes, replies (SIP workers, RPC)."""
    unsent: Sequence[int] = ()
    """Sequence numbers of the last step's pings Kamailio refused: failures now."""
    messages: Sequence[bytes] = ()
    """KDMQ bodies SIP workers queued (cluster mode)."""
    resolutions: Sequence[tuple[Key, Resolution]] = ()
    """The resolver thread's answers (``KA_DNS``)."""
    dmq: DmqReply | None = None
    """dmq's node list, when ``Node.wants_dmq_nodes`` asked for it."""
    challenges: Sequence[tuple[int, str]] = ()
    """(ping number, WWW/Proxy-Authenticate header) of 401/407 replies, read after the
    ring (``kemi.challenges``), so no reply in ``entries`` lacks its challenge."""


@dataclass(slots=True)
class Step:
    """What one ``Node.step`` asks of the glue, in the order it is performed."""

    pings: list[Ping]
    resent: list[Ping]
    events: list[Event]
    cluster: list[ClusterOut] = field(default_factory=list)
    names: list[NamesOut] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    deadline: float | None = None
    """Monotonic time of the next step (None: nothing due; the glue wakes anyway)."""


class Node:
    def __init__(
        self,
        table: SharedTable,
        prober: Prober,
        cluster: ClusterMachine | None = None,
        names: NamesMachine | None = None,
    ) -> None:
        self._table, self.prober, self.cluster, self.names = table, prober, cluster, names
        self._watch = ReplyWatch()
        self._deadline: float | None = None
        self._lag_since, self._lag_max = 0.0, 0.0

    def wants_dmq_nodes(self, now: float) -> bool:
        return self.cluster is not None and self.cluster.wants_dmq_nodes(now)

    def step(
        self,
        now: float,
        wall: float,
        inputs: Inputs,
        send: Callable[[Ping], object] | None = None,
    ) -> Step:
        table = self._table
        table.header.write_pinger_life(PingerStatus.RUNNING, now)  # the heartbeat SIP workers read
        lag = self._lag(now)
        entries = inputs.entries
        names_out: list[NamesOut] = []
        cluster_out: list[ClusterOut] = []
        if self.names is not None:
            names_out.append(self.names.notice(entries))
        remote: list[Event] = []
        if self.cluster is not None:
            remote, before = self.cluster.before(entries, inputs.messages, now, wall)
            cluster_out.append(before)
        for seq, header in inputs.challenges:
            self.prober.take_challenge(seq, header)
        probed = self.prober.step(now, wall, entries, inputs.unsent, send)
        table.header.write_pinger_stats(lag, self._lag_max, self.prober.outstanding)
        step = Step(probed.pings, probed.resent, list(probed.events), cluster_out, names_out)
        if not self._watch.done:
            replies = sum(1 for entry in entries if entry.kind == KIND_REPLY)
            warning = self._watch.observe(
                now, len(probed.pings), replies, float(table.header.ping_interval)
            )
            if warning:
                step.warnings.append(warning)
        deadline = probed.deadline
        if self.names is not None:
            changes, names = self.names.apply(probed.events, inputs.resolutions, now, wall)
            step.events.extend(changes)
            names_out.append(names)
        if self.cluster is not None:
            cluster_out.append(self.cluster.after(probed.events, now, wall, inputs.dmq))
            step.events.extend(remote)
            later = self.cluster.next_deadline()
            deadline = later if deadline is None else min(deadline, later)
        if any(o.wake for o in names_out) or any(o.wake for o in cluster_out):
            deadline = now  # a destination was inserted: its first ping at the next step
        self._deadline = step.deadline = deadline
        return step

    def _lag(self, now: float) -> float:
        """How late this step starts after the deadline the last one asked for (/metrics)."""
        lag = max(0.0, now - self._deadline) if self._deadline is not None else 0.0
        if now - self._lag_since >= LAG_WINDOW_S:
            self._lag_since, self._lag_max = now, 0.0
        self._lag_max = max(self._lag_max, lag)
        return lag
