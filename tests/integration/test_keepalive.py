"""Keepalive end to end: real Kamailio pings real peers; state is shared by every process."""

from __future__ import annotations

import itertools
import re
import subprocess
import time

import pytest

from tests.conftest import KamailioFactory, call_fn, result_of
from tests.harness.kamailio import Kamailio, free_address

pytestmark = pytest.mark.integration


def state_of(kam: Kamailio, uri: str, owner: str = "t") -> int | None:
    out = kam.kamcmd("keepalive.get", uri, owner)
    m = re.search(r"state: (\d)", out)
    return int(m.group(1)) if m else None


def wait_state(
    kam: Kamailio, uri: str, state: int, timeout: float = 5.0, owner: str = "t"
) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if state_of(kam, uri, owner) == state:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(
        f"{uri} not in state {state} after {timeout} s: {kam.kamcmd('keepalive.info')}"
    )


def seen_at(kam: Kamailio, uri: str, state: int, timeout: float = 5.0, owner: str = "t") -> float:
    """``time.monotonic()`` when the state was first seen (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state_of(kam, uri, owner) == state:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"{uri} not in state {state} after {timeout} s")


def add(kam: Kamailio, uri: str, owner: str = "t", transport: str = "udp") -> None:
    assert result_of(kam, "ka_add_destination", uri, owner, transport=transport) == "1"


def assert_intervals(times: list[float], interval: float) -> None:
    """Pings every ``interval``: no drift on average, no gap off by more than a loaded
    machine's scheduling delay (the pinger keeps its grid, so a late ping is not followed
    by a late schedule)."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps, times
    assert abs(sum(gaps) / len(gaps) - interval) < 0.05, gaps
    assert all(abs(g - interval) < 0.25 for g in gaps), gaps


def test_answering_peer_is_up_and_the_options_look_like_the_c_modules(kam, uas_factory) -> None:
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    before = time.monotonic()
    add(kam, uri)
    after = time.monotonic()
    wait_state(kam, uri, 1)
    req = uas.wait_requests(1, timeout=3)[0]
    # The add happened between ``before`` and ``after``; its first ping 0.35-0.45 s later on
    # the 100 ms grid, plus up to 50 ms for the send on a loaded machine.
    assert req.mono - before >= 0.35 and req.mono - after <= 0.5, (before, after, req.mono)
    assert req.method == "OPTIONS" and req.uri == uri
    h = req.headers
    assert re.fullmatch(r"<sip:keepalive@kamailio.org>;tag=\S+", h["From"])
    assert h["To"] == f"<{uri}>"
    assert h["CSeq"] == "10 OPTIONS"
    assert h["Max-Forwards"] == "70"
    assert h["Content-Length"] == "0"
    assert h["Via"].startswith(f"SIP/2.0/UDP {kam.ip}") and "branch=z9hG4bK" in h["Via"]
    assert result_of(kam, "ka_is_alive", uri) == "1"
    pings = uas.wait_requests(5, timeout=6)
    assert_intervals([r.mono for r in pings], 1.0)  # ping_interval is 1 s in tests


@pytest.mark.parametrize("code", [503, 404])
def test_error_reply_is_down(kam, uas_factory, code: int) -> None:
    uas = uas_factory()
    uas.answer(code)
    uri = f"sip:{uas.host}:{uas.port}"
    add(kam, uri)
    wait_state(kam, uri, 2)
    assert result_of(kam, "ka_is_alive", uri) == "2"
    assert result_of(kam, "ka_is_alive", uri, transport="tcp") == "2"  # another worker


def test_blackhole_is_down_after_the_ping_timeout(kam, uas_factory) -> None:
    uas = uas_factory()
    uas.blackhole()
    uri = f"sip:{uas.host}:{uas.port}"
    add(kam, uri)
    assert result_of(kam, "ka_is_alive", uri) == "1", "UNKNOWN counts as up before the first probe"
    down = seen_at(kam, uri, 2, timeout=4)
    ping = uas.wait_requests(1, timeout=1)[0]
    assert 0.95 < down - ping.mono < 1.4, "DOWN one ping timeout (1 s) after the ping arrived"


def test_closed_udp_port_and_refused_tcp_are_down(kam) -> None:
    ip, port = free_address()
    for uri in (f"sip:{ip}:{port}", f"sip:{ip}:{port};transport=tcp"):
        add(kam, uri)
    wait_state(kam, f"sip:{ip}:{port}", 2)
    wait_state(kam, f"sip:{ip}:{port};transport=tcp", 2)


def test_tcp_destination_is_pinged_over_tcp(kam, uas_factory) -> None:
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port};transport=tcp"
    add(kam, uri)
    wait_state(kam, uri, 1)
    req = uas.wait_requests(1, timeout=3)[0]
    assert req.transport == "tcp" and req.headers["Via"].startswith("SIP/2.0/TCP")


def test_ipv6_destination(kamailio_factory: KamailioFactory, uas_factory) -> None:
    kam = kamailio_factory(defines={"LISTEN_EXTRA": "udp:[::1]:" + str(free_address()[1])})
    uas = uas_factory(host="::1")
    uri = f"sip:[::1]:{uas.port}"
    add(kam, uri)
    wait_state(kam, uri, 1)
    assert result_of(kam, "ka_is_alive", f"[0:0::1]:{uas.port}") == "1"


def test_recovery_and_flapping(kam, uas_factory) -> None:
    uas = uas_factory()
    uas.answer(503)
    uri = f"sip:{uas.host}:{uas.port}"
    add(kam, uri)
    wait_state(kam, uri, 2)
    uas.answer(200)
    wait_state(kam, uri, 1, timeout=2.5)
    uas.alternate()
    kam.wait_log(rf"{re.escape(uri)} owner t: UP -> DOWN", 5)
    kam.wait_log(rf"{re.escape(uri)} owner t: DOWN -> UP", 5, count=2)


def test_lookup_accepts_every_spelling_of_the_uri(kam, uas_factory) -> None:
    """C fails on 'sip:'-prefixed lookups; all these match the same destination here."""
    uas = uas_factory()
    add(kam, f"{uas.host}:{uas.port}")
    wait_state(kam, f"sip:{uas.host}:{uas.port}", 1)
    for spelling in (
        f"{uas.host}:{uas.port}",
        f"sip:{uas.host}:{uas.port}",
        f"SIP:{uas.host}:{uas.port}",
    ):
        assert result_of(kam, "ka_is_alive", spelling) == "1"
    assert result_of(kam, "ka_is_alive", f"sips:{uas.host}:{uas.port}") == "-1"


def test_runtime_add_and_delete_from_different_workers(kam, uas_factory) -> None:
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    add(kam, uri, transport="tcp")
    uas.wait_requests(2, timeout=4)
    assert result_of(kam, "ka_add_destination", uri, "t") == "-1", "duplicate is an error"
    assert result_of(kam, "ka_del_destination", uri, "t", transport="udp") == "1"
    assert result_of(kam, "ka_del_destination", uri, "t") == "-1"
    time.sleep(0.2)
    count = len(uas.requests)
    time.sleep(2.0)
    assert len(uas.requests) <= count + 0, "no pings after deletion"
    assert result_of(kam, "ka_is_alive", uri) == "-1"


def test_static_destinations_and_many_of_them(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    uas = uas_factory()
    uris = [f"sip:u{i}@{uas.host}:{uas.port}" for i in range(220)]
    kam = kamailio_factory(
        defines={"KA_DESTINATION": '"' + " ".join(uris) + '"', "KA_PING_INTERVAL": 2}
    )
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        if kam.kamcmd("keepalive.list", "0", "300").count("state: 1") == 220:
            break
        time.sleep(0.2)
    listing = kam.kamcmd("keepalive.list", "0", "300")
    assert listing.count("owner: _params") == 220 and listing.count("state: 1") == 220
    arrivals = sorted(r.mono for r in uas.requests[:220])
    assert arrivals[-1] - arrivals[0] > 1.0, "first pings spread over the interval, not a burst"


def test_delete_counter_stops_probing_and_late_replies_do_not_revive(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    # 2 s, not 1: a 503 that reaches the pinger after the next tick (a loaded machine) lets
    # one more ping out, as it would with C's tm callback
    kam = kamailio_factory(defines={"KA_DELETE_COUNTER": 2, "KA_PING_INTERVAL": 2})
    uas = uas_factory()
    uas.answer(503)
    uri = f"sip:{uas.host}:{uas.port}"
    add(kam, uri)
    kam.wait_log(r"3 consecutive failures, probing stopped", 14)
    # pings, not datagrams: under load a UDP retransmission can cross the 503
    sent = len({r.call_id for r in uas.requests})
    assert sent == 3, "C: more than delete_counter failures, then no more pings"
    uas.answer(200)
    time.sleep(4.0)
    assert len({r.call_id for r in uas.requests}) == sent
    assert state_of(kam, uri) == 2 and result_of(kam, "ka_is_alive", uri) == "2"
    assert "probing: stopped" in kam.kamcmd("keepalive.info", uri, "t")
    assert result_of(kam, "ka_del_destination", uri, "t") == "1"
    add(kam, uri)
    wait_state(kam, uri, 1)


@pytest.mark.parametrize(
    ("fn", "args", "ints"),
    [
        ("ka_is_alive", ("",), False),
        ("ka_is_alive", ("garbage uri!",), False),
        ("ka_is_alive", ("sip:" + "a" * 4096,), False),
        ("ka_is_alive", ("sip:héllo.example",), False),
        ("ka_is_alive", ("5060",), True),
        ("ka_is_alive", (None,), False),
        ("ka_add_destination", ("", "o"), False),
        ("ka_add_destination", ("sip:10.0.0.1", ""), False),
        ("ka_add_destination", ("sip:" + "a" * 4096, "o"), False),
        ("ka_add_destination", ("sip:ünï.example", "o"), False),
        ("ka_add_destination", ("5060", "7"), True),
        ("ka_add_destination", ("sip:10.0.0.1", None), False),
        ("ka_add_destination", ("sip:10.0.0.1", "o" * 200), False),
        ("ka_del_destination", ("sip:10.0.0.99", "o"), False),
        ("ka_del_destination", ("", ""), False),
        ("ka_del_destination", (None, None), False),
    ],
)  # fmt: skip
def test_bad_input_returns_minus_one_and_logs(
    kam: Kamailio, fn: str, args: tuple, ints: bool
) -> None:
    reply = call_fn(kam, fn, *args, ints=ints)
    assert reply.code == 200 and reply.header("x-result") == "-1"
    kam.wait_log(rf"ERROR: .*keepalive: {fn}: ", 3)
    assert result_of(kam, "ka_is_alive", f"sip:{kam.ip}:{kam.port}") == "-1"  # still serving


def test_wrong_argument_count_does_not_crash(kam: Kamailio) -> None:
    assert result_of(kam, "ka_add_destination", "sip:10.0.0.1") == "-1"
    kam.wait_log(r"keepalive: ka_add_destination: wrong arguments: missing a required argument", 3)
    assert result_of(kam, "ka_del_destination", "a", "b", "c") == "-1"
    kam.wait_log(r"keepalive: ka_del_destination: wrong arguments: too many", 3)
    assert result_of(kam, "ka_is_alive", "a", "b") == "-1"
    kam.wait_log(r"keepalive: ka_is_alive: wrong arguments: too many", 3)
    assert result_of(kam, "ka_is_alive") == "-1"


def test_invalid_parameter_refuses_to_start(kamailio_factory: KamailioFactory) -> None:
    kam = kamailio_factory(defines={"KA_PING_INTERVAL": "ten"}, start=False)
    kam.start(wait=False)
    assert kam.proc is not None
    kam.proc.wait(timeout=15)
    assert kam.proc.returncode != 0
    assert "parameter ping_interval: not an integer: 'ten'" in kam.log()


def test_sigterm_is_quick_with_the_pinger_running(kam, uas_factory) -> None:
    uas = uas_factory()
    add(kam, f"sip:{uas.host}:{uas.port}")
    uas.wait_requests(1, timeout=3)
    start = time.monotonic()
    assert kam.stop() == 0
    assert time.monotonic() - start < 3.0
    assert subprocess.run(["pgrep", "-f", str(kam.workdir)], capture_output=True).stdout == b""


def test_developer_api_callbacks_run_in_the_pinger(kam: Kamailio, uas_factory, tmp_path) -> None:
    uas = uas_factory()
    uas.answer(503)
    out = tmp_path / "callbacks.jsonl"
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "api_add_destination", uri, "dev", "0.5", str(out)) == "0"
    assert result_of(kam, "api_add_destination", uri, "dev", "0.5", str(out)) == "-1"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not out.exists() or "state" not in out.read_text()):
        time.sleep(0.05)
    uas.answer(200)
    time.sleep(1.5)
    assert result_of(kam, "api_del_destination", uri, "dev") == "0"
    import json

    lines = [json.loads(x) for x in out.read_text().splitlines()]
    states = [x[2] for x in lines if x[0] == "state"]
    codes = [x[2] for x in lines if x[0] == "response"]
    assert states[:2] == [2, 1] and 503 in codes and 200 in codes
    assert {x[3] for x in lines} == {"dev"}, "user_attr passed back"
    pinger_pid = {x[4] for x in lines}
    assert len(pinger_pid) == 1, "all callbacks run in one process: the pinger"
    assert_intervals([r.mono for r in uas.requests], 0.5)  # the per-destination interval


def test_sipp_peer_is_up_and_counts_our_pings(kam: Kamailio, sipp_uas_factory) -> None:
    sipp = sipp_uas_factory()
    uri = f"sip:{sipp.host}:{sipp.port}"
    add(kam, uri)
    wait_state(kam, uri, 1)
    deadline = time.monotonic() + 6
    while sipp.answered() < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sipp.answered() >= 2


def test_restart_under_load_keeps_configured_destinations(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    """Static destinations come back after a restart; runtime ones do not (documented)."""
    uas = uas_factory()
    static = f"sip:{uas.host}:{uas.port}"
    kam = kamailio_factory(defines={"KA_DESTINATION": f'"{static}"'})
    wait_state(kam, static, 1, owner="_params")
    add(kam, f"sip:u1@{uas.host}:{uas.port}")
    load = subprocess.Popen(
        ["sipp", "-sn", "uac", "-m", "100000", "-r", "200", "-nostdin", "-nr",
         "-i", "127.0.0.1", f"{kam.ip}:{kam.port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        assert kam.stop() == 0
        kam.start()
        wait_state(kam, static, 1, timeout=3, owner="_params")
        assert state_of(kam, f"sip:u1@{uas.host}:{uas.port}") is None
        assert result_of(kam, "ka_is_alive", static) == "1"
    finally:
        load.terminate()  # sipp may linger over its calls in flight on a loaded machine
        try:
            load.wait(timeout=5)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait(timeout=5)
