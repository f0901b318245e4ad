"""ka_core.names.dns_wire against packets dnslib builds: queries it parses, answers (with name
compression) we parse, and every malformed, truncated, spoofed or looping packet refused
with ValueError, never another exception."""

from __future__ import annotations

import contextlib
import struct

import pytest
from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, SRV, TXT, A, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from ka_core.names import dns_wire
from ka_core.names.dns_wire import Record, Truncated, build_query, parse_response, read_name


def reply_to(query: bytes, *answers: RR, rcode: int = RCODE.NOERROR) -> DNSRecord:
    reply = DNSRecord.parse(query).reply()
    reply.header.rcode = rcode
    for rr in answers:
        reply.add_answer(rr)
    return reply


def test_query_is_what_a_dns_server_reads() -> None:
    packet = build_query(0x1234, "_sip._udp.Example.COM.", dns_wire.SRV)
    parsed = DNSRecord.parse(packet)
    assert parsed.header.id == 0x1234 and parsed.header.rd == 1 and parsed.header.qr == 0
    assert str(parsed.q.qname) == "_sip._udp.Example.COM." and parsed.q.qtype == QTYPE.SRV
    assert len(parsed.questions) == 1 and not parsed.rr and not parsed.ar


@pytest.mark.parametrize(
    "name", ["", ".", "a..b", "x" * 64 + ".com", ".".join(["abcdefghi"] * 26), "bücher.de"]
)
def test_names_dns_cannot_carry_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        build_query(1, name, dns_wire.A)


def test_answers_of_every_type_with_compression() -> None:
    query = build_query(7, "_sip._tcp.gw.example.com", dns_wire.SRV)
    reply = reply_to(
        query,
        RR(
            "_sip._tcp.gw.example.com", QTYPE.SRV, ttl=120, rdata=SRV(10, 60, 5070, "a.example.com")
        ),
        RR("_sip._tcp.gw.example.com", QTYPE.SRV, ttl=90, rdata=SRV(20, 0, 5060, "B.example.com")),
        RR("a.example.com", QTYPE.CNAME, ttl=30, rdata=CNAME("real.example.com")),
        RR("real.example.com", QTYPE.A, ttl=10, rdata=A("192.0.2.1")),
        RR("real.example.com", QTYPE.AAAA, ttl=11, rdata=AAAA("2001:db8::0:1")),
        RR("real.example.com", QTYPE.MX, ttl=10, rdata=MX("mail.example.com")),
        RR("real.example.com", QTYPE.TXT, ttl=10, rdata=TXT("skipped")),
    )
    data = reply.pack()
    assert data.count(b"example") < 5, "dnslib compressed the names"
    rcode, records = parse_response(data, 7, "_sip._tcp.gw.example.com", dns_wire.SRV)
    assert rcode == dns_wire.NOERROR
    assert records == [
        Record("_sip._tcp.gw.example.com", dns_wire.SRV, 120, (10, 60, 5070, "a.example.com")),
        Record("_sip._tcp.gw.example.com", dns_wire.SRV, 90, (20, 0, 5060, "b.example.com")),
        Record("a.example.com", dns_wire.CNAME, 30, "real.example.com"),
        Record("real.example.com", dns_wire.A, 10, "192.0.2.1"),
        Record("real.example.com", dns_wire.AAAA, 11, "2001:db8::1"),
    ]


def test_nxdomain_and_an_empty_answer() -> None:
    query = build_query(9, "nowhere.example", dns_wire.A)
    assert parse_response(reply_to(query, rcode=RCODE.NXDOMAIN).pack(), 9) == (3, [])
    assert parse_response(reply_to(query).pack(), 9, "NOWHERE.example.", dns_wire.A) == (0, [])
    servfail = reply_to(query, rcode=RCODE.SERVFAIL).pack()
    assert parse_response(servfail, 9)[0] == dns_wire.SERVFAIL
    assert dns_wire.rcode_name(2) == "SERVFAIL" and dns_wire.rcode_name(11) == "RCODE 11"


def test_replies_to_another_query_are_refused() -> None:
    query = build_query(100, "gw.example", dns_wire.A)
    data = reply_to(query, RR("gw.example", QTYPE.A, rdata=A("192.0.2.7"))).pack()
    with pytest.raises(ValueError, match="not a reply"):
        parse_response(data, 101)
    with pytest.raises(ValueError, match="another question"):
        parse_response(data, 100, "other.example", dns_wire.A)
    with pytest.raises(ValueError, match="another question"):
        parse_response(data, 100, "gw.example", dns_wire.AAAA)
    with pytest.raises(ValueError, match="not a reply"):
        parse_response(query, 100)  # QR clear: a query, not a reply


def test_truncated_reply_over_udp_and_tcp() -> None:
    query = build_query(5, "big.example", dns_wire.A)
    reply = reply_to(query, RR("big.example", QTYPE.A, rdata=A("192.0.2.9")))
    reply.header.tc = 1
    with pytest.raises(Truncated):
        parse_response(reply.pack(), 5)
    assert parse_response(reply.pack(), 5, tcp=True)[1][0].data == "192.0.2.9"
    assert dns_wire.tcp_frame(query) == struct.pack("!H", len(query)) + query


def test_every_cut_of_a_reply_is_a_value_error() -> None:
    query = build_query(3, "gw.example", dns_wire.SRV)
    data = reply_to(
        query,
        RR("gw.example", QTYPE.SRV, rdata=SRV(1, 2, 5060, "a.gw.example")),
        RR("a.gw.example", QTYPE.AAAA, rdata=AAAA("2001:db8::7")),
    ).pack()
    parse_response(data, 3)
    for end in range(len(data)):
        with pytest.raises(ValueError):
            parse_response(data[:end], 3)


def _header(ancount: int = 1) -> bytes:
    return struct.pack("!HHHHHH", 1, 0x8180, 1, ancount, 0, 0)


QUESTION = b"\x02gw\x07example\x00" + struct.pack("!HH", 1, 1)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 5) + b"\x01\x02\x03\x04\x05", "4 bytes"),
        (b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 60, 4) + b"\x01\x02\x03\x04", "16 bytes"),
        (b"\xc0\x0c" + struct.pack("!HHIH", 33, 1, 60, 3) + b"\x00\x01\x00", "too short"),
        (b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, 3) + b"\xc0\x0c\x00", "length"),
        (b"\xc0\x40" + struct.pack("!HHIH", 1, 1, 60, 4) + b"\x01\x02\x03\x04", "forward"),
        (b"\x80\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + b"\x01\x02\x03\x04", "label type"),
    ],
)  # fmt: skip
def test_malformed_records(answer: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_response(_header() + QUESTION + answer, 1)


def test_compression_loops_end() -> None:
    # a name whose label is followed by a pointer back to that label: an endless name
    data = _header(0) + b"\x01a\xc0\x0c"
    with pytest.raises(ValueError):
        read_name(data, 12)
    with pytest.raises(ValueError):
        read_name(b"\xc0\x00", 0)  # points at itself


def test_records_of_other_classes_are_skipped_and_big_ttls_are_zero() -> None:
    chaos = b"\xc0\x0c" + struct.pack("!HHIH", 1, 3, 60, 4) + b"\x01\x02\x03\x04"
    huge = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0x80000001, 4) + b"\x0a\x00\x00\x01"
    _, records = parse_response(_header(2) + QUESTION + chaos + huge, 1)
    assert records == [Record("gw.example", dns_wire.A, 0, "10.0.0.1")]


@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_response(data, struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0)


@given(st.integers(0, 200), st.integers(0, 255))
def test_flipped_bytes_never_raise_anything_but_value_error(at: int, value: int) -> None:
    query = build_query(11, "gw.example", dns_wire.SRV)
    data = bytearray(
        reply_to(
            query,
            RR("gw.example", QTYPE.SRV, rdata=SRV(1, 2, 5060, "a.gw.example")),
            RR("a.gw.example", QTYPE.A, rdata=A("192.0.2.1")),
        ).pack()
    )
    data[at % len(data)] = value
    with contextlib.suppress(ValueError):
        parse_response(bytes(data), 11)
