"""Passive health against a real Kamailio: a gateway that answers OPTIONS with 200 but fails
real INVITEs with 503 is ejected by ``ka_report`` from failure_route after the configured
count, and back when the ejection time ends; a fault on every gateway of a group ejects no
more than the configured share (docs/health.md, "Passive health")."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import Kamailio
from tests.harness.sipclient import request
from tests.integration.test_health import info
from tests.integration.test_keepalive import wait_state
from tests.integration.test_native import events as native_events
from tests.integration.test_native import py_exec, start_native
from tests.integration.test_native import wait_state as native_wait_state
from tests.peers.uas import Answer, Request, ScriptedUAS

pytestmark = pytest.mark.integration


def fails_invites(req: Request) -> int:
    """OPTIONS pings are fine, calls are not."""
    return 503 if req.method == "INVITE" else 200


def call(kam: Kamailio, gateway: str) -> int:
    """One INVITE relayed by the test script to ``gateway`` (route ``gw``, its failures
    reported from failure_route); the final code the caller gets (tm forwards a 503 as 500,
    RFC 3261 16.7; the report has the 503)."""
    ruri = f"sip:gw@{kam.ip}:{kam.port}"
    return request(kam.ip, kam.port, "INVITE", ruri, {"X-Dst": gateway}).code


def alive(kam: Kamailio, uri: str) -> int:
    return int(result_of(kam, "ka_is_alive", uri))


def wait_alive(kam: Kamailio, uri: str, value: int, timeout: float = 3.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if alive(kam, uri) == value:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"ka_is_alive({uri}) is not {value}: {info(kam, uri, 'gw')}")


def test_invites_failing_with_503_eject_the_gateway_until_the_time_ends(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    kam = kamailio_factory(
        defines={
            "KA_PING_INTERVAL": 60, "KA_PASSIVE": 1, "KA_EJECT_AFTER": 3, "KA_EJECT_TIME": 3,
            "KA_EVENT_CALLBACK": '"ka_event"', "KA_TEST_EVENTS": f'"{events}"',
        }
    )  # fmt: skip
    uas: ScriptedUAS = uas_factory()
    uas.set_behaviour(fails_invites)
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "gw") == "1"
    wait_state(kam, uri, 1, owner="gw")
    assert [call(kam, uri) for _ in range(2)] == [500, 500]
    time.sleep(0.3)
    assert alive(kam, uri) == 1, "two failures are not three"
    assert call(kam, uri) == 500
    wait_alive(kam, uri, 4, timeout=1.0)
    ejected_at = time.monotonic()
    shown = info(kam, uri, "gw")
    assert (shown["state"], shown["cause"], shown["ejections"]) == ("2", "traffic", "1"), shown
    assert "cause: traffic" in kam.kamcmd("keepalive.get", uri, "gw")
    assert uas.count("OPTIONS") == 1, "the probe still says 200: traffic ejected it"
    back = ejected_at + wait_alive(kam, uri, 1, timeout=5.0)
    assert 2.5 <= back - ejected_at <= 3.6, back - ejected_at
    assert info(kam, uri, "gw")["cause"] == "probe"
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(r[0], r[3], r[4], r[5]) for r in rows if r[3] != 0] == [
        ("keepalive:dst-down", 1, 2, 503), ("keepalive:dst-up", 2, 1, 0),
    ], rows  # fmt: skip
    assert call(kam, uri) == 500, "counting starts again"
    assert alive(kam, uri) == 1
    assert "failure_route: reported 503" in kam.log()


def short_tm_timers(cfg: str) -> str:
    """tm gives up on an unanswered INVITE after 1.5 s (its default: 30 s)."""
    load = 'loadmodule "tm.so"\n'
    assert load in cfg
    timers = 'modparam("tm", "fr_timer", 1500)\nmodparam("tm", "fr_inv_timer", 1500)\n'
    return cfg.replace(load, load + timers, 1)


def test_local_timeouts_count_as_408(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    """A gateway that swallows INVITEs: tm's timer ends each call with a local 408, which
    failure_route reports."""
    events = tmp_path / "events.jsonl"
    kam = kamailio_factory(
        defines={
            "KA_PING_INTERVAL": 60, "KA_PASSIVE": 1, "KA_EJECT_AFTER": 2,
            "KA_EVENT_CALLBACK": '"ka_event"', "KA_TEST_EVENTS": f'"{events}"',
        },
        cfg_edit=short_tm_timers,
    )  # fmt: skip
    uas: ScriptedUAS = uas_factory()
    uas.set_behaviour(lambda req: None if req.method == "INVITE" else 200)
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "gw") == "1"
    wait_state(kam, uri, 1, owner="gw")
    assert [call(kam, uri) for _ in range(2)] == [408, 408]
    wait_alive(kam, uri, 4, timeout=1.0)
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(r[0], r[5]) for r in rows if r[3] != 0] == [("keepalive:dst-down", 408)], rows


def test_a_fault_on_every_gateway_ejects_no_more_than_the_share(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    kam = kamailio_factory(
        defines={
            "KA_PING_INTERVAL": 60, "KA_PASSIVE": 1, "KA_EJECT_AFTER": 1,
            "KA_EJECT_TIME": 60, "KA_EJECT_MAX_PERCENT": 50,
        }
    )  # fmt: skip
    gateways = []
    for _ in range(4):
        uas = uas_factory()
        uas.set_behaviour(fails_invites)
        gateways.append(f"sip:{uas.host}:{uas.port}")
        assert result_of(kam, "ka_add_destination", gateways[-1], "gw") == "1"
    for uri in gateways:
        wait_state(kam, uri, 1, owner="gw")
    for _ in range(2):
        assert [call(kam, uri) for uri in gateways] == [500] * 4
    time.sleep(0.5)
    answers = [alive(kam, uri) for uri in gateways]
    assert sorted(answers) == [1, 1, 4, 4], answers
    assert answers[:2] == [4, 4], "the first two to fail, then the share was used up"


def test_bad_reports_are_minus_one_and_logged(kam: Kamailio) -> None:
    uri = "sip:127.43.0.9:5060"
    assert result_of(kam, "ka_add_destination", uri, "gw") == "1"
    assert result_of(kam, "ka_report", uri, "180") == "-1"
    assert result_of(kam, "ka_report", uri, "abc") == "-1"
    assert result_of(kam, "ka_report", "sip:127.43.0.10", "503") == "-1", "not monitored"
    assert result_of(kam, "ka_report", uri, "503") == "1"
    kam.wait_log(r"ka_report: not a final reply code \(200-699\): '180'")
    kam.wait_log(r"ka_report: not a final reply code \(200-699\): 'abc'")
    assert alive(kam, uri) in (1, 2), "passive health is off: a report changes nothing"


def test_native_cfg_report_ejects_and_runs_the_event_routes(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    kam = start_native(
        kamailio_factory, tmp_path, KA_PING_INTERVAL=60, KA_PASSIVE=1, KA_EJECT_AFTER=2,
        KA_EJECT_TIME=2, KA_EVENT_INITIAL=1,
    )  # fmt: skip
    uas: ScriptedUAS = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    assert py_exec(kam, "ka_add_destination", f"{uri} gw") == "rc=1"
    native_wait_state(kam, uri, "gw", 1)
    assert py_exec(kam, "ka_report", f"{uri} 503") == "rc=1"
    assert py_exec(kam, "ka_report", f"{uri} five") == "rc=-1"
    kam.wait_log(r"ka_report: not a final reply code \(200-699\): 'five'")
    assert py_exec(kam, "ka_report", f"{uri} 408 gw") == "rc=1"
    native_wait_state(kam, uri, "gw", 2, timeout=1.0)
    assert py_exec(kam, "ka_is_alive", uri) == "rc=4"
    native_wait_state(kam, uri, "gw", 1, timeout=4.0)
    assert [e[:5] for e in native_events(kam, uri)] == [
        ("gw", "up", "0", "1", "200"), ("gw", "down", "1", "2", "408"),
        ("gw", "up", "2", "1", "0"),
    ]  # fmt: skip


def once_then_200(answer: Answer) -> Callable[[Request], int | Answer]:
    """``answer`` to the first request after it is armed (``armed[0] = True``), 200 else."""
    armed = [False]

    def behaviour(req: Request) -> int | Answer:
        if armed[0] and req.method != "ACK":
            armed[0] = False
            return answer
        return 200

    behaviour.armed = armed  # type: ignore[attr-defined]
    return behaviour


@pytest.mark.parametrize(("retry_after", "cap", "held"), [(3, 10, 3.0), (100, 2, 2.0)])
def test_a_pings_retry_after_holds_exactly_as_long_as_it_says_capped(
    kamailio_factory: KamailioFactory, uas_factory, retry_after: int, cap: int, held: float
) -> None:
    kam = kamailio_factory(defines={"KA_RETRY_AFTER_MAX": cap})
    uas: ScriptedUAS = uas_factory()
    behaviour = once_then_200(Answer(503, headers=(f"Retry-After: {retry_after}",)))
    uas.set_behaviour(behaviour)
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "gw") == "1"
    wait_state(kam, uri, 1, owner="gw")
    behaviour.armed[0] = True  # type: ignore[attr-defined]
    wait_alive(kam, uri, 4, timeout=2.5)
    out_at = time.monotonic()
    shown = info(kam, uri, "gw")
    assert (shown["state"], shown["cause"]) == ("2", "retry-after"), shown
    back = wait_alive(kam, uri, 1, timeout=held + 2)
    assert held - 0.5 <= back <= held + 0.6, back
    assert uas.count("OPTIONS") >= 1 + int(held), "pings went on, answered 200, while held"
    assert time.monotonic() - out_at < held + 1


def test_a_reported_retry_after_holds_the_gateway(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    kam = kamailio_factory(defines={"KA_PING_INTERVAL": 60, "KA_RETRY_AFTER_MAX": 30})
    uas: ScriptedUAS = uas_factory()
    uas.set_behaviour(
        lambda req: Answer(503, headers=("Retry-After: 2",)) if req.method == "INVITE" else 200
    )
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "gw") == "1"
    wait_state(kam, uri, 1, owner="gw")
    ruri = f"sip:gwra@{kam.ip}:{kam.port}"
    assert request(kam.ip, kam.port, "INVITE", ruri, {"X-Dst": uri}).code == 500
    wait_alive(kam, uri, 4, timeout=1.0)
    assert info(kam, uri, "gw")["cause"] == "retry-after"
    back = wait_alive(kam, uri, 1, timeout=4.0)
    assert 1.3 <= back <= 2.4, back
