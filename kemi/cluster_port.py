"""What cluster mode needs from Kamailio (dmq, sl and the request's fields), kept apart from
``kemi.ksr_port`` so that cluster mode adds a port instead of changing the main one.

``kemi.kamailio_cluster.KamailioCluster`` is the real adapter; the unit tests use
``tests/unit/fake_cluster.FakeCluster``.  ``ClusterRuntime`` is built before fork with the
inbox's shared memory, and finds the real adapter on first use (so unit tests never import
``KSR``).
"""

from __future__ import annotations

import mmap
import multiprocessing
from dataclasses import dataclass
from typing import Protocol

from ka_core.cluster.inbox import Inbox, inbox_size
from ka_core.config.kaconfig import KaConfig

INBOX_BASE_BYTES = 1 << 20
INBOX_PER_DESTINATION = 512


class ClusterPort(Protocol):
    def request_fields(self) -> tuple[object, object, object]:
        """($rm, $rU, $si) of the request being routed."""
        ...

    def request_body(self) -> bytes | None:
        """$rb as bytes; None when it is not UTF-8."""
        ...

    def is_from_node(self) -> bool:
        """dmq's check: the source IP is one of its nodes'."""
        ...

    def handle_message(self) -> int:
        """Give the KDMQ to dmq (its own channels and other modules')."""
        ...

    def reply(self, code: int, reason: str) -> None: ...

    def bcast(self, channel: str, body: str) -> int:
        """To every active dmq node but this one; < 0 on error."""
        ...

    def send(self, channel: str, node_uri: str, body: str) -> int:
        """To one dmq node; < 0 on error."""
        ...


@dataclass(slots=True)
class ClusterRuntime:
    node: str
    """This node's ``host:port`` (dmq's ``server_address``)."""
    channel: str
    mode: str
    heartbeat_s: float
    inbox: Inbox
    port: ClusterPort | None = None

    def kamailio(self) -> ClusterPort:
        if self.port is None:
            from kemi.kamailio_cluster import KamailioCluster

            self.port = KamailioCluster(self.node)
        return self.port


def build(config: KaConfig) -> ClusterRuntime:
    """The inbox in anonymous shared memory, with its own process-shared lock (before fork)."""
    ring = INBOX_BASE_BYTES + INBOX_PER_DESTINATION * config.max_destinations
    memory = mmap.mmap(-1, inbox_size(ring), flags=mmap.MAP_SHARED)
    inbox = Inbox(memoryview(memory), multiprocessing.get_context("fork").Lock())
    return ClusterRuntime(
        node=config.dmq_server,
        channel=config.cluster_channel,
        mode=config.cluster_mode,
        heartbeat_s=config.cluster_heartbeat_ms / 1000.0,
        inbox=inbox,
    )
