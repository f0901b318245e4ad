"""Cluster mode's dmq adapter in the pinger process: feeds ``ka_core.cluster.machine`` the
inbox SIP workers filled (``kemi.cluster_receive``) and dmq's node list, and performs what it
returns (``ClusterOut``) through the ``ClusterPort`` and the log.  No decisions here.
"""

from __future__ import annotations

from ka_core.cluster.machine import ClusterMachine
from ka_core.cluster.outputs import ERR, INFO, WARN, ClusterOut, ClusterSettings, DmqReply
from ka_core.probe.prober import Prober
from kemi.cluster_port import ClusterRuntime
from kemi.runtime import Runtime

LIST_NODES = '{"jsonrpc":"2.0","method":"dmq.list_nodes","id":1}'


class Cluster:
    def __init__(self, rt: Runtime, cluster: ClusterRuntime, prober: Prober) -> None:
        self._rt, self._c = rt, cluster
        settings = ClusterSettings(
            node=cluster.node, mode=cluster.mode, channel=cluster.channel,
            heartbeat_s=cluster.heartbeat_s, settle_s=rt.config.ping_timeout_ms / 1000.0,
        )  # fmt: skip
        self.machine = ClusterMachine(rt.table, prober, settings)

    def messages(self) -> list[bytes]:
        """The KDMQ bodies SIP workers queued since the last step."""
        return self._c.inbox.drain()

    def dmq_nodes(self) -> DmqReply:
        return DmqReply(self._rt.ksr.jsonrpc_exec(LIST_NODES)[1])

    def perform(self, out: ClusterOut) -> None:
        """The machine's I/O (its ``wake`` is the node's deadline, not ours)."""
        rt, port, channel = self._rt, self._c.kamailio(), self._c.channel
        log = {INFO: rt.ksr.info, WARN: rt.ksr.warn, ERR: rt.ksr.err}
        for level, text in out.logs:
            log[level](text)
        for key, text in out.announce:
            rt.announce(key, text)
        for body in out.bcasts:
            if port.bcast(channel, body.decode()) < 0:
                rt.limited_err("dmq bcast", "cluster: dmq broadcast failed")
        for node, body in out.sends:
            if port.send(channel, f"sip:{node}", body.decode()) < 0:
                rt.limited_err("dmq send", f"cluster: dmq send to {node} failed")
        if out.status is not None:
            self._c.inbox.publish(out.status)
