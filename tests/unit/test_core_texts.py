"""The decisions moved out of kemi/ into ka_core, tested without Kamailio: ping texts,
start-up and banner lines, HTTP serving, KDMQ admission and the resolver's loop."""

from __future__ import annotations

import json

import pytest

from ka_core.cluster import admission
from ka_core.cluster.codec import MAX_BODY_BYTES, Heartbeat, encode_heartbeat
from ka_core.config.banner import dns_started, pinger_started, read_defines, ready_lines
from ka_core.config.kaconfig import load_config
from ka_core.names.dns_wire import A, Record
from ka_core.names.resolve import Resolution, run_lookup
from ka_core.names.schedule import INTERNAL_ERROR_TTL_S, ResolveSchedule
from ka_core.names.servers import server_list
from ka_core.ops import http_serving
from ka_core.ops.access import HttpRequest, Refusal
from ka_core.ops.jsonrpc import HttpAnswer
from ka_core.probe import liveness, ping_text
from ka_core.probe.liveness import PingerStatus
from ka_core.probe.prober import Ping
from ka_core.probe.wire import Listeners
from ka_core.uri import parse_uri

LISTENERS = json.dumps(
    {"jsonrpc": "2.0", "result": [{"PROTO": "udp", "ADDRLIST": {"ADDR": "127.41.0.1"},
     "PORT": 5060, "ADVERTISE": "", "MCAST": "no", "MHOMED": "no", "SOCKNAME": ""}], "id": 1}
)  # fmt: skip


# ---- ping texts --------------------------------------------------------------------------


def test_listeners_from_an_answer_or_the_error_to_log() -> None:
    found, error = ping_text.listeners_from("200", LISTENERS)
    assert [x.spec for x in found] == ["udp:127.41.0.1:5060"] and error is None
    found, error = ping_text.listeners_from(500, None)
    assert found == [] and error is not None and "(code 500)" in error


def test_a_ping_text_fills_its_template() -> None:
    found, _ = ping_text.listeners_from(200, LISTENERS)
    texts = ping_text.PingTexts(Listeners(found), "kamailio (5.6.3)", b"k" * 16, "ka1.")
    assert texts.template("sip:ka@x", "tcp", False, "") is None, "no TCP listener"
    spec, template = texts.template("sip:ka@x", "udp", False, "") or ("", "")
    assert spec == "udp:127.41.0.1:5060"
    ping = Ping(seq=3, slot=1, gen=1, uri="sip:10.0.0.1:5060", hop="sip:10.0.0.1:5060")
    text = texts.text(template, ping)
    assert text.startswith("OPTIONS sip:10.0.0.1:5060 SIP/2.0\r\n")
    assert "\0" not in text and "\1" not in text and "\2" not in text
    assert "User-Agent: kamailio (5.6.3)\r\n" in text
    assert texts.text(template, ping) == text, "a retransmission has the same bytes"


def test_udp_specs_and_the_busy_line() -> None:
    assert ping_text.udp_address("udp:[fd00::1]:5060") == ("[fd00::1]", 5060)
    assert ping_text.udp_address("tcp:10.0.0.1:5060") is None
    assert ping_text.udp_address("udp:garbage") is None
    assert ping_text.busy_line(3).startswith("3 OPTIONS not sent")


# ---- start-up ----------------------------------------------------------------------------


def test_the_first_missing_module_is_named() -> None:
    assert liveness.missing_module(lambda m: True, cluster=True, dispatcher=True) is None
    text = liveness.missing_module(lambda m: m != "jsonrpcs", cluster=False, dispatcher=False) or ""
    assert text.startswith("config error: module jsonrpcs is not loaded (")
    assert text.endswith('add loadmodule "jsonrpcs.so"')
    assert "dmq" in (
        liveness.missing_module(lambda m: m != "dmq", cluster=True, dispatcher=False) or ""
    )
    assert liveness.missing_module(lambda m: m != "dmq", cluster=False, dispatcher=False) is None
    no_ds = liveness.missing_module(lambda m: m != "dispatcher", cluster=False, dispatcher=True)
    assert "KA_DISPATCHER_BRIDGE keeps dispatcher's states" in (no_ds or "")


def test_start_up_failure_lines() -> None:
    assert "did not get ready in 60 s" in liveness.pinger_missing(PingerStatus.STARTING)
    assert liveness.pinger_missing(PingerStatus.NOT_STARTED).startswith(
        "cannot start: config error: "
    )
    assert "mod_init returned a dict" in liveness.wrong_handler("dict")
    assert liveness.pinger_cannot_start("kamailio", "boom").endswith("as user kamailio: boom")


def test_banner_lines() -> None:
    config = load_config({})
    assert ready_lines(config, 2) == [
        f"ready: 2 destinations, ping_interval {config.ping_interval} s, delete_counter "
        f"{config.delete_counter}, ping_timeout {config.ping_timeout_ms} ms"
    ]
    assert ready_lines(load_config({"DOWN_AFTER": "3"}), 0)[1].startswith("health: down_after 3")
    assert pinger_started(config, 5).startswith("pinger started: 5 destinations")
    assert "via 10.0.0.53:53" in dns_started(config, "10.0.0.53:53")
    defines = {"KA_PING_INTERVAL": "7"}
    assert read_defines(defines.get) == {"PING_INTERVAL": "7"}


# ---- HTTP serving ------------------------------------------------------------------------


def request(url: str = "/RPC") -> HttpRequest:
    return HttpRequest("POST", url, "127.0.0.1", None)


def test_scrapes_are_told_from_rpc() -> None:
    assert http_serving.is_metrics(request("/metrics?x=1"), "/metrics")
    assert not http_serving.is_metrics(request("/metrics"), "")
    assert not http_serving.is_metrics(request(), "/metrics")


def test_a_reply_over_the_bound_becomes_a_413(monkeypatch: pytest.MonkeyPatch) -> None:
    small = HttpAnswer(200, "OK", "x" * 10)
    assert http_serving.bounded(small) is small
    monkeypatch.setattr(http_serving, "MAX_REPLY_BYTES", 5)
    big = http_serving.bounded(small)
    assert big.status == 413 and "result of 10 bytes is over 5" in big.body


def test_refusals_answer_and_log_in_one_line() -> None:
    refusal = Refusal(403, "Forbidden", "source not allowed")
    assert json.loads(http_serving.refusal_answer(refusal).body)["error"]["message"] == "forbidden"
    line = http_serving.refusal_line(request("/x" * 60), 403, "source not allowed", "JSON-RPC", 2)
    assert line.startswith("JSON-RPC over HTTP from 127.0.0.1: 403, source not allowed: POST ")
    assert line.endswith(" (2 more not logged)") and "/x" * 41 not in line, "the URL is cut at 80"


# ---- KDMQ admission ----------------------------------------------------------------------


def test_kdmq_bodies_are_checked_before_the_pinger_sees_them() -> None:
    body = encode_heartbeat(Heartbeat("127.41.0.2:5060", 1, "0" * 16, 0, 0, "distributed"))
    assert admission.check_body(body, "127.41.0.2") == "127.41.0.2:5060"
    claims = admission.check_body(body, "127.41.0.3")
    assert isinstance(claims, admission.Refusal) and claims.code == 403
    assert admission.check_body(None, "x") == (400, "Bad Body", "from x: body not UTF-8")
    huge = admission.check_body(b"x" * (MAX_BODY_BYTES + 1), "x")
    assert isinstance(huge, admission.Refusal) and huge.code == 413
    bad = admission.check_body(b"{}", "x")
    assert isinstance(bad, admission.Refusal) and bad.reason == "Bad Message"
    line = admission.refusal_line(admission.inbox_full("x"), 0)
    assert line == "cluster: KDMQ refused with 503 from x: cluster inbox full"
    assert admission.not_a_node("x").code == 403


# ---- names -------------------------------------------------------------------------------


def test_the_servers_come_from_the_parameter_or_resolv_conf() -> None:
    assert server_list("10.0.0.53:5353 10.0.0.54", lambda: "") == (
        ("10.0.0.53", 5353), ("10.0.0.54", 53),
    )  # fmt: skip
    conf = "nameserver 10.0.0.9\nnameserver 10.0.0.10\n"
    assert server_list("", lambda: conf) == (("10.0.0.9", 53), ("10.0.0.10", 53))

    def unreadable() -> str:
        raise OSError("no file")

    assert server_list("", unreadable) == server_list("", lambda: "") == (("127.0.0.1", 53),)


def test_run_lookup_drives_a_lookup_with_answers_and_failures() -> None:
    uri = parse_uri("sip:gw.ka.test:5060")

    def answers(name: str, qtype: int) -> tuple[int, list[Record]]:
        return 0, [Record(name, A, 60, "10.0.0.1")] if qtype == A else []

    result = run_lookup(answers, uri, 300)
    assert [t.address for t in result.targets] == ["10.0.0.1"] and not result.failed

    def dead(name: str, qtype: int) -> tuple[int, list[Record]]:
        raise TimeoutError()

    failed = run_lookup(dead, uri, 300)
    assert failed.failed and "TimeoutError" in failed.reason


def test_the_schedule_runs_due_lookups_and_survives_a_bug() -> None:
    schedule = ResolveSchedule()
    uri = parse_uri("sip:gw.ka.test")
    schedule.take(1, uri, 0.0)
    schedule.take(2, parse_uri("sip:bug.ka.test"), 0.0)
    got: list[tuple[object, Resolution]] = []

    def resolve(u: object) -> Resolution:
        if "bug" in str(getattr(u, "host", "")):
            raise KeyError("oops")
        return Resolution((), 60)

    nxt = schedule.run_due(lambda: 10.0, resolve, lambda k, r: got.append((k, r)))
    assert [k for k, _ in got] == [1, 2]
    assert got[1][1].failed and got[1][1].ttl_s == INTERNAL_ERROR_TTL_S
    assert "internal error: KeyError('oops')" in got[1][1].reason
    assert nxt is not None and nxt > 10.0
    schedule.take(1, None, 11.0)
    schedule.take(2, None, 11.0)
    assert schedule.run_due(lambda: 1e9, resolve, lambda k, r: got.append((k, r))) is None
