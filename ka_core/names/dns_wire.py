"""DNS messages on the wire (RFC 1035): one query out, the answer section of its reply in.

Only what resolving a SIP destination needs: A, AAAA, SRV, NAPTR and CNAME records, class IN.  The
caller (``kemi.dns_resolver``) owns the sockets; this module only turns bytes into records
and back, so every malformed, truncated or spoofed packet is handled here and unit-tested.
Every defect of a reply raises ``ValueError`` (never another exception): a DNS server, or
anyone who can send the resolver a UDP packet, must not be able to crash the pinger.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

A, CNAME, AAAA, SRV, NAPTR = 1, 5, 28, 33, 35
CLASS_IN = 1
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPE_NAMES = {A: "A", CNAME: "CNAME", AAAA: "AAAA", SRV: "SRV", NAPTR: "NAPTR"}
MAX_NAME = 253
MAX_POINTERS = 32
"""Compression pointers followed for one name: more means a loop."""

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_SRV = struct.Struct("!HHH")
_QR, _TC, _RD = 0x8000, 0x0200, 0x0100
_OPCODE = 0x7800


class Truncated(ValueError):
    """A UDP reply with the TC bit: the answer did not fit, ask again over TCP."""


class Naptr(NamedTuple):
    """The data of a NAPTR record (RFC 3403); ``flags`` and ``services`` lower-case."""

    order: int
    preference: int
    flags: str
    services: str
    regexp: str
    replacement: str


class Record(NamedTuple):
    """One answer record; ``data`` is the address (A, AAAA), the target name (CNAME),
    ``(priority, weight, port, target)`` (SRV) or a ``Naptr``.  Names are lower-case,
    without the dot."""

    name: str
    rtype: int
    ttl: int
    data: str | tuple[int, int, int, str] | Naptr


def encode_name(name: str) -> bytes:
    """``example.com`` to length-prefixed labels; ``ValueError`` for what DNS cannot carry."""
    name = name.rstrip(".")
    if not name or len(name) > MAX_NAME or not name.isascii():
        raise ValueError(f"bad DNS name {name!r}")
    out = bytearray()
    for label in name.split("."):
        if not 0 < len(label) < 64:
            raise ValueError(f"bad DNS name {name!r}")
        out += bytes([len(label)]) + label.encode("ascii")
    return bytes(out + b"\0")


def build_query(qid: int, name: str, qtype: int) -> bytes:
    """A recursive query (RD set) for ``name``/``qtype``, class IN, no EDNS: replies that do
    not fit in 512 bytes come back truncated and are asked again over TCP."""
    return (
        _HEADER.pack(qid & 0xFFFF, _RD, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", qtype, CLASS_IN)
    )


def tcp_frame(message: bytes) -> bytes:
    """DNS over TCP prefixes each message with its length (RFC 1035 4.2.2)."""
    return struct.pack("!H", len(message)) + message


def read_name(data: bytes, at: int) -> tuple[str, int]:
    """The name at ``at`` and the offset just after it (after the first pointer, if any).

    Compression pointers must point backwards (so no loop, however crafted, is followed)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if at >= len(data):
            raise ValueError("name runs past the end of the packet")
        length = data[at]
        if length & 0xC0 == 0xC0:
            if at + 1 >= len(data):
                raise ValueError("compression pointer cut short")
            target = ((length & 0x3F) << 8) | data[at + 1]
            jumps += 1
            if target >= at or jumps > MAX_POINTERS:
                raise ValueError("compression pointer loops or points forward")
            if end < 0:
                end = at + 2
            at = target
            continue
        if length & 0xC0:
            raise ValueError("unknown label type")
        at += 1
        if length == 0:
            break
        label = data[at : at + length]
        if len(label) < length:
            raise ValueError("label runs past the end of the packet")
        total += length + 1
        if total > MAX_NAME + 1:
            raise ValueError("name longer than 253 characters")
        labels.append(label.decode("ascii", "replace").lower())
        at += length
    return ".".join(labels), (end if end >= 0 else at)


def _strings(data: bytes, at: int, end: int, count: int) -> tuple[list[str], int]:
    """``count`` <character-string>s (a length byte, then that many bytes) from ``at``."""
    out = []
    for _ in range(count):
        if at >= end or at + 1 + data[at] > end:
            raise ValueError("character string runs past the record")
        out.append(data[at + 1 : at + 1 + data[at]].decode("ascii", "replace"))
        at += 1 + data[at]
    return out, at


def _naptr(data: bytes, at: int, end: int) -> Naptr:
    if end - at < 4 + 3 + 1:
        raise ValueError("NAPTR record too short")
    order, preference = struct.unpack_from("!HH", data, at)
    (flags, services, regexp), at = _strings(data, at + 4, end, 3)
    replacement, after = read_name(data, at)
    if after != end:
        raise ValueError("record data length does not match its content")
    return Naptr(order, preference, flags.lower(), services.lower(), regexp, replacement)


def _rdata(
    data: bytes, rtype: int, at: int, length: int
) -> str | tuple[int, int, int, str] | Naptr:
    end = at + length
    if rtype == NAPTR:
        return _naptr(data, at, end)
    if rtype == A:
        if length != 4:
            raise ValueError("A record is not 4 bytes")
        return str(ipaddress.IPv4Address(data[at:end]))
    if rtype == AAAA:
        if length != 16:
            raise ValueError("AAAA record is not 16 bytes")
        return ipaddress.IPv6Address(data[at:end]).compressed
    if rtype == CNAME:
        name, after = read_name(data, at)
    else:  # SRV
        if length < _SRV.size + 1:
            raise ValueError("SRV record too short")
        priority, weight, port = _SRV.unpack_from(data, at)
        target, after = read_name(data, at + _SRV.size)
    if after != end:
        raise ValueError("record data length does not match its content")
    return name if rtype == CNAME else (priority, weight, port, target)


def _skip_question(data: bytes, at: int) -> tuple[str, int, int, int]:
    name, at = read_name(data, at)
    if at + 4 > len(data):
        raise ValueError("question cut short")
    qtype, qclass = struct.unpack_from("!HH", data, at)
    return name, qtype, qclass, at + 4


def parse_response(
    data: bytes, qid: int, qname: str | None = None, qtype: int | None = None, tcp: bool = False
) -> tuple[int, list[Record]]:
    """(rcode, answer records of the types above) of the reply to query ``qid``.

    With ``qname``/``qtype`` the echoed question must match too: a reply to another query
    (late, or forged by someone who guessed the ID) is refused.  Records of other types and
    classes are skipped; the authority and additional sections are not read.

    Raises:
        Truncated: the TC bit is set on a UDP reply (``tcp`` False).
        ValueError: the packet is not a well-formed reply to this query.
    """
    data = bytes(data)  # a bytearray too; ipaddress takes only bytes
    if len(data) < _HEADER.size:
        raise ValueError("reply shorter than a DNS header")
    rid, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(data, 0)
    if rid != qid & 0xFFFF or not flags & _QR or flags & _OPCODE:
        raise ValueError("not a reply to this query")
    if qdcount != 1:
        raise ValueError(f"reply has {qdcount} questions")
    name, rtype, rclass, at = _skip_question(data, _HEADER.size)
    if (qname is not None and name != qname.rstrip(".").lower()) or (
        qtype is not None and (rtype, rclass) != (qtype, CLASS_IN)
    ):
        raise ValueError("reply is for another question")
    if flags & _TC and not tcp:
        raise Truncated("reply truncated (TC bit)")
    records = []
    for _ in range(ancount):
        owner, at = read_name(data, at)
        if at + _RR.size > len(data):
            raise ValueError("record header cut short")
        rtype, rclass, ttl, length = _RR.unpack_from(data, at)
        at += _RR.size
        if at + length > len(data):
            raise ValueError("record data runs past the end of the packet")
        if rclass == CLASS_IN and rtype in TYPE_NAMES:
            ttl = ttl if ttl < 0x80000000 else 0  # RFC 2181 8: a TTL with the top bit is 0
            records.append(Record(owner, rtype, ttl, _rdata(data, rtype, at, length)))
        at += length
    return flags & 0x000F, records


def rcode_name(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, f"RCODE {rcode}")
