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
from ka_core.names.resolve import Lookup, Resolution
from ka_core.names.servers import Failover, Server, is_answer, server_text
from ka_core.uri import SipUri

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
    """Blocking queries to a list of servers, each failure handed to the next one."""

    def __init__(self, servers: tuple[Server, ...], timeout_s: float = QUERY_TIMEOUT_S) -> None:
        self._clients = [DnsClient(address, port, timeout_s) for address, port in servers]
        self._failover = Failover(len(self._clients))

    def query(self, name: str, qtype: int) -> tuple[int, list[dns_wire.Record]]:
        """The first answer (NOERROR, NXDOMAIN); when every server failed, the last bad
        rcode, or ``OSError`` naming each server's error."""
        errors: list[str] = []
        refused: tuple[int, list[dns_wire.Record]] | None = None
        for index in self._failover.order():
            client = self._clients[index]
            try:
                rcode, records = client.query(name, qtype)
            except (OSError, ValueError) as exc:
                errors.append(f"{client.text}: {exc}" if client.text not in str(exc) else str(exc))
                continue
            if is_answer(rcode):
                self._failover.answered(index)
                return rcode, records
            refused = (rcode, records)
            errors.append(f"{client.text}: {dns_wire.rcode_name(rcode)}")
        if refused is not None:
            return refused
        raise OSError("; ".join(errors))


def resolve(
    client: DnsClient | DnsServers,
    uri: SipUri,
    refresh_s: int,
    naptr: bool = False,
) -> Resolution:
    """Drive one ``Lookup`` to its end with blocking queries."""
    lookup = Lookup(uri, refresh_s, naptr)
    while (query := lookup.next_query()) is not None:
        try:
            rcode, records = client.query(*query)
        except (OSError, ValueError) as exc:
            lookup.fail(query, str(exc) or type(exc).__name__)
        else:
            lookup.answer(query, rcode, records)
    return lookup.result()
