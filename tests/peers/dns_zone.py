"""A test DNS server (dnslib) serving a zone the test edits while it runs.

``ZoneServer(ip, port)`` answers on UDP and TCP from a ``Zone``: A, AAAA, SRV, NAPTR and CNAME
records (CNAMEs followed within the zone), NXDOMAIN for names it does not hold, NOERROR with
no records for a name that has only other types.  ``zone.truncate`` names get an empty,
TC-flagged reply over UDP (the full one over TCP); ``zone.silent`` names get no reply at all.
Every question is recorded in ``zone.asked`` as (protocol, name, type).  It only ever
answers from the zone: nothing is forwarded, so a test never queries the outside network.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from dnslib import AAAA, CNAME, NAPTR, QTYPE, RCODE, RR, SRV, A, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

RDATA = {"A": A, "AAAA": AAAA, "CNAME": CNAME}


class Zone:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[tuple[str, int, object]]] = {}
        self.truncate: set[str] = set()
        self.silent: set[str] = set()
        self.asked: list[tuple[str, str, str]] = []

    def add(self, name: str, rtype: str, value: object, ttl: int = 60) -> None:
        with self._lock:
            self._records.setdefault(name.lower().rstrip("."), []).append((rtype, ttl, value))

    def remove(self, name: str, rtype: str | None = None) -> None:
        with self._lock:
            key = name.lower().rstrip(".")
            kept = [r for r in self._records.get(key, []) if rtype is not None and r[0] != rtype]
            if kept:
                self._records[key] = kept
            else:
                self._records.pop(key, None)

    def asked_for(self, name: str) -> list[tuple[str, str, str]]:
        return [a for a in list(self.asked) if a[1] == name]

    def _rr(self, name: str, rtype: str, ttl: int, value: object) -> RR:
        if rtype == "SRV":
            priority, weight, port, target = value  # type: ignore[misc]
            rdata: Any = SRV(priority, weight, port, target)
        elif rtype == "NAPTR":  # (order, preference, flags, service, replacement)
            order, preference, flags, service, replacement = value  # type: ignore[misc]
            rdata = NAPTR(order, preference, flags.encode(), service.encode(), b"", replacement)
        else:
            rdata = RDATA[rtype](value)
        return RR(name, getattr(QTYPE, rtype), ttl=ttl, rdata=rdata)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord | None:
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.asked.append((handler.protocol, qname, qtype))
        reply = request.reply()
        if qname in self.silent:
            return None
        if handler.protocol == "udp" and qname in self.truncate:
            reply.header.tc = 1
            return reply
        with self._lock:
            name = qname
            for _ in range(8):
                records = self._records.get(name)
                if records is None:
                    if name == qname:
                        reply.header.rcode = RCODE.NXDOMAIN
                    break
                matching = [r for r in records if r[0] == qtype]
                for rtype, ttl, value in matching:
                    reply.add_answer(self._rr(name, rtype, ttl, value))
                alias = next((r for r in records if r[0] == "CNAME"), None)
                if matching or alias is None:
                    break
                reply.add_answer(self._rr(name, "CNAME", alias[1], alias[2]))
                name = str(alias[2]).rstrip(".").lower()
        return reply


class _Handler(DNSHandler):
    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        if reply is None:
            raise _NoReply
        return reply.pack()

    def handle(self) -> None:
        with contextlib.suppress(_NoReply):
            super().handle()


class _NoReply(Exception):
    pass


class ZoneServer:
    """UDP and TCP on ``ip:port``, both served from ``zone`` by daemon threads."""

    def __init__(self, ip: str, port: int, zone: Zone | None = None) -> None:
        self.ip, self.port = ip, port
        self.zone = zone or Zone()
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._servers = [
            DNSServer(self.zone, address=ip, port=port, tcp=tcp, logger=quiet, handler=_Handler)
            for tcp in (False, True)
        ]
        for server in self._servers:
            server.start_thread()

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
            server.thread.join(timeout=5)
