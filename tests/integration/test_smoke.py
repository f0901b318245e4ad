"""The chain works: real Kamailio loads kemi, a Python route answers, state is shared."""

from __future__ import annotations

import pytest

from tests.conftest import KamailioFactory, call_fn
from tests.harness.kamailio import Kamailio
from tests.harness.sipclient import request

pytestmark = pytest.mark.integration


def test_python_route_answers_sip_over_udp_and_tcp(kam: Kamailio) -> None:
    for transport in ("udp", "tcp"):
        reply = request(kam.ip, kam.port, "OPTIONS", transport=transport)
        assert reply.code == 200
        assert (
            request(kam.ip, kam.port, "INVITE", f"sip:bob@{kam.ip}", transport=transport).code
            == 404
        )


def test_state_written_in_one_worker_is_seen_by_another(kam: Kamailio) -> None:
    dest = f"sip:{kam.ip}:{kam.port}"
    added = call_fn(kam, "ka_add_destination", dest, "smoke", transport="udp")
    seen = call_fn(kam, "ka_is_alive", dest, transport="tcp")
    assert added.header("x-result") == "1"
    assert seen.header("x-result") == "1"
    assert added.header("x-pid") != seen.header("x-pid"), "same process: not a cross-process test"
    assert "owner: smoke" in kam.kamcmd("keepalive.list")


def test_example_config_shows_one_up_one_down(kamailio_factory: KamailioFactory) -> None:
    """The main job's promise: with nothing else running, one UP and one DOWN in seconds."""
    probe = kamailio_factory(start=False)
    closed = f"sip:{probe.ip}:{probe.port + 1}"
    kam = kamailio_factory(
        defines={"KA_DESTINATION": f'"sip:{probe.ip}:{probe.port} {closed}"'},
        script=probe.script.parents[3] / "kemi" / "example.py",
        ip=probe.ip,
        port=probe.port,
    )
    kam.wait_log(rf"destination sip:{probe.ip}:{probe.port} owner _params: UNKNOWN -> UP", 5)
    kam.wait_log(rf"destination {closed} owner _params: UNKNOWN -> DOWN", 5)
    listing = kam.kamcmd("keepalive.list")
    assert listing.count("state: 1") == 1 and listing.count("state: 2") == 1, listing
