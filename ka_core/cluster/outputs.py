"""What the cluster machine (``ka_core.cluster.machine``) needs to be told and what it asks
the dmq adapter (``kemi.cluster``) to do: plain data, so the machine never touches Kamailio
and tests read its I/O as values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INFO, WARN, ERR = "info", "warn", "err"
"""Levels of ``ClusterOut.logs``: the adapter maps them to ``KSR.info/warn/err``."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    node: str
    """This node's ``host:port`` (dmq's ``server_address``)."""
    mode: str
    """``KA_CLUSTER_MODE``: ``distributed`` (one prober per destination) or ``all``."""
    channel: str
    """``KA_CLUSTER_CHANNEL``: shown by ``keepalive.cluster``."""
    heartbeat_s: float
    settle_s: float
    """One ping timeout: how long after trust comes back a measurement stays provisional."""


@dataclass(frozen=True, slots=True)
class DmqReply:
    """dmq's ``dmq.list_nodes`` JSON-RPC reply body, as Kamailio returned it (any type:
    ``ka_core.cluster.members.parse_dmq_nodes`` checks it)."""

    body: object


@dataclass(slots=True)
class ClusterOut:
    """One call's I/O, performed in this order: logs, announcements, broadcasts, sends,
    status, wake."""

    logs: list[tuple[str, str]] = field(default_factory=list)
    """(level, text) to log now (``INFO``, ``WARN``, ``ERR``)."""
    announce: list[tuple[str, str]] = field(default_factory=list)
    """(key, text): log at info once per process per key."""
    bcasts: list[bytes] = field(default_factory=list)
    """Bodies for every dmq node (``KSR.dmq.bcast_message``)."""
    sends: list[tuple[str, bytes]] = field(default_factory=list)
    """(node, body) for one dmq node (``KSR.dmq.send_message`` to ``sip:<node>``)."""
    status: bytes | None = None
    """The ``keepalive.cluster`` status to publish into the inbox, when it changed or is due."""
    wake: bool = False
    """A destination was added: the pinger's next sleep must not be long."""
