"""kemi.udp_gate: finds this process's UDP sockets by address and polls them."""

from __future__ import annotations

import socket

from kemi.udp_gate import UdpGate


class Full:
    def poll(self, timeout: int) -> list[tuple[int, int]]:
        return []


def test_a_bound_udp_socket_with_room_is_writable_and_unknown_ones_pass() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        gate = UdpGate()
        assert gate.writable_spec(f"udp:127.0.0.1:{port}")
        assert gate._polls is not None and ("127.0.0.1", port) in gate._polls
        assert gate.writable("192.0.2.1", 5060), "not a socket of this process: no gate"
        assert gate.writable_spec("tcp:127.0.0.1:5060"), "only UDP is gated"
        assert gate.writable_spec("udp:garbage"), "an unreadable spec is not refused"


def test_a_full_socket_is_not_writable_with_or_without_ipv6_brackets() -> None:
    gate = UdpGate()
    gate._polls = {("10.0.0.1", 5060): Full(), ("fd00::1", 5060): Full()}  # type: ignore[dict-item]
    assert not gate.writable_spec("udp:10.0.0.1:5060")
    assert not gate.writable_spec("udp:[fd00::1]:5060")
