"""Host-name destinations (KA_DNS 1) against a real Kamailio, real peers and a test DNS
server (dnslib, tests/peers/dns_zone.py) on a loopback address: SRV targets probed on their
own, the name's derived state, target sets that change, NXDOMAIN, A records, deletes.
Nothing here asks the outside network: Kamailio's resolver is ka-kemi's, pointed at the
test server, and names are never handed to tm."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import Kamailio, free_address
from tests.integration.test_keepalive import wait_state
from tests.peers.dns_zone import ZoneServer

pytestmark = pytest.mark.integration

NAME = "sip:gw.ka.test"


def start(factory: KamailioFactory, zone_server: ZoneServer, **defines: str | int) -> Kamailio:
    return factory(
        defines={"KA_DNS": 1, "KA_DNS_SERVER": f'"{zone_server.ip}:{zone_server.port}"', **defines}
    )


def listed(kam: Kamailio) -> dict[str, int]:
    out = kam.kamcmd("keepalive.list")
    return {u: int(s) for u, s in re.findall(r"uri: (\S+).*?state: (\d)", out, re.S)}


def wait_listed(kam: Kamailio, wanted: set[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while set(listed(kam)) != wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"listed {set(listed(kam))}, wanted {wanted}")
        time.sleep(0.1)


def test_srv_targets_each_have_their_state_and_the_name_is_up_if_any_is(
    kamailio_factory: KamailioFactory, uas_factory, zone_server: ZoneServer
) -> None:
    up = uas_factory()
    dead_ip, dead_port = free_address()  # nothing listens there
    zone = zone_server.zone
    zone.add("_sip._udp.gw.ka.test", "SRV", (10, 50, up.port, "up.ka.test"))
    zone.add("_sip._udp.gw.ka.test", "SRV", (20, 50, dead_port, "dead.ka.test"))
    zone.add("up.ka.test", "A", up.host)
    zone.add("dead.ka.test", "A", dead_ip)
    target_up, target_dead = f"sip:{up.host}:{up.port}", f"sip:{dead_ip}:{dead_port}"

    kam = start(kamailio_factory, zone_server)
    assert "Ok" in kam.kamcmd("keepalive.add", NAME, "t", "down_after=1")
    wait_state(kam, target_up, 1)
    wait_state(kam, target_dead, 2)
    wait_state(kam, NAME, 1)
    assert listed(kam) == {NAME: 1, target_up: 1, target_dead: 2}
    assert result_of(kam, "ka_is_alive", NAME) == "1"
    assert result_of(kam, "ka_is_alive", "gw.ka.test:5060") == "1", "canonical lookup"
    assert result_of(kam, "ka_is_alive", target_dead) == "2"
    assert {r.uri for r in up.received("OPTIONS")} == {target_up}
    info = kam.kamcmd("keepalive.info", target_up, "t")
    assert "settings: down_after=1;target_of=sip:gw.ka.test" in info, info
    assert "pings sent: 0" in kam.kamcmd("keepalive.info", NAME, "t"), "never pinged itself"
    kam.wait_log(r"destination sip:gw\.ka\.test owner t: UNKNOWN -> UP")
    asked = {(name, qtype) for _, name, qtype in zone.asked}
    assert ("_sip._udp.gw.ka.test", "SRV") in asked and ("dead.ka.test", "AAAA") in asked

    # KA_DNS_STATE all: one target down is not UP (DEGRADED: usable, not whole)
    kam_all = start(kamailio_factory, zone_server, KA_DNS_STATE="all", KA_DESTINATION=f'"{NAME}"')
    wait_state(kam_all, target_dead, 2, owner="_params")
    wait_state(kam_all, target_up, 1, owner="_params")
    wait_state(kam_all, NAME, 3, owner="_params")
    assert result_of(kam_all, "ka_is_alive", NAME) == "3"


def test_a_changed_target_set_is_followed_at_the_ttl(
    kamailio_factory: KamailioFactory, uas_factory, zone_server: ZoneServer
) -> None:
    old, new = uas_factory(), uas_factory()
    zone = zone_server.zone
    zone.add("_sip._udp.gw.ka.test", "SRV", (10, 0, old.port, "old.ka.test"), ttl=2)
    zone.add("old.ka.test", "A", old.host, ttl=2)
    zone.add("new.ka.test", "A", new.host, ttl=2)
    target_old, target_new = f"sip:{old.host}:{old.port}", f"sip:{new.host}:{new.port}"
    kam = start(kamailio_factory, zone_server)
    assert result_of(kam, "ka_add_destination", NAME, "t") == "1"
    wait_state(kam, target_old, 1)
    wait_state(kam, NAME, 1)
    zone.remove("_sip._udp.gw.ka.test")
    zone.add("_sip._udp.gw.ka.test", "SRV", (10, 0, new.port, "new.ka.test"), ttl=2)
    changed = time.monotonic()
    wait_listed(kam, {NAME, target_new}, timeout=10)
    assert time.monotonic() - changed < 7, "TTL 2 s is re-asked after 5 s (the minimum)"
    new.wait_requests(1, timeout=3)
    wait_state(kam, target_new, 1)
    assert {r.uri for r in new.received("OPTIONS")} == {target_new}
    assert listed(kam)[NAME] == 1
    kam.wait_log(rf"target {re.escape(target_old)} removed: no longer in DNS")
    count = old.count()
    time.sleep(1.5)
    assert old.count() == count, "the old target is no longer pinged"


def test_nxdomain_means_no_targets_and_down(
    kamailio_factory: KamailioFactory, zone_server: ZoneServer
) -> None:
    kam = start(kamailio_factory, zone_server, KA_DNS_REFRESH=5)
    assert "Ok" in kam.kamcmd("keepalive.add", "sip:nowhere.ka.test", "t")
    wait_state(kam, "sip:nowhere.ka.test", 2)
    assert listed(kam) == {"sip:nowhere.ka.test": 2}
    assert result_of(kam, "ka_is_alive", "sip:nowhere.ka.test") == "2"
    line = r"DNS: destination sip:nowhere\.ka\.test owner t: NXDOMAIN: no targets \(DOWN\)"
    kam.wait_log(line)
    asked = [(n, t) for _, n, t in zone_server.zone.asked]
    assert asked[:3] == [
        ("_sip._udp.nowhere.ka.test", "SRV"), ("nowhere.ka.test", "A"),
        ("nowhere.ka.test", "AAAA"),
    ]  # fmt: skip
    time.sleep(6)  # asked again (KA_DNS_REFRESH 5), logged once
    assert len(zone_server.zone.asked_for("nowhere.ka.test")) >= 4
    assert len(re.findall(line, kam.log())) == 1


def test_a_record_for_a_name_with_a_port_over_tcp(
    kamailio_factory: KamailioFactory, uas_factory, zone_server: ZoneServer
) -> None:
    uas = uas_factory()
    zone_server.zone.add("host.ka.test", "A", uas.host)
    kam = start(kamailio_factory, zone_server)
    name = f"sip:host.ka.test:{uas.port};transport=tcp"
    target = f"sip:{uas.host}:{uas.port};transport=tcp"
    assert result_of(kam, "ka_add_destination", name, "t") == "1"
    wait_state(kam, target, 1)
    wait_state(kam, name, 1)
    assert {(r.uri, r.transport) for r in uas.received("OPTIONS")} == {(target, "tcp")}
    assert not zone_server.zone.asked_for("_sip._tcp.host.ka.test"), "a port given: no SRV"


def test_deleting_the_name_deletes_its_targets(
    kamailio_factory: KamailioFactory, uas_factory, zone_server: ZoneServer
) -> None:
    one, two = uas_factory(), uas_factory()
    zone_server.zone.add("_sip._udp.gw.ka.test", "SRV", (10, 0, one.port, "one.ka.test"))
    zone_server.zone.add("_sip._udp.gw.ka.test", "SRV", (10, 0, two.port, "two.ka.test"))
    zone_server.zone.add("one.ka.test", "A", one.host)
    zone_server.zone.add("two.ka.test", "A", two.host)
    kam = start(kamailio_factory, zone_server)
    assert "Ok" in kam.kamcmd("keepalive.add", NAME, "t")
    targets = {f"sip:{one.host}:{one.port}", f"sip:{two.host}:{two.port}"}
    wait_listed(kam, {NAME, *targets})
    assert "Ok" in kam.kamcmd("keepalive.del", NAME, "t")
    wait_listed(kam, set(), timeout=3)
    assert result_of(kam, "ka_is_alive", NAME) == "-1"
    counts = (one.count(), two.count())
    time.sleep(1.5)
    assert (one.count(), two.count()) == counts, "no more pings to the targets"
