"""Blocking DNS queries for ``kemi.dns_resolver``'s resolver thread (never the core thread).

UDP to one server with a timeout and two tries; a truncated reply is asked again over TCP
(RFC 1035 4.2.2), so large SRV answers are complete.  A connected UDP socket makes the
kernel drop datagrams from anyone but the server; replies are matched by ID and question
(``ka_core.names.dns_wire``), and anything else received meanwhile is skipped.
``DnsServers`` hands a failed query to the next server (``ka_core.names.servers``).
"""

from __future__ import annotations

import secrets
import socket
import time

from ka_core.names import dns_wire
from ka_core.names.servers import Failover, Server, ask_in_turn, server_text

QUERY_TIMEOUT_S = 1.5
TRIES = 2


class DnsClient:
    """Blocking queries to one server (resolver thread only)."""

    def __init__(self, address: str, port: int, timeout_s: float = QUERY_TIMEOUT_S) -> None:
        self._timeout = timeout_s
        self.text = server_text(address, port)
        try:
            info = socket.getaddrinfo(
                address, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
            )
        except OSError as exc:  # every query then fails with this: logged per name
            self._unusable: OSError | None = OSError(f"DNS server {self.text}: {exc}")
            info = socket.getaddrinfo("127.0.0.1", port, type=socket.SOCK_DGRAM)
        else:
            self._unusable = None
        self._family: socket.AddressFamily = info[0][0]
        self._sockaddr = info[0][4]

    def query(self, name: str, qtype: int) -> tuple[int, list[dns_wire.Record]]:
        """(rcode, records); raises ``OSError`` (timeouts too) or ``ValueError``."""
        if self._unusable is not None:
            raise self._unusable
        qid = secrets.randbits(16)
        packet = dns_wire.build_query(qid, name, qtype)
        error: Exception = TimeoutError(f"no reply from {self.text}")
        for _ in range(TRIES):
            try:
                return self._udp(packet, qid, name, qtype)
            except dns_wire.Truncated:
                return self._tcp(packet, qid, name, qtype)
            except (OSError, ValueError) as exc:
                error = exc
        raise error

    def _udp(
        self, packet: bytes, qid: int, name: str, qtype: int
    ) -> tuple[int, list[dns_wire.Record]]:
        deadline = time.monotonic() + self._timeout
        invalid: ValueError | None = None
        with socket.socket(self._family, socket.SOCK_DGRAM) as sock:
            sock.connect(self._sockaddr)  # the kernel drops datagrams from anyone else
            sock.send(packet)
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    break
                try:
                    return dns_wire.parse_response(data, qid, name, qtype)
                except dns_wire.Truncated:
                    raise
                except ValueError as exc:  # late reply to an older query, or garbage
                    invalid = exc
        raise invalid or TimeoutError(f"no reply from {self.text} in {self._timeout} s")

    def _tcp(
        self, packet: bytes, qid: int, name: str, qtype: int
    ) -> tuple[int, list[dns_wire.Record]]:
        with socket.socket(self._family, socket.SOCK_STREAM) as sock:
            sock.settimeout(self._timeout)
            sock.connect(self._sockaddr)
            sock.sendall(dns_wire.tcp_frame(packet))
            length = int.from_bytes(_read(sock, 2), "big")
            return dns_wire.parse_response(_read(sock, length), qid, name, qtype, tcp=True)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("TCP reply cut short")
        data += chunk
    return data


class DnsServers:
    """Blocking queries to a list of servers, a failed one handing the query to the next
    (``ka_core.names.servers.ask_in_turn``)."""

    def __init__(self, servers: tuple[Server, ...], timeout_s: float = QUERY_TIMEOUT_S) -> None:
        clients = [DnsClient(address, port, timeout_s) for address, port in servers]
        self._queries = [(client.text, client.query) for client in clients]
        self._failover = Failover(len(clients))

    def query(self, name: str, qtype: int) -> tuple[int, list[dns_wire.Record]]:
        return ask_in_turn(self._queries, self._failover, name, qtype)
