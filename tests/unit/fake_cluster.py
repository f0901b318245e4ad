"""``FakeCluster``: the ``ClusterPort`` for unit tests, recording dmq sends and sl replies
and serving the request a test sets."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeCluster:
    fields: tuple[object, object, object] = ("KDMQ", "keepalive", "10.0.0.2")
    """($rm, $rU, $si) of the request being routed."""
    body: bytes | None = b""
    from_node: bool = True
    replies: list[tuple[int, str]] = field(default_factory=list)
    handled: int = 0
    bcasts: list[tuple[str, str]] = field(default_factory=list)
    """(channel, body) of every broadcast."""
    sends: list[tuple[str, str, str]] = field(default_factory=list)
    """(channel, node URI, body) of every message to one node."""
    rc: int = 1

    def request_fields(self) -> tuple[object, object, object]:
        return self.fields

    def request_body(self) -> bytes | None:
        return self.body

    def is_from_node(self) -> bool:
        return self.from_node

    def handle_message(self) -> int:
        self.handled += 1
        return 1

    def reply(self, code: int, reason: str) -> None:
        self.replies.append((code, reason))

    def bcast(self, channel: str, body: str) -> int:
        self.bcasts.append((channel, body))
        return self.rc

    def send(self, channel: str, node_uri: str, body: str) -> int:
        self.sends.append((channel, node_uri, body))
        return self.rc
