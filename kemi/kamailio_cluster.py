"""The real ``ClusterPort``: one thin method per Kamailio call (dmq, sl, pv)."""

from __future__ import annotations

import KSR  # type: ignore[import-not-found]  # noqa: TID251 - the cluster seam

from kemi.udp_gate import GATE

CONTENT_TYPE = "application/json"
"""Of the KDMQ bodies (``ka_core.cluster.codec``)."""


class KamailioCluster:
    def __init__(self, node: str) -> None:
        self._socket = f"udp:{node}"
        """dmq sends from this node's listener (``server_address``): tm blocks on a full
        socket like any sender, so a broadcast waits for room (``kemi.udp_gate``)."""

    def request_fields(self) -> tuple[object, object, object]:
        pv = KSR.pv.get
        return pv("$rm"), pv("$rU"), pv("$si")

    def request_body(self) -> bytes | None:
        try:
            body = KSR.pv.get("$rb")
        except UnicodeDecodeError:
            return None
        return b"" if body is None else str(body).encode("utf-8", "surrogateescape")

    def is_from_node(self) -> bool:
        return bool(KSR.dmq.is_from_node() > 0)

    def handle_message(self) -> int:
        return int(KSR.dmq.handle_message())

    def reply(self, code: int, reason: str) -> None:
        KSR.sl.sl_send_reply(code, reason)

    def bcast(self, channel: str, body: str) -> int:
        if not GATE.writable_spec(self._socket):
            return -1
        return int(KSR.dmq.bcast_message(channel, body, CONTENT_TYPE))

    def send(self, channel: str, node_uri: str, body: str) -> int:
        if not GATE.writable_spec(self._socket):
            return -1
        return int(KSR.dmq.send_message(channel, node_uri, body, CONTENT_TYPE))
