"""kemi.dns_resolver and kemi.dns_client: host-name destinations in the pinger's core thread
on a FakeKsr in virtual time (targets in and out, derived state, logs, events, deletes,
pause), and the blocking client against a dnslib server on loopback (UDP, TCP after a
truncated reply, timeouts)."""

from __future__ import annotations

import threading
import time

import pytest

from ka_core.names import dns_wire
from ka_core.names import machine as names_machine
from ka_core.names.resolve import Resolution, Target, run_lookup
from ka_core.script.callbacks import DestinationEvent
from ka_core.state import State
from ka_core.uri import SipUri, parse_uri
from kemi import api, dns_client, dns_resolver, functions, pinger
from tests.harness.kamailio import free_address
from tests.peers.dns_zone import ZoneServer
from tests.unit.conftest import Glue, GlueFactory

NAME = "sip:gw.ka.test"
T1, T2, T3 = (
    Target("10.0.0.1", 5060, "udp"),
    Target("10.0.0.2", 5070, "udp"),
    Target("10.0.0.3", 5060, "udp"),
)


class FakeDns:
    """What the resolver thread would get: host -> Resolution, and who asked."""

    def __init__(self) -> None:
        self.answers: dict[str, Resolution] = {}
        self.asked: list[str] = []

    def __call__(
        self, query: object, uri: SipUri, refresh_s: int, naptr: bool = False
    ) -> Resolution:
        self.asked.append(uri.host)
        return self.answers.get(uri.host, Resolution((), 30, reason="NXDOMAIN"))


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, int, int, int]] = []

    def ka_event(self, evname: str, ev: DestinationEvent) -> None:
        self.seen.append((evname, ev.uri, ev.owner, ev.old_state, ev.new_state, ev.code))


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    fake = FakeDns()
    monkeypatch.setattr(dns_resolver, "run_lookup", fake)
    return fake


@pytest.fixture
def dns_glue(glue_factory: GlueFactory) -> Glue:
    return glue_factory(
        KA_DNS="1", KA_DNS_SERVER="127.0.0.1:5353", KA_PING_INTERVAL="1",
        KA_PING_TIMEOUT_MS="500", KA_EVENT_CALLBACK="ka_event",
    )  # fmt: skip


def tick(glue: Glue, p: pinger.Pinger, to: float, resolve: bool = True) -> None:
    """The core step at ``to``; with ``resolve`` the resolver thread's due lookups first."""
    glue.clock.now = to
    if resolve:
        p._dns.resolver.step()  # type: ignore[union-attr]
    glue.rt.wake()
    p.run_once()


def answer(glue: Glue, uri: str, code: int, source: str) -> None:
    callid = next(c for ruri, _, c in reversed(glue.ksr.sent) if ruri == uri)
    glue.ksr.reply = (callid, code, source)
    pinger.on_reply(glue.rt)


def listed(glue: Glue) -> dict[str, int]:
    return {r.uri: int(r.state) for r in glue.rt.table.records()}


def test_targets_are_probed_and_the_name_is_up_when_one_is(
    dns_glue: Glue, fake_dns: FakeDns
) -> None:
    glue, events = dns_glue, Events()
    fake_dns.answers["gw.ka.test"] = Resolution((T1, T2), 60)
    assert functions.ka_add_destination(NAME, "t", "down_after=1") == 1
    p = pinger.Pinger(glue.rt, handler=events)
    tick(glue, p, 1000.0)  # the name is noticed, the resolver asked
    tick(glue, p, 1000.01)  # the answer: two targets
    assert fake_dns.asked == ["gw.ka.test"]
    assert listed(glue) == {NAME: 0, "sip:10.0.0.1:5060": 0, "sip:10.0.0.2:5070": 0}
    t1 = api.find_destination("sip:10.0.0.1:5060", "t")
    assert t1 is not None and t1.settings == "down_after=1;target_of=sip:gw.ka.test"
    info = glue.ksr.texts("info")
    assert f"DNS: destination {NAME} owner t: target sip:10.0.0.2:5070 added" in info
    for now in (1000.1, 1000.2, 1000.3, 1000.4, 1000.5):
        tick(glue, p, now)
    assert sorted(r for r, _, _ in glue.ksr.sent) == ["sip:10.0.0.1:5060", "sip:10.0.0.2:5070"]
    answer(glue, "sip:10.0.0.1:5060", 200, "10.0.0.1")
    tick(glue, p, 1000.6)
    assert listed(glue)[NAME] == 1 and functions.ka_is_alive(NAME) == 1
    assert f"destination {NAME} owner t: UNKNOWN -> UP" in glue.ksr.texts("info")
    tick(glue, p, 1001.0)  # the other one times out
    assert listed(glue) == {NAME: 1, "sip:10.0.0.1:5060": 1, "sip:10.0.0.2:5070": 2}
    assert ("keepalive:dst-down", "sip:10.0.0.2:5070", "t", 0, 2, 408) not in events.seen
    name = api.find_destination(NAME, "t")
    assert name is not None and name.pings == 0 and name.last_up == glue.rt.wall() - 0.4
    # the answering target goes down: the name follows, with that reply's code
    for now in (1001.1, 1001.2, 1001.3, 1001.4, 1001.5):
        tick(glue, p, now)
    answer(glue, "sip:10.0.0.1:5060", 503, "10.0.0.1")
    tick(glue, p, 1001.6)
    assert listed(glue)[NAME] == 2 and functions.ka_is_alive(NAME) == 2
    assert ("keepalive:dst-down", NAME, "t", 1, 2, 503) in events.seen
    assert not any(r == NAME for r, _, _ in glue.ksr.sent), "the name itself is never pinged"


def test_all_mode_needs_every_target_up(glue_factory: GlueFactory, fake_dns: FakeDns) -> None:
    glue = glue_factory(KA_DNS="1", KA_DNS_STATE="all", KA_DNS_SERVER="127.0.0.1",
                        KA_PING_INTERVAL="1", KA_PING_TIMEOUT_MS="500")  # fmt: skip
    fake_dns.answers["gw.ka.test"] = Resolution((T1, T2), 60)
    assert glue.rt.commands.call("keepalive.add", [NAME, "t"])
    p = pinger.Pinger(glue.rt)
    for i in range(8):
        tick(glue, p, 1000.0 + i / 10)
    answer(glue, "sip:10.0.0.1:5060", 200, "10.0.0.1")
    tick(glue, p, 1000.75)
    assert listed(glue)[NAME] == 0, "one target still UNKNOWN"
    tick(glue, p, 1001.3)
    assert listed(glue)[NAME] == 3, "one UP, one DOWN: DEGRADED, not UP"


def test_target_set_changes_nxdomain_failures_and_delete(dns_glue: Glue, fake_dns: FakeDns) -> None:
    glue = dns_glue
    fake_dns.answers["gw.ka.test"] = Resolution((T1, T2), 10)
    assert api.add_destination(NAME, "t") == 0
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.01)
    fake_dns.answers["gw.ka.test"] = Resolution((T2, T3), 10)
    tick(glue, p, 1010.0)  # the TTL ran out: asked again
    tick(glue, p, 1010.01)
    assert set(listed(glue)) == {NAME, "sip:10.0.0.2:5070", "sip:10.0.0.3:5060"}
    assert (
        f"DNS: destination {NAME} owner t: target sip:10.0.0.1:5060 removed: no longer in DNS"
        in (glue.ksr.texts("info"))
    )
    # a failed lookup keeps the targets
    fake_dns.answers["gw.ka.test"] = Resolution((), 30, failed=True, reason="x SRV: SERVFAIL")
    tick(glue, p, 1020.0)
    tick(glue, p, 1020.01)
    assert len(listed(glue)) == 3
    assert (
        f"DNS: destination {NAME} owner t: lookup failed: x SRV: SERVFAIL; keeping 2 targets"
        in (glue.ksr.texts("warn"))
    )
    # NXDOMAIN: no targets, DOWN, said once
    del fake_dns.answers["gw.ka.test"]
    for now in (1050.0, 1050.01, 1080.0, 1080.01):
        tick(glue, p, now)
    assert listed(glue) == {NAME: 2}
    nx = [t for t in glue.ksr.texts("warn") if "NXDOMAIN" in t]
    assert nx == [f"DNS: destination {NAME} owner t: NXDOMAIN: no targets (DOWN)"]
    assert fake_dns.asked.count("gw.ka.test") == 5
    # it comes back, then the name is deleted: its targets go with it
    fake_dns.answers["gw.ka.test"] = Resolution((T1,), 60)
    tick(glue, p, 1110.0)
    tick(glue, p, 1110.01)
    assert f"DNS: destination {NAME} owner t: resolves again: 1 targets" in glue.ksr.texts()
    assert set(listed(glue)) == {NAME, "sip:10.0.0.1:5060"}
    assert api.del_destination(NAME, "t") == 0
    tick(glue, p, 1110.5)
    assert listed(glue) == {}
    tick(glue, p, 1200.0)
    assert fake_dns.asked.count("gw.ka.test") == 6, "a deleted name is no longer resolved"


def test_first_lookup_failing_means_down_and_a_users_own_target_is_left_alone(
    dns_glue: Glue, fake_dns: FakeDns
) -> None:
    glue = dns_glue
    fake_dns.answers["gw.ka.test"] = Resolution((), 30, failed=True, reason="timed out")
    assert functions.ka_add_destination(NAME, "t") == 1
    assert functions.ka_add_destination("sip:10.0.0.1:5060", "t") == 1  # the user's own
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.01)
    assert listed(glue)[NAME] == 2
    assert "lookup failed: timed out; no targets" in glue.ksr.texts("warn")[-1]
    fake_dns.answers["gw.ka.test"] = Resolution((T1, T2), 60)
    tick(glue, p, 1030.0)
    tick(glue, p, 1030.01)
    own = "target sip:10.0.0.1:5060 is already a destination of its own: counted, kept"
    assert any(t.endswith(own) for t in glue.ksr.texts("info"))
    assert listed(glue)[NAME] == 0, "two targets, both UNKNOWN"
    assert functions.ka_del_destination(NAME, "t") == 1
    tick(glue, p, 1030.5)
    assert list(listed(glue)) == ["sip:10.0.0.1:5060"], "the user's destination stays"


def test_pausing_the_name_pauses_its_targets(dns_glue: Glue, fake_dns: FakeDns) -> None:
    glue = dns_glue
    fake_dns.answers["gw.ka.test"] = Resolution((T1,), 60)
    glue.rt.add(NAME, "t")
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.01)
    assert "paused" in str(glue.rt.commands.call("keepalive.pause", [NAME, "t"]))
    tick(glue, p, 1000.3)
    target = api.find_destination("sip:10.0.0.1:5060", "t")
    assert target is not None and target.paused
    for i in range(1, 20):
        tick(glue, p, 1000.3 + i / 10)
    assert glue.ksr.sent == []
    glue.rt.commands.call("keepalive.resume", [NAME, "t"])
    for i in range(1, 15):
        tick(glue, p, 1002.3 + i / 10)
    assert [r for r, _, _ in glue.ksr.sent] == ["sip:10.0.0.1:5060"]


def test_flush_and_a_bug_in_the_glue_are_survived(
    dns_glue: Glue, fake_dns: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    glue = dns_glue
    fake_dns.answers["gw.ka.test"] = Resolution((T1,), 60)
    glue.rt.add(NAME, "t")
    p = pinger.Pinger(glue.rt)
    tick(glue, p, 1000.0)
    tick(glue, p, 1000.01)
    glue.rt.commands.call("keepalive.flush", [])
    tick(glue, p, 1000.5)
    assert listed(glue) == {}
    glue.rt.add(NAME, "t")
    glue.rt.add("sip:10.0.0.9", "t")
    tick(glue, p, 1001.0)

    def broken(*args: object) -> State:
        raise RuntimeError("bug")

    monkeypatch.setattr(names_machine, "derive_state", broken)
    for i in range(1, 10):
        tick(glue, p, 1001.0 + i / 10)
    assert any("DNS: internal error" in t for t in glue.ksr.texts("err"))
    assert "destination sip:10.0.0.9 owner t: UNKNOWN -> DOWN" in glue.ksr.texts("info")


def test_without_ka_dns_a_name_is_one_destination_pinged_as_before(glue: Glue) -> None:
    glue.rt.add(NAME, "t")
    p = pinger.Pinger(glue.rt)
    assert p._dns is None
    for i in range(6):
        tick(glue, p, 1000.0 + i / 10, resolve=False)
    assert [r for r, _, _ in glue.ksr.sent] == [NAME]


def test_resolver_thread_runs_lookups_and_survives_a_bug() -> None:
    done = threading.Event()
    calls: list[str] = []

    def lookup(uri: SipUri) -> Resolution:
        calls.append(uri.host)
        if uri.host == "bad.ka.test":
            raise RuntimeError("bug")
        return Resolution((T1,), 5)

    thread = dns_resolver.ResolverThread(lookup, done.set)
    thread.start()
    thread.watch((1, 1), parse_uri("sip:bad.ka.test"))
    thread.watch((2, 1), parse_uri("sip:gw.ka.test"))
    results = [thread.results.get(timeout=5) for _ in range(2)]
    assert done.is_set() and sorted(calls) == ["bad.ka.test", "gw.ka.test"]
    by_key = dict(results)
    assert by_key[(1, 1)].failed and "bug" in by_key[(1, 1)].reason
    assert by_key[(2, 1)].targets == (T1,)
    thread.forget((2, 1))


def test_client_udp_tcp_and_timeouts(zone_server: ZoneServer) -> None:
    zone = zone_server.zone
    zone.add("_sip._tcp.gw.ka.test", "SRV", (10, 0, 5070, "a.ka.test"), ttl=20)
    zone.add("a.ka.test", "A", "10.0.0.1")
    zone.add("a.ka.test", "AAAA", "2001:db8::1")
    zone.truncate.add("a.ka.test")
    client = dns_client.DnsClient(zone_server.ip, zone_server.port, timeout_s=0.3)
    result = run_lookup(client.query, parse_uri("sip:gw.ka.test;transport=tcp"), 300)
    assert result.targets == (Target("10.0.0.1", 5070, "tcp"), Target("2001:db8::1", 5070, "tcp"))
    assert ("tcp", "a.ka.test", "A") in zone.asked, "the truncated answer was asked over TCP"
    zone.silent.add("slow.ka.test")
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        client.query("slow.ka.test", dns_wire.A)
    assert 0.5 < time.monotonic() - start < 1.5, "two tries of 0.3 s"
    assert len(zone.asked_for("slow.ka.test")) == 2
    failed = run_lookup(client.query, parse_uri("sip:slow.ka.test:5060"), 300)
    assert failed.failed and "no reply" in failed.reason
    dead = dns_client.DnsClient(*free_address(), timeout_s=0.2)
    assert run_lookup(dead.query, parse_uri("sip:gw.ka.test"), 300).failed


def test_an_unusable_server_address_fails_each_lookup_not_the_pinger() -> None:
    client = dns_client.DnsClient("fe80::1%nosuchif0", 53)
    result = run_lookup(client.query, parse_uri("sip:gw.ka.test"), 300)
    assert result.failed and "DNS server [fe80::1%nosuchif0]:53" in result.reason
