"""RFC 3263 NAPTR -> SRV -> A/AAAA (ka_core.names.resolve with ``naptr``), NAPTR on the
wire (ka_core.names.dns_wire) and failover across DNS servers (ka_core.names.servers,
kemi.dns_client.DnsServers)."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from dnslib import DNSRecord

from ka_core.config.kaconfig import load_config
from ka_core.errors import InvalidArgument
from ka_core.names import dns_wire
from ka_core.names.resolve import Lookup, Resolution, Target, run_lookup, target_uri
from ka_core.names.servers import Failover, is_answer, parse_dns_servers, servers_text
from ka_core.uri import parse_uri
from kemi import dns_client
from tests.harness.kamailio import free_address
from tests.peers.dns_zone import Zone, ZoneServer


def run(uri: str, zone: Zone, naptr: bool = True) -> Resolution:
    """Resolve ``uri`` against ``zone``, every query and reply going through the wire codec."""
    lookup = Lookup(parse_uri(uri), 300, naptr)
    qid = 0
    while (query := lookup.next_query()) is not None:
        qid += 1
        packet = dns_wire.build_query(qid, *query)
        reply = zone.resolve(DNSRecord.parse(packet), SimpleNamespace(protocol="udp"))
        assert reply is not None
        lookup.answer(query, *dns_wire.parse_response(reply.pack(), qid, *query))
    return lookup.result()


@pytest.fixture
def zone() -> Zone:
    z = Zone()
    z.add("gw.ka.test", "NAPTR", (20, 10, "S", "SIP+D2U", "_sip._udp.gw.ka.test"))
    z.add("gw.ka.test", "NAPTR", (10, 50, "s", "SIP+D2T", "_sip._tcp.gw.ka.test"))
    z.add("gw.ka.test", "NAPTR", (5, 10, "S", "SIP+D2S", "_sip._sctp.gw.ka.test"))
    z.add("_sip._tcp.gw.ka.test", "SRV", (10, 0, 5070, "a.ka.test"))
    z.add("_sip._udp.gw.ka.test", "SRV", (10, 0, 5080, "a.ka.test"))
    z.add("_sip._sctp.gw.ka.test", "SRV", (10, 0, 5090, "a.ka.test"))
    z.add("a.ka.test", "A", "10.0.0.1")
    return z


def test_naptr_picks_the_most_preferred_usable_service_then_srv_then_a(zone: Zone) -> None:
    assert run("sip:gw.ka.test", zone).targets == (Target("10.0.0.1", 5070, "tcp"),)
    asked = [(name, rtype) for _, name, rtype in zone.asked]
    assert asked[:2] == [("gw.ka.test", "NAPTR"), ("_sip._tcp.gw.ka.test", "SRV")]
    assert ("_sip._sctp.gw.ka.test", "SRV") not in asked, "SCTP is skipped: pings cannot use it"


def test_naptr_is_asked_only_when_enabled_and_without_port_or_transport(zone: Zone) -> None:
    assert run("sip:gw.ka.test", zone, naptr=False).targets == (Target("10.0.0.1", 5080, "udp"),)
    zone.add("gw.ka.test", "A", "10.0.0.9")
    assert run("sip:gw.ka.test:5060", zone).targets == (Target("10.0.0.9", 5060, "udp"),)
    assert run("sip:gw.ka.test;transport=udp", zone).targets == (Target("10.0.0.1", 5080, "udp"),)
    assert all(rtype != "NAPTR" for _, _, rtype in zone.asked)


def test_sips_takes_only_sips_d2t_and_no_usable_record_falls_back_to_srv(zone: Zone) -> None:
    zone.add("_sips._tcp.gw.ka.test", "SRV", (10, 0, 5061, "a.ka.test"))
    # no SIPS+D2T record: the URI's own SRV name, as without NAPTR
    assert run("sips:gw.ka.test", zone).targets == (Target("10.0.0.1", 5061, "tls"),)
    zone.add("gw.ka.test", "NAPTR", (50, 10, "S", "SIPS+D2T", "_sips._tcp.gw.ka.test"))
    assert run("sips:gw.ka.test", zone).targets == (Target("10.0.0.1", 5061, "tls"),)
    empty = Zone()
    empty.add("_sip._udp.gw.ka.test", "SRV", (10, 0, 5060, "a.ka.test"))
    empty.add("a.ka.test", "A", "10.0.0.1")
    empty.add("gw.ka.test", "NAPTR", (10, 10, "U", "E2U+sip", ""))
    assert run("sip:gw.ka.test", empty).targets == (Target("10.0.0.1", 5060, "udp"),)


def test_a_naptr_chosen_transport_is_spelled_out_in_the_target_uri() -> None:
    name = parse_uri("sip:gw.ka.test")
    assert target_uri(name, Target("10.0.0.1", 5070, "tcp")) == "sip:10.0.0.1:5070;transport=tcp"
    assert target_uri(name, Target("10.0.0.1", 5060, "udp")) == "sip:10.0.0.1:5060"


def test_naptr_with_no_srv_uses_the_name_on_the_chosen_transports_port() -> None:
    z = Zone()
    z.add("gw.ka.test", "NAPTR", (10, 10, "S", "SIPS+D2T", "_sips._tcp.gw.ka.test"))
    z.add("gw.ka.test", "A", "10.0.0.7")
    assert run("sip:gw.ka.test", z).targets == (Target("10.0.0.7", 5061, "tls"),)


def naptr_reply(rdata: bytes) -> bytes:
    header = struct.pack("!HHHHHH", 7, 0x8180, 1, 1, 0, 0)
    question = dns_wire.encode_name("gw.ka.test") + struct.pack("!HH", dns_wire.NAPTR, 1)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", dns_wire.NAPTR, 1, 60, len(rdata)) + rdata
    return header + question + answer


def test_naptr_records_on_the_wire_and_malformed_ones() -> None:
    good = struct.pack("!HH", 10, 20) + b"\x01S\x07SIP+D2T\x00" + dns_wire.encode_name("_s.ka.test")
    _, records = dns_wire.parse_response(naptr_reply(good), 7, "gw.ka.test", dns_wire.NAPTR)
    assert records[0].data == dns_wire.Naptr(10, 20, "s", "sip+d2t", "", "_s.ka.test")
    for bad in (good[:6], good[:-3], struct.pack("!HH", 1, 1) + b"\x09S", good + b"\x00"):
        with pytest.raises(ValueError):
            dns_wire.parse_response(naptr_reply(bad), 7, "gw.ka.test", dns_wire.NAPTR)


# -- several DNS servers ---------------------------------------------------------------------


def test_failover_order_keeps_the_server_that_answered() -> None:
    order = Failover(3)
    assert order.order() == [0, 1, 2]
    order.answered(1)
    assert order.order() == [1, 2, 0]
    assert is_answer(dns_wire.NOERROR) and is_answer(dns_wire.NXDOMAIN)
    assert not is_answer(dns_wire.SERVFAIL) and not is_answer(5)


def test_dns_server_lists() -> None:
    servers = parse_dns_servers('"10.0.0.53, [::1]:5353 127.0.0.1:53"')
    assert servers == (("10.0.0.53", 53), ("::1", 5353), ("127.0.0.1", 53))
    assert servers_text(servers) == "10.0.0.53:53 [::1]:5353 127.0.0.1:53"
    assert load_config({"DNS_SERVER": "10.0.0.53 10.0.0.54:5353"}).dns_server == (
        "10.0.0.53:53 10.0.0.54:5353"
    )
    assert load_config({"DNS_NAPTR": "1"}).dns_naptr == 1 and load_config({}).dns_naptr == 0
    for defines, message in [
        ({"DNS_SERVER": "10.0.0.53 ns.example"}, "dns_server: bad DNS server 'ns.example'"),
        ({"DNS_SERVER": "10.0.0.53 10.0.0.53:53"}, "dns_server: a DNS server is listed twice"),
        ({"DNS_NAPTR": "2"}, "dns_naptr: 2 out of range"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            load_config(defines)


def test_a_dead_first_server_hands_the_query_to_the_second(zone_server: ZoneServer) -> None:
    zone_server.zone.add("gw.ka.test", "A", "10.0.0.1")
    dead = free_address()
    servers = dns_client.DnsServers((dead, (zone_server.ip, zone_server.port)), timeout_s=0.2)
    uri = parse_uri("sip:gw.ka.test:5060")
    assert run_lookup(servers.query, uri, 300).targets == (Target("10.0.0.1", 5060, "udp"),)
    asked = len(zone_server.zone.asked)
    assert run_lookup(servers.query, uri, 300).targets
    assert len(zone_server.zone.asked) == asked + 2, "the second server is now asked first"


def test_servfail_goes_to_the_next_server_and_all_failing_fails_the_lookup(
    zone_server: ZoneServer,
) -> None:
    zone_server.zone.add("gw.ka.test", "A", "10.0.0.1")
    other_ip, other_port = free_address()
    bad = ZoneServer(other_ip, other_port, ServfailZone())
    try:
        servers = dns_client.DnsServers(
            ((other_ip, other_port), (zone_server.ip, zone_server.port)), timeout_s=0.2
        )
        result = run_lookup(servers.query, parse_uri("sip:gw.ka.test:5060"), 300)
        assert result.targets == (Target("10.0.0.1", 5060, "udp"),)
        only_bad = dns_client.DnsServers(((other_ip, other_port), free_address()), timeout_s=0.2)
        failed = run_lookup(only_bad.query, parse_uri("sip:gw.ka.test:5060"), 300)
        assert failed.failed and "SERVFAIL" in failed.reason
    finally:
        bad.stop()


class ServfailZone(Zone):
    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:  # type: ignore[override]
        reply = request.reply()
        reply.header.rcode = dns_wire.SERVFAIL
        return reply
