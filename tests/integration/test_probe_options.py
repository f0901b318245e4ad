"""Probe options against a real Kamailio and Python peers: pings through an outbound proxy,
the request method (README "Configuration reference", docs/differences.md)."""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import free_udp_tcp_port
from tests.integration.test_keepalive import wait_state
from tests.integration.test_misconfig import refused
from tests.peers.dns_zone import ZoneServer
from tests.peers.uas import Answer, Behaviour, Request

pytestmark = pytest.mark.integration


def test_pings_go_through_the_proxy_which_sees_the_destination_as_request_uri(
    kam, uas_factory
) -> None:
    proxy, dest = uas_factory(), uas_factory()
    dest.blackhole()
    uri = dest.uri()
    assert result_of(kam, "ka_add_destination", uri, "t", f"proxy={proxy.uri('tcp')}") == "1"
    wait_state(kam, uri, 1)
    seen = proxy.received("OPTIONS")
    assert seen and all(r.uri == uri and r.transport == "tcp" for r in seen), seen
    assert seen[0].headers["To"] == f"<{uri}>"
    assert dest.count() == 0, "the packet goes to the proxy, not the destination"
    assert "proxy=sip:" in kam.kamcmd("keepalive.info", uri, "t")
    proxy.blackhole()
    wait_state(kam, uri, 2)
    assert dest.count() == 0


def test_module_proxy_and_method_with_a_destination_that_opts_out(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    proxy, direct = uas_factory(), uas_factory()
    kam = kamailio_factory(defines={"KA_PING_PROXY": f'"{proxy.uri()}"', "KA_PING_METHOD": "INFO"})
    proxied_uri = "sip:127.44.0.1:5999"  # nothing there: only the proxy can answer
    assert result_of(kam, "ka_add_destination", proxied_uri, "t") == "1"
    assert (
        result_of(kam, "ka_add_destination", direct.uri(), "t", "proxy=none;method=NOTIFY") == "1"
    )
    wait_state(kam, proxied_uri, 1)
    wait_state(kam, direct.uri(), 1)
    via_proxy = proxy.received()
    assert via_proxy and {(r.method, r.uri) for r in via_proxy} == {("INFO", proxied_uri)}
    assert {r.cseq for r in via_proxy} == {"10 INFO"}
    assert {r.method for r in direct.received()} == {"NOTIFY"}


def test_a_refused_method_or_bad_proxy_fails_the_add_with_one_line(kam) -> None:
    assert result_of(kam, "ka_add_destination", "sip:127.44.0.2", "t", "method=INVITE") == "-1"
    assert result_of(kam, "ka_add_destination", "sip:127.44.0.2", "t", "proxy=sip:u@h") == "-1"
    out = kam.kamcmd("keepalive.add", "sip:127.44.0.2", "t", "method=BYE")
    assert "BYE cannot be a probe (INVITE, ACK, CANCEL and BYE are refused)" in out
    time.sleep(0.2)
    log = kam.log()
    assert "setting method: INVITE cannot be a probe" in log
    assert "setting proxy: a proxy URI has no user part" in log


def test_a_refused_ping_method_stops_start_up(kamailio_factory: KamailioFactory) -> None:
    kam = kamailio_factory(defines={"KA_PING_METHOD": "ACK"}, start=False)
    refused(kam, "parameter ping_method: ACK cannot be a probe")


def own_address() -> tuple[str, int]:
    """A random address of this suite's range (127.44.0.0/16) and a port free there."""
    ip = f"127.44.{random.randint(0, 255)}.{random.randint(2, 254)}"
    return ip, free_udp_tcp_port(ip)


@pytest.fixture
def own_zone_server() -> Iterator[ZoneServer]:
    server = ZoneServer(*own_address())
    yield server
    server.stop()


def test_naptr_srv_a_are_followed_and_a_silent_first_dns_server_is_passed_over(
    kamailio_factory: KamailioFactory, uas_factory, own_zone_server: ZoneServer
) -> None:
    gw, zone_server = uas_factory(), own_zone_server
    zone = zone_server.zone
    zone.add("gw.ka.test", "NAPTR", (10, 10, "S", "SIP+D2T", "_sip._tcp.gw.ka.test"))
    zone.add("gw.ka.test", "NAPTR", (20, 10, "S", "SIP+D2U", "_sip._udp.gw.ka.test"))
    zone.add("_sip._tcp.gw.ka.test", "SRV", (10, 0, gw.port, "up.ka.test"))
    zone.add("up.ka.test", "A", gw.host)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(own_address())  # bound, never read: queries to it time out
        silent_ip, silent_port = silent.getsockname()
        servers = f"{silent_ip}:{silent_port} {zone_server.ip}:{zone_server.port}"
        kam = kamailio_factory(
            defines={"KA_DNS": 1, "KA_DNS_NAPTR": 1, "KA_DNS_SERVER": f'"{servers}"'}
        )
        assert result_of(kam, "ka_add_destination", "sip:gw.ka.test", "t") == "1"
        target = f"sip:{gw.host}:{gw.port};transport=tcp"
        wait_state(kam, target, 1, timeout=15)
        wait_state(kam, "sip:gw.ka.test", 1)
        silent.setblocking(False)
        assert silent.recv(512), "the first server was asked first"
    assert {r.transport for r in gw.received("OPTIONS")} == {"tcp"}
    asked = [(name, rtype) for _, name, rtype in zone.asked]
    assert asked[:3] == [
        ("gw.ka.test", "NAPTR"), ("_sip._tcp.gw.ka.test", "SRV"), ("up.ka.test", "A"),
    ]  # fmt: skip
    assert f"via {servers}, NAPTR first" in kam.log()


PASSWORD = "s3cret-Pw"


def digest_checker(user: str, password: str, realm: str = "ka.test") -> Behaviour:
    """A peer that challenges every request without credentials (401, qop=auth, MD5) and
    answers 200 only to a correct Authorization, 403 otherwise (an RFC 2617 check of its
    own, not ka-kemi's code)."""
    nonce = secrets.token_hex(8)
    challenge = (
        f'WWW-Authenticate: Digest realm="{realm}", nonce="{nonce}", qop="auth", algorithm=MD5'
    )

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    def behaviour(req: Request) -> Answer:
        auth = req.headers.get("Authorization")
        if auth is None:
            return Answer(401, headers=(challenge,))
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', auth.removeprefix("Digest ")))
        ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{req.method}:{params['uri']}")
        expected = md5(f"{ha1}:{nonce}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
        ok = (
            params["username"] == user
            and params["uri"] == req.uri
            and params["response"] == expected
        )
        return Answer(200 if ok else 403)

    return behaviour


def test_a_challenging_peer_gets_authenticated_pings_and_the_password_is_never_shown(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path
) -> None:
    good, wrong, none = uas_factory(), uas_factory(), uas_factory()
    for peer in (good, wrong, none):
        peer.set_behaviour(digest_checker("alice", PASSWORD))
    state_file = tmp_path / "ka.state"
    kam = kamailio_factory(defines={"KA_STATE_FILE": f'"{state_file}"'})
    creds = f"auth_user=alice;auth_password={PASSWORD}"
    assert result_of(kam, "ka_add_destination", good.uri(), "t", creds) == "1"
    assert "Ok" in kam.kamcmd(
        "keepalive.add", wrong.uri(), "t", "auth_user=alice;auth_password=nope"
    )
    assert result_of(kam, "ka_add_destination", none.uri(), "t") == "1"
    wait_state(kam, good.uri(), 1)
    wait_state(kam, wrong.uri(), 2)
    wait_state(kam, none.uri(), 2)
    seen = good.received("OPTIONS")
    assert "Authorization" not in seen[0].headers and "Authorization" in seen[1].headers
    assert seen[1].call_id != seen[0].call_id
    assert all("Authorization" not in r.headers for r in none.received())
    time.sleep(0.7)  # the state file is written within 0.5 s
    shown = kam.kamcmd("keepalive.list") + kam.kamcmd("keepalive.info", good.uri(), "t")
    assert "auth_user=alice" in shown and PASSWORD not in shown
    assert PASSWORD not in kam.log() and "nope" not in kam.log()
    assert state_file.exists() and PASSWORD.encode() not in state_file.read_bytes()
    kam.stop()
    again = kamailio_factory(defines={"KA_STATE_FILE": f'"{state_file}"'})
    again.wait_log(f"not restored: {good.uri()} owner t: settings auth_user and auth_password")
    assert PASSWORD not in again.log()


def test_bad_credentials_settings_are_refused_without_echoing_the_password(kam) -> None:
    out = kam.kamcmd("keepalive.add", "sip:127.44.0.3", "t", "auth_password=only")
    assert "auth_user and auth_password go together" in out
    out = kam.kamcmd("keepalive.add", "sip:127.44.0.3", "t", 'auth_user=a;auth_password=p"w')
    assert "setting auth_password: the password has" in out and 'p"w' not in out
