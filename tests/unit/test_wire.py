"""Pings without tm: listeners, request bytes, branches and UDP retransmissions."""

from __future__ import annotations

import json
import threading

from ka_core.probe.options import transport_of
from ka_core.probe.ping_text import user_agent
from ka_core.probe.prober import Prober
from ka_core.probe.wire import (
    Listener,
    Listeners,
    branch_for,
    options_request,
    parse_listeners,
    retransmit_offsets,
)
from ka_core.store import registry
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import parse_uri


def sockets(*entries: tuple[str, str, str, str]) -> str:
    result = [
        {"PROTO": p, "NAME": a, "ADDRLIST": {"ADDR": a}, "PORT": port, "ADVERTISE": adv}
        for p, a, port, adv in entries
    ]
    return json.dumps({"jsonrpc": "2.0", "result": result, "id": 1})


def test_retransmissions_follow_tms_timer_e_until_the_timeout() -> None:
    assert retransmit_offsets(2.0) == (0.5, 1.5)
    assert retransmit_offsets(10.0) == (0.5, 1.5, 3.5, 7.5)
    assert retransmit_offsets(0.5) == ()


def test_listeners_are_read_as_kamailio_prints_them() -> None:
    found = parse_listeners(
        sockets(
            ("udp", "127.0.0.1", "5060", "-"),
            ("sctp", "127.0.0.1", "5060", "-"),  # a ping cannot use it
            ("tcp", "::1", "5070", "-"),
            ("tls", "10.0.0.1", "5061", "sip.example.com"),
        )
    )
    assert [(x.spec, x.via) for x in found] == [
        ("udp:127.0.0.1:5060", "127.0.0.1"),
        ("tcp:[::1]:5070", "[::1]:5070"),
        ("tls:10.0.0.1:5061", "sip.example.com"),
    ]
    one = json.dumps({"result": {"PROTO": "udp", "ADDRLIST": {"ADDR": "10.1.1.1"}, "PORT": "5"}})
    assert [x.spec for x in parse_listeners(one)] == ["udp:10.1.1.1:5"]
    assert parse_listeners(json.dumps({"error": "no"})) == []


def test_the_first_listener_of_the_protocol_and_family_is_used_unless_one_is_forced() -> None:
    pick = Listeners(
        parse_listeners(
            sockets(
                ("udp", "10.0.0.1", "5060", "-"),
                ("udp", "10.0.0.2", "5060", "-"),
                ("udp", "::1", "5060", "-"),
                ("tcp", "10.0.0.1", "5060", "-"),
            )
        )
    ).pick
    assert pick("udp", False).spec == "udp:10.0.0.1:5060"  # type: ignore[union-attr]
    assert pick("udp", True).spec == "udp:[::1]:5060"  # type: ignore[union-attr]
    assert pick("tcp", True).spec == "tcp:10.0.0.1:5060", "other family when only that one"  # type: ignore[union-attr]
    assert pick("tls", False) is None
    assert pick("udp", False, "udp:10.0.0.2:5060").spec == "udp:10.0.0.2:5060"  # type: ignore[union-attr]
    assert pick("udp", True, "UDP:[0::1]:5060").spec == "udp:[::1]:5060"  # type: ignore[union-attr]
    assert pick("udp", False, "udp:10.0.0.9:5060") is None, "no such listener"


def test_the_request_has_tms_header_lines() -> None:
    listener = Listener("udp", "127.0.0.1", 5060, "127.0.0.1")
    text = options_request(
        "sip:10.0.0.1:5070", "sip:ka@example.com", "cid", "z9hG4bKabc", listener,
        "kamailio (5.6.3 (x86_64/linux))",
    )  # fmt: skip
    assert text.split("\r\n") == [
        "OPTIONS sip:10.0.0.1:5070 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKabc",
        "To: <sip:10.0.0.1:5070>",
        "From: <sip:ka@example.com>;tag=abc",
        "CSeq: 10 OPTIONS",
        "Call-ID: cid",
        "Max-Forwards: 70",
        "Content-Length: 0",
        "User-Agent: kamailio (5.6.3 (x86_64/linux))",
        "",
        "",
    ]
    assert user_agent("kamailio 5.6.3 (x86_64/linux) ") == "kamailio (5.6.3 (x86_64/linux))"


def test_branches_are_keyed_so_replies_cannot_be_forged_without_the_ping() -> None:
    a, b = b"k" * 16, b"j" * 16
    assert branch_for(a, "cid").startswith("z9hG4bK")
    assert branch_for(a, "cid") == branch_for(a, "cid")
    assert branch_for(a, "cid") != branch_for(b, "cid") != branch_for(a, "cid2")


def test_transport_of_a_destination() -> None:
    assert [transport_of(parse_uri(u)) for u in ("sip:h", "sips:h", "sip:h;transport=tcp")] == [
        "udp",
        "tls",
        "tcp",
    ]


def _prober(uri: str, timeout: float = 2.0, others: int = 0) -> tuple[SharedTable, Prober]:
    """``others``: destinations pinged with it every 5 s (many: the 100 ms grid)."""
    buf = bytearray(buffer_size(others + 8, 4 * others + 64))
    SharedTable.format_buffer(buf, others + 8, 4 * others + 64)
    table = SharedTable(buf, threading.Lock())
    registry.add(table, uri, "t", interval_s=10, wall=0)
    for i in range(others):
        registry.add(table, f"10.9.{i // 250}.{i % 250 + 1}", "t", interval_s=5, wall=0)
    prober = Prober(
        table, delete_counter=0, ping_timeout_s=timeout, retransmit=retransmit_offsets(timeout)
    )
    prober.step(99.95, 0, table.drain())  # adopted: the first ping is due at 100.0
    return table, prober


def sent_at(
    prober: Prober, table: SharedTable, start: float, end: float
) -> list[tuple[float, int]]:
    out, now = [], start
    while now <= end:
        step = prober.step(now, 0, table.drain())
        out += [(now, p.seq) for p in step.pings + step.resent if p.uri.startswith("sip:10.0.0.1")]
        now = round(now + 0.1, 1)
    return out


def test_an_unanswered_udp_ping_is_sent_again_at_half_a_second_and_one_and_a_half() -> None:
    table, prober = _prober("sip:10.0.0.1", others=1500)  # 300 pings/s: the 100 ms grid
    assert [t for t, _ in sent_at(prober, table, 100.0, 102.5)] == [100.0, 100.5, 101.5]


def test_on_a_coarse_grid_retransmissions_wait_for_the_next_tick() -> None:
    table, prober = _prober("sip:10.0.0.1")  # alone: the 1 s grid
    assert [t for t, _ in sent_at(prober, table, 100.0, 102.5)] == [100.0, 101.0]


def test_a_down_destinations_ping_is_not_sent_again() -> None:
    table, prober = _prober("sip:10.0.0.1", timeout=2.0)
    sent = sent_at(prober, table, 100.0, 112.5)  # interval 10: DOWN after the first
    assert [t for t, _ in sent] == [100.0, 101.0, 110.0], "the ping at 110 has no retransmission"


def test_an_answered_ping_and_a_tcp_ping_are_not_sent_again() -> None:
    table, prober = _prober("sip:10.0.0.1")
    (ping,) = prober.step(100.0, 0, table.drain()).pings
    table.push_reply(ping.seq, 200, 100.2, 0)
    assert sent_at(prober, table, 100.4, 102.5) == []
    table, prober = _prober("sip:10.0.0.1;transport=tcp")
    assert [t for t, _ in sent_at(prober, table, 100.0, 102.5)] == [100.0]


def test_listeners_as_kamailio_6_prints_them() -> None:
    """6.x: lower-case names, ``advertise`` as ``proto:host:port``."""
    result = [
        {"af": "inet", "proto": "udp", "name": "10.0.0.1", "addrlist": {"addr": "10.0.0.1"},
         "port": "5060", "sockstr": "udp:10.0.0.1:5060", "advertise": "-"},
        {"af": "inet", "proto": "tcp", "name": "10.0.0.1", "addrlist": {"addr": "10.0.0.1"},
         "port": "5060", "advertise": "tcp:198.51.100.7:5080"},
        {"af": "inet6", "proto": "tls", "name": "::1", "addrlist": {"addr": "::1"},
         "port": "5061", "advertise": "tls:[2001:db8::1]:5061"},
    ]  # fmt: skip
    found = parse_listeners(json.dumps({"jsonrpc": "2.0", "result": result, "id": 1}))
    assert [(x.spec, x.via) for x in found] == [
        ("udp:10.0.0.1:5060", "10.0.0.1"),
        ("tcp:10.0.0.1:5060", "198.51.100.7:5080"),
        ("tls:[::1]:5061", "[2001:db8::1]"),
    ]
