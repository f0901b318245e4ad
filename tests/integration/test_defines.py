"""Every ``#!define`` an operator sets, against a real Kamailio: numbered destinations, host
names, a custom From, the RPC socket or relay turned off, and each invalid value stopping
Kamailio with a log line that names the parameter."""

from __future__ import annotations

import re

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.integration.test_keepalive import wait_state

pytestmark = pytest.mark.integration


def test_numbered_destinations_and_a_host_name(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    peers = [uas_factory(), uas_factory(), uas_factory(host="127.0.0.1")]
    uris = [f"sip:{p.host}:{p.port}" for p in peers]
    named = f"sip:localhost:{peers[2].port}"
    kam = kamailio_factory(
        defines={
            "KA_DESTINATION": f'"{uris[0]}"',
            "KA_DESTINATION_1": f'"{uris[1]}"',
            "KA_DESTINATION_7": f'"{named}"',
        }
    )
    for uri in (uris[0], uris[1], named):
        wait_state(kam, uri, 1, owner="_params")
    for peer in peers:
        assert peer.wait_requests(1, timeout=3)[0].method == "OPTIONS"
    listing = kam.kamcmd("keepalive.list")
    assert listing.count("owner: _params") == 3 and f"uri: {named}" in listing
    assert result_of(kam, "ka_is_alive", named) == "1"


def test_custom_ping_from(kamailio_factory: KamailioFactory, uas_factory) -> None:
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    kam = kamailio_factory(
        defines={"KA_PING_FROM": '"sip:probe@proxy.example.net"', "KA_DESTINATION": f'"{uri}"'}
    )
    wait_state(kam, uri, 1, owner="_params")
    req = uas.wait_requests(1, timeout=3)[0]
    assert re.fullmatch(r"<sip:probe@proxy\.example\.net>;tag=\S+", req.headers["From"])


def test_without_a_kamcmd_socket_of_its_own(kamailio_factory: KamailioFactory, uas_factory) -> None:
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    kam = kamailio_factory(defines={"KA_RPC_SOCKET": '""', "KA_DESTINATION": f'"{uri}"'})
    assert not kam.rpc_socket.exists() or kam.rpc_socket.is_dir()
    assert result_of(kam, "ka_is_alive", uri) == "1"
    uas.wait_requests(2, timeout=4)
    assert kam.ctl("core.version").startswith("kamailio "), "Kamailio's own ctl is untouched"


def test_without_the_relay(kamailio_factory: KamailioFactory) -> None:
    kam = kamailio_factory(defines={"KA_CTL_FORWARD": '""'})
    assert kam.kamcmd("keepalive.list") == ""
    assert kam.kamcmd("core.version") == "error: 500 - command core.version not found\n"
    methods = kam.kamcmd("system.listMethods").split()
    assert "keepalive.list" in methods and "core.version" not in methods
    assert kam.ctl("core.version").startswith("kamailio ")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KA_PING_INTERVAL", "0", "ping_interval: 0 out of range"),
        ("KA_DELETE_COUNTER", "-1", "delete_counter: -1 out of range"),
        ("KA_DELETE_COUNTER", "many", "delete_counter: not an integer"),
        ("KA_PING_FROM", '"sip:example.com"', "ping_from: needs a user part"),
        ("KA_PING_FROM", '"mailto:x@y"', "parameter ping_from"),
        ("KA_PING_TIMEOUT_MS", "50", "ping_timeout_ms: 50 out of range"),
        ("KA_MAX_DESTINATIONS", "0", "max_destinations: 0 out of range"),
        ("KA_STRING_CHUNKS", "0", "string_chunks: 0 out of range"),
        ("KA_DESTINATION", '"sip:bad host!"', "parameter destination"),
        ("KA_DESTINATION_3", '"sip:10.0.0.1 sip:10.0.0.1:5060"', "listed twice"),
        ("KA_RPC_SOCKET", '"relative/path"', "rpc_socket: needs an absolute path"),
        ("KA_CTL_FORWARD", '"ctl.sock"', "ctl_forward: needs an absolute path"),
        ("KA_TCP_KEEPALIVE_METHOD", '"magic"', "tcp_keepalive_method: 'magic' is not one of"),
        ("KA_RPC_HTTP_ALLOW", '"10.0.0.0/33"', "rpc_http_allow: not an address or CIDR"),
        ("KA_RPC_HTTP_TOKEN", '"short"', "rpc_http_token: needs 16 or more"),
        ("KA_RPC_HTTP_PATH", '"RPC"', "rpc_http_path: needs a path such as /RPC"),
        ("KA_RPC_ADD_RATE", '"fast"', "rpc_add_rate: not an integer"),
        ("KA_DOWN_AFTER", "0", "down_after: 0 out of range"),
        ("KA_ALIVE_CODES", '"2yy"', "alive_codes: alive codes: bad item '2yy'"),
        ("KA_DEGRADED_AS", '"maybe"', "degraded_as: 'maybe' is not one of"),
        ("KA_EVENT_CALLBACK", '"not a name"', "event_callback: not a method name"),
        ("KA_DESTINATION", '"sip:10.0.0.1|down_after=x"', "destination: setting down_after"),
        ("KA_METRICS_ALLOW", '"10.0.0.0/33"', "metrics_allow: not an address or CIDR"),
        ("KA_METRICS_TOKEN", '"short"', "metrics_token: needs 16 or more"),
        ("KA_STATE_FILE", '"state.json"', "state_file: needs an absolute path"),
        ("KA_DNS", "2", "parameter dns: 2 out of range"),
        ("KA_DNS_SERVER", '"nowhere"', "dns_server: bad DNS server"),
        ("KA_DNS_STATE", '"most"', "dns_state: 'most' is not one of"),
        ("KA_JSONRPC_SOCKET", '"rpc.sock"', "jsonrpc_socket: needs an absolute path"),
    ],
)  # fmt: skip
def test_an_invalid_value_stops_kamailio(
    kamailio_factory: KamailioFactory, name: str, value: str, message: str
) -> None:
    kam = kamailio_factory(defines={name: value}, start=False)
    kam.start(wait=False)
    assert kam.proc is not None
    assert kam.proc.wait(timeout=20) != 0
    line = next((ln for ln in kam.log().splitlines() if "keepalive: cannot start" in ln), "")
    assert message in line, kam.log()[-3000:]
