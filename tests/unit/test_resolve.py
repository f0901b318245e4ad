"""ka_core.names.resolve: RFC 3263 target selection, driven by a dnslib zone through the real wire
code (no sockets), the derived state of a name, and the DNS defines, settings and flags
that go with it (KA_DNS)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from dnslib import DNSRecord

from ka_core.config.kaconfig import load_config
from ka_core.errors import InvalidArgument
from ka_core.names import dns_wire
from ka_core.names.resolve import (
    MAX_TARGETS,
    Lookup,
    Resolution,
    Target,
    derive_state,
    is_name,
    service_name,
    target_uri,
)
from ka_core.names.servers import nameservers, parse_dns_server
from ka_core.probe.prober import Prober
from ka_core.settings import parse_settings
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.layout import FLAG_NAME
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import parse_uri
from tests.peers.dns_zone import Zone

UP, DOWN, DEG, UNK = State.UP, State.DOWN, State.DEGRADED, State.UNKNOWN


def run(uri: str, zone: Zone, refresh: int = 300) -> Resolution:
    """Resolve ``uri`` against ``zone``: each query built, answered and parsed as on the wire."""
    lookup = Lookup(parse_uri(uri), refresh)
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
    z.add("a.ka.test", "A", "10.0.0.1", ttl=40)
    z.add("b.ka.test", "A", "10.0.0.2", ttl=50)
    z.add("b.ka.test", "AAAA", "2001:db8::2", ttl=50)
    return z


@pytest.mark.parametrize(
    ("uri", "srv"),
    [
        ("sip:gw.ka.test", "_sip._udp.gw.ka.test"),
        ("gw.ka.test;transport=udp", "_sip._udp.gw.ka.test"),
        ("sip:gw.ka.test;transport=tcp", "_sip._tcp.gw.ka.test"),
        ("sip:gw.ka.test;transport=tls", "_sips._tcp.gw.ka.test"),
        ("sips:gw.ka.test", "_sips._tcp.gw.ka.test"),
        ("sips:user@gw.ka.test;transport=tcp", "_sips._tcp.gw.ka.test"),
        ("sip:gw.ka.test:5060", None),
        ("sips:gw.ka.test:5061", None),
    ],
)
def test_which_srv_name_is_asked(uri: str, srv: str | None) -> None:
    assert service_name(parse_uri(uri)) == srv


def test_target_uris_keep_scheme_user_and_transport() -> None:
    name = parse_uri("sips:gw@Gw.Ka.Test;transport=tcp")
    assert (
        target_uri(name, Target("10.0.0.1", 5061, "tcp")) == "sips:gw@10.0.0.1:5061;transport=tcp"
    )
    assert target_uri(parse_uri("gw.ka.test"), Target("2001:db8::1", 5060, "udp")) == (
        "sip:[2001:db8::1]:5060"
    )
    assert parse_uri(target_uri(name, Target("2001:db8::1", 5061, "tcp"))).host == "[2001:db8::1]"
    assert is_name(parse_uri("gw.ka.test")) and not is_name(parse_uri("sip:[::1]:5060"))
    assert not is_name(parse_uri("10.1.2.3"))


def test_srv_targets_in_priority_then_weight_order(zone: Zone) -> None:
    zone.add("_sip._udp.gw.ka.test", "SRV", (20, 0, 5080, "a.ka.test"), ttl=100)
    zone.add("_sip._udp.gw.ka.test", "SRV", (10, 10, 5070, "a.ka.test"), ttl=100)
    zone.add("_sip._udp.gw.ka.test", "SRV", (10, 90, 5060, "b.ka.test"), ttl=30)
    result = run("sip:gw.ka.test", zone)
    assert result.targets == (
        Target("10.0.0.2", 5060, "udp"),
        Target("2001:db8::2", 5060, "udp"),
        Target("10.0.0.1", 5070, "udp"),
        Target("10.0.0.1", 5080, "udp"),
    )
    assert result.ttl_s == 30 and not result.failed and result.reason == ""
    assert [q for _, q, _ in zone.asked].count("a.ka.test") == 2, "each host asked once per type"


def test_no_srv_falls_back_to_the_name_on_the_default_port(zone: Zone) -> None:
    zone.add("gw.ka.test", "A", "10.0.0.9", ttl=2)
    assert run("sip:gw.ka.test;transport=tcp", zone).targets == (Target("10.0.0.9", 5060, "tcp"),)
    assert run("sips:gw.ka.test", zone).targets == (Target("10.0.0.9", 5061, "tls"),)
    assert run("sip:gw.ka.test;transport=tls", zone).targets == (Target("10.0.0.9", 5061, "tls"),)
    assert run("sip:gw.ka.test", zone).ttl_s == 5, "a TTL below 5 s is clamped"
    asked = [(n, t) for _, n, t in zone.asked]
    assert ("_sip._tcp.gw.ka.test", "SRV") in asked and ("_sips._tcp.gw.ka.test", "SRV") in asked


def test_a_port_in_the_uri_means_a_and_aaaa_only(zone: Zone) -> None:
    zone.add("_sip._udp.b.ka.test", "SRV", (10, 0, 5999, "a.ka.test"))
    result = run("sip:b.ka.test:5070", zone, refresh=45)
    assert result.targets == (Target("10.0.0.2", 5070, "udp"), Target("2001:db8::2", 5070, "udp"))
    assert result.ttl_s == 45, "clamped to KA_DNS_REFRESH"
    assert {t for _, _, t in zone.asked} == {"A", "AAAA"}


def test_nxdomain_and_no_records_give_no_targets(zone: Zone) -> None:
    assert run("sip:nowhere.ka.test", zone) == Resolution((), 30, reason="NXDOMAIN")
    assert run("sip:nowhere.ka.test:5060", zone, refresh=10).ttl_s == 10
    zone.add("alias.ka.test", "CNAME", "nowhere-else.ka.test")
    assert run("sip:alias.ka.test:5060", zone).reason == "NXDOMAIN"
    zone.add("srv-only.ka.test", "SRV", (0, 0, 5060, "a.ka.test"))
    assert run("sip:srv-only.ka.test:5060", zone).reason == "no A/AAAA records"
    zone.add("_sip._udp.off.ka.test", "SRV", (0, 0, 0, "."))
    assert run("sip:off.ka.test", zone).reason == "SRV target '.'"
    zone.add("_sip._udp.dead.ka.test", "SRV", (0, 0, 5060, "nowhere.ka.test"))
    assert run("sip:dead.ka.test", zone).reason == "no SRV target has an address"


def test_cname_chains_in_the_answer_and_beyond_it(zone: Zone) -> None:
    zone.add("gw.ka.test", "CNAME", "alias.ka.test", ttl=20)
    zone.add("alias.ka.test", "CNAME", "b.ka.test", ttl=60)
    result = run("sip:gw.ka.test:5060", zone)
    assert result.targets == (Target("10.0.0.2", 5060, "udp"), Target("2001:db8::2", 5060, "udp"))
    assert result.ttl_s == 20, "the CNAME's TTL counts too"
    # a server that does not chase the alias: the lookup asks for it itself
    lookup = Lookup(parse_uri("sip:gw.ka.test:5060"), 300)
    cname = dns_wire.Record("gw.ka.test", dns_wire.CNAME, 60, "b.ka.test")
    lookup.answer(("gw.ka.test", dns_wire.A), 0, [cname])
    assert lookup.next_query() == ("b.ka.test", dns_wire.A)
    lookup.answer(("b.ka.test", dns_wire.A), 0, [dns_wire.Record("b.ka.test", 1, 60, "10.0.0.2")])
    assert lookup.next_query() == ("gw.ka.test", dns_wire.AAAA)


def test_a_cname_loop_ends(zone: Zone) -> None:
    zone.add("x.ka.test", "CNAME", "y.ka.test")
    zone.add("y.ka.test", "CNAME", "x.ka.test")
    assert run("sip:x.ka.test:5060", zone).targets == ()


def test_failures_fail_the_whole_lookup() -> None:
    lookup = Lookup(parse_uri("sip:gw.ka.test"), 300)
    lookup.answer(("_sip._udp.gw.ka.test", dns_wire.SRV), dns_wire.SERVFAIL, [])
    assert lookup.next_query() is None
    assert lookup.result() == Resolution(
        (), 30, failed=True, reason="_sip._udp.gw.ka.test SRV: SERVFAIL"
    )
    lookup = Lookup(parse_uri("sip:gw.ka.test:5060"), 20)
    lookup.fail(("gw.ka.test", dns_wire.A), "timed out")
    assert lookup.next_query() is None
    assert lookup.result() == Resolution((), 20, failed=True, reason="gw.ka.test A: timed out")
    with pytest.raises(ValueError, match="not asked"):
        Lookup(parse_uri("sip:gw.ka.test:5060"), 20).answer(("other", dns_wire.A), 0, [])


def test_targets_are_capped_and_deduplicated() -> None:
    zone = Zone()
    for i in range(MAX_TARGETS + 10):
        zone.add("many.ka.test", "A", f"10.1.0.{i + 1}")
    zone.add("_sip._udp.twice.ka.test", "SRV", (10, 0, 5060, "many.ka.test"))
    zone.add("_sip._udp.twice.ka.test", "SRV", (20, 0, 5060, "many.ka.test"))
    assert len(run("sip:many.ka.test:5060", zone).targets) == MAX_TARGETS
    assert len(run("sip:twice.ka.test", zone).targets) == MAX_TARGETS


@pytest.mark.parametrize(
    ("states", "any_", "all_"),
    [
        ([], DOWN, DOWN),
        ([UP], UP, UP),
        ([UP, DOWN], UP, DEG),
        ([UP, UNK], UP, UNK),
        ([DEG, DOWN], DEG, DEG),
        ([UP, DEG], UP, DEG),
        ([DOWN, DOWN], DOWN, DOWN),
        ([DOWN, UNK], UNK, UNK),
        ([UNK], UNK, UNK),
        ([UP, UP], UP, UP),
    ],
)
def test_derived_state(states: list[State], any_: State, all_: State) -> None:
    assert derive_state(states, "any") is any_
    assert derive_state(states, "all") is all_


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("", ("", 53)),
        ('""', ("", 53)),
        ("10.0.0.53", ("10.0.0.53", 53)),
        ('"127.0.0.1:5353"', ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[2001:db8::0:53]:5300", ("2001:db8::53", 5300)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_dns_server(text: str, server: tuple[str, int]) -> None:
    assert parse_dns_server(text) == server


@pytest.mark.parametrize(
    "text",
    ["dns.example", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536", "[::1", "[::1]x", "[1.2.3.4]:53"],
)
def test_bad_dns_servers(text: str) -> None:
    with pytest.raises(ValueError, match="bad DNS server"):
        parse_dns_server(text)


def test_nameservers_of_resolv_conf() -> None:
    conf = "# comment\nsearch example\nnameserver bogus\nnameserver 192.0.2.53\nnameserver ::1\n"
    assert nameservers(conf) == (("192.0.2.53", 53), ("::1", 53))
    assert nameservers("nameserver fe80::1%eth0") == (("fe80::1", 53),)
    assert nameservers("") == (("127.0.0.1", 53),)
    four = "".join(f"nameserver 192.0.2.{i}\n" for i in range(4))
    assert [a for a, _ in nameservers(four)] == ["192.0.2.0", "192.0.2.1", "192.0.2.2"]


def test_dns_defines() -> None:
    assert (load_config({}).dns, load_config({}).dns_state) == (0, "any")
    config = load_config(
        {"DNS": "1", "DNS_SERVER": '"[::1]:5353"', "DNS_REFRESH": "60", "DNS_STATE": "ALL"}
    )
    assert (config.dns, config.dns_server, config.dns_refresh, config.dns_state) == (
        1, "[::1]:5353", 60, "all",
    )  # fmt: skip
    for name, value in [("DNS", "2"), ("DNS_SERVER", "ns.example"), ("DNS_REFRESH", "4"),
                        ("DNS_STATE", "most")]:  # fmt: skip
        with pytest.raises(InvalidArgument, match=name.lower()):
            load_config({name: value})


def test_target_of_is_internal_and_survives_a_semicolon() -> None:
    text = "down_after=2;target_of=sip:gw.ka.test;transport=tcp"
    settings = parse_settings(text, internal=True)
    assert settings.target_of == "sip:gw.ka.test;transport=tcp" and settings.down_after == 2
    assert settings.text == text
    with pytest.raises(InvalidArgument, match="unknown setting 'target_of'"):
        parse_settings("target_of=sip:x.ka.test")
    with pytest.raises(InvalidArgument, match="unknown setting 'target_of'"):
        registry.add(table(), "10.0.0.1", "t", interval_s=None, wall=0, settings=text)


def table() -> SharedTable:
    buf = bytearray(buffer_size(16, 64))
    SharedTable.format_buffer(buf, 16, 64)
    return SharedTable(buf, threading.Lock())


def test_names_get_flag_name_only_with_ka_dns_and_are_never_pinged() -> None:
    t = table()
    name = registry.add(t, "sip:gw.ka.test", "t", interval_s=1, wall=0, resolve_names=True)
    ip = registry.add(t, "sip:10.0.0.1", "t", interval_s=1, wall=0, resolve_names=True)
    plain = registry.add(t, "sip:gw.ka.test", "u", interval_s=1, wall=0)
    registry.add_static(t, [(parse_uri("other.ka.test"), parse_settings(""))], "_params",
                        interval_s=1, wall=0, resolve_names=True)  # fmt: skip
    static = t.find(parse_uri("other.ka.test").key)
    assert [bool(t.flags(s) & FLAG_NAME) for s in (name.slot, ip.slot, plain.slot, static)] == [
        True, False, False, True,
    ]  # fmt: skip
    prober = Prober(t, delete_counter=5, ping_timeout_s=0.5)
    pinged = set()
    for i in range(30):
        step = prober.step(i * 0.1, i * 0.1, t.drain() if i == 0 else [])
        pinged |= {p.uri for p in step.pings}
    assert pinged == {"sip:10.0.0.1", "sip:gw.ka.test"}, "the name owned by u has no FLAG_NAME"


def test_set_state_and_remove_slot() -> None:
    t = table()
    rec = registry.add(t, "sip:gw.ka.test", "t", interval_s=1, wall=0)
    assert t.set_state(rec.slot, rec.gen, State.UP, 100.0)
    assert t.set_state(rec.slot, rec.gen, State.DOWN, 200.0)
    got = t.read(rec.slot)
    assert (got.state, got.last_checked, got.last_up, got.last_down) == (DOWN, 200.0, 100.0, 200.0)
    assert not t.set_state(rec.slot, rec.gen + 1, State.UP, 300.0)
    assert not t.remove_slot(rec.slot, rec.gen + 1) and t.count == 1
    assert t.remove_slot(rec.slot, rec.gen) and t.count == 0
    assert not t.remove_slot(rec.slot, rec.gen)
