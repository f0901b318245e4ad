"""The health model against a real Kamailio and real peers: thresholds, alive codes,
DEGRADED, probing while down, events to a KEMI method, per-destination settings (socket,
From), pause/resume and the runtime interval (docs/health.md)."""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import Kamailio, free_address, free_port
from tests.integration.test_keepalive import state_of, wait_state
from tests.integration.test_rpc import jsonrpc_call
from tests.peers.uas import build_response, parse_request

pytestmark = pytest.mark.integration


def info(kam: Kamailio, uri: str, owner: str = "t") -> dict[str, str]:
    out = kam.kamcmd("keepalive.info", uri, owner)
    return dict(re.findall(r"^\s*([a-z][a-z ]*): (.*)$", out, re.M))


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 2) for a, b in itertools.pairwise(times)]


def test_alive_codes_make_a_404_answering_peer_up(kam, uas_factory) -> None:
    """Debian's baresip answers OPTIONS with 404: with alive=2xx,404 it is UP; without, DOWN."""
    uas = uas_factory()
    uas.answer(404)
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "phone", "alive=2xx,404") == "1"
    assert result_of(kam, "ka_add_destination", uri, "strict") == "1"
    wait_state(kam, uri, 1, owner="phone")
    wait_state(kam, uri, 2, owner="strict")
    uas.answer(486)
    wait_state(kam, uri, 2, owner="phone")


def test_down_after_and_up_after_thresholds(kamailio_factory: KamailioFactory, uas_factory) -> None:
    kam = kamailio_factory(defines={"KA_DOWN_AFTER": 3, "KA_UP_AFTER": 2})
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "t") == "1"
    uas.wait_requests(1, timeout=3)
    time.sleep(0.3)
    assert state_of(kam, uri) == 0, "one 200 is not enough with up_after 2"
    wait_state(kam, uri, 1, timeout=3)
    assert uas.count() >= 2
    uas.blackhole()
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        row = info(kam, uri)
        seen.add((int(row["consecutive failures"]), int(row["state"])))
        if row["state"] == "2":
            break
        time.sleep(0.1)
    assert {(1, 1), (2, 1)} <= seen, seen  # two timeouts: still UP
    assert all(state == (2 if fails >= 3 else 1) for fails, state in seen), seen


def test_slow_peer_is_degraded_and_ka_is_alive_says_3(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    kam = kamailio_factory(defines={"KA_DEGRADED_MS": 200})
    uas = uas_factory()
    uas.delay(0.4)
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "t") == "1"
    wait_state(kam, uri, 3)
    assert result_of(kam, "ka_is_alive", uri) == "3"
    assert float(info(kam, uri)["last rtt ms"]) >= 400
    uas.answer(200)
    wait_state(kam, uri, 1, timeout=3)
    assert result_of(kam, "ka_is_alive", uri) == "1"


def test_probing_continues_with_backoff_while_down(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    kam = kamailio_factory(defines={"KA_DOWN_BACKOFF_MAX": 4, "KA_DELETE_COUNTER": 1})
    uas = uas_factory()
    uas.blackhole()
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "t") == "1"
    time.sleep(13)
    first: dict[str | None, float] = {}
    for req in uas.received("OPTIONS"):  # tm retransmits over UDP: one ping per Call-ID
        first.setdefault(req.call_id, req.mono)
    times = sorted(first.values())
    steps = gaps(times)
    assert len(times) >= 5, steps  # C stops after delete_counter + 1 = 2 pings
    # timeout = interval here: a ping is sent before the previous one has failed
    assert steps[:4] == pytest.approx([1, 1, 2, 4], abs=0.3), steps
    assert max(steps) == pytest.approx(4, abs=0.4), steps
    assert all(b >= a - 0.3 for a, b in itertools.pairwise(steps)), steps
    assert info(kam, uri)["probing"] == "active"
    uas.answer(200)
    wait_state(kam, uri, 1, timeout=6)


def _events(path: Path) -> list[list[object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_event_callback_gets_every_change_once_in_order(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    kam = kamailio_factory(defines={"KA_EVENT_CALLBACK": "ka_event", "KA_TEST_EVENTS": f'"{out}"'})
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    owners = [f"o{i:03d}" for i in range(100)]
    for owner in owners:
        assert "Ok" in kam.kamcmd("keepalive.add", uri, owner)
    for owner in owners:
        wait_state(kam, uri, 1, owner=owner)
    assert _events(out) == [], "first states are not events without event_initial"
    uas.blackhole()
    deadline = time.monotonic() + 6
    while len(_events(out)) < 100 and time.monotonic() < deadline:
        time.sleep(0.1)
    uas.answer(200)
    deadline = time.monotonic() + 6
    while len(_events(out)) < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    events = _events(out)
    assert len(events) == 200, events[-5:]
    by_owner: dict[str, list[str]] = {}
    for name, e_uri, owner, old, new, code, rtt, _pid in events:
        assert e_uri == uri
        by_owner.setdefault(str(owner), []).append(str(name))
        if name == "keepalive:dst-down":
            assert (old, new, code, rtt) == (1, 2, 408, 0.0)
        else:
            assert (name, old, new, code) == ("keepalive:dst-up", 2, 1, 200)
            assert isinstance(rtt, float) and rtt > 0
    assert by_owner == {o: ["keepalive:dst-down", "keepalive:dst-up"] for o in owners}
    assert len({e[-1] for e in events}) == 1, "all in one process: the pinger"

    out2 = tmp_path / "initial.jsonl"
    kam2 = kamailio_factory(
        defines={
            "KA_EVENT_CALLBACK": "ka_event", "KA_EVENT_INITIAL": 1,
            "KA_TEST_EVENTS": f'"{out2}"', "KA_DESTINATION": f'"{uri}"',
        }
    )  # fmt: skip
    wait_state(kam2, uri, 1, owner="_params")
    time.sleep(0.3)
    assert [e[:5] for e in _events(out2)] == [["keepalive:dst-up", uri, "_params", 0, 1]]


def test_settings_over_rpc_add_and_info_shows_rtt(kam, uas_factory, tmp_path: Path) -> None:
    uas = uas_factory()
    uas.answer(404)
    uri = f"sip:{uas.host}:{uas.port}"
    settings = "alive=2xx,404;from=sip:probe@example.org;down_after=2"
    assert "Ok" in kam.kamcmd("keepalive.add", uri, "t", settings)
    wait_state(kam, uri, 1)
    req = uas.wait_requests(2, timeout=4)[0]
    assert req.headers["From"].startswith("<sip:probe@example.org>")
    row = info(kam, uri)
    deadline = time.monotonic() + 2  # a reply is applied on the pinger's next 100 ms tick
    while int(row["replies"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        row = info(kam, uri)
    assert row["settings"] == "from=sip:probe@example.org;down_after=2;alive=2xx,404"
    assert int(row["replies"]) >= 2 and row["timeouts"] == "0"
    for name in ("last rtt ms", "avg rtt ms", "ewma rtt ms", "max rtt ms"):
        assert 0 < float(row[name]) < 500, (name, row)
    assert float(row["max rtt ms"]) >= float(row["avg rtt ms"])
    reply = jsonrpc_call(kam, "keepalive.info", [uri, "t"])
    assert reply["result"][0]["settings"] == row["settings"], reply

    calls = tmp_path / "api.jsonl"
    uas.answer(200)
    api_uri = f"sip:{uas.host}:{uas.port};transport=udp"
    assert result_of(kam, "api_add_settings", api_uri, "api", "up_after=1", calls) == "0"
    wait_state(kam, api_uri, 1, owner="api")
    time.sleep(0.3)
    kind, _uri, (state, rtt), _tag, _pid = json.loads(calls.read_text().splitlines()[0])
    assert (kind, state) == ("state_rtt", 1) and 0 < rtt < 500


def test_socket_setting_sends_from_that_socket_and_ignores_other_replies(
    kamailio_factory: KamailioFactory, uas_factory
) -> None:
    ip_a, port_a = free_address()
    ip_b = free_address()[0]
    port_b = free_port(ip_b)
    kam = kamailio_factory(defines={"LISTEN_EXTRA": f"udp:{ip_b}:{port_b}"}, ip=ip_a, port=port_a)
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    kam.kamcmd("keepalive.add", uri, "a", f"socket=udp:{ip_a}:{port_a}")
    kam.kamcmd("keepalive.add", uri, "b", f"socket=udp:{ip_b}:{port_b}")
    wait_state(kam, uri, 1, owner="a")
    wait_state(kam, uri, 1, owner="b")
    sources = {r.source for r in uas.wait_requests(4, timeout=4)}
    assert sources == {(ip_a, port_a), (ip_b, port_b)}, sources
    assert info(kam, uri, "b")["settings"] == f"socket=udp:{ip_b}:{port_b}"

    # a peer whose 200 comes back on the other socket: tm matches it, ka-kemi does not count it
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((free_address()[0], 0))
    peer.settimeout(0.2)
    stop = threading.Event()

    def answer_on_the_wrong_socket() -> None:
        while not stop.is_set():
            try:
                raw, src = peer.recvfrom(65535)
            except TimeoutError:
                continue
            req = parse_request(raw, "udp", src)
            if req is not None:
                peer.sendto(build_response(req, 200), (ip_a, port_a))

    thread = threading.Thread(target=answer_on_the_wrong_socket, daemon=True)
    thread.start()
    try:
        host, port = peer.getsockname()
        wrong = f"sip:{host}:{port}"
        kam.kamcmd("keepalive.add", wrong, "b", f"socket=udp:{ip_b}:{port_b}")
        kam.kamcmd("keepalive.add", wrong, "a", f"socket=udp:{ip_a}:{port_a}")
        wait_state(kam, wrong, 1, owner="a")
        wait_state(kam, wrong, 2, owner="b")
        time.sleep(1.2)
        assert state_of(kam, wrong, "b") == 2 and info(kam, wrong, "b")["replies"] == "0"
    finally:
        stop.set()
        thread.join(timeout=2)
        peer.close()


def test_pause_and_resume_all_and_one(kam, uas_factory) -> None:
    one, two = uas_factory(), uas_factory()
    uris = [f"sip:{u.host}:{u.port}" for u in (one, two)]
    for uri in uris:
        assert result_of(kam, "ka_add_destination", uri, "t") == "1"
        wait_state(kam, uri, 1)
    assert kam.kamcmd("keepalive.pause").strip() == "Ok. Probing paused."
    time.sleep(0.3)
    before = (one.count(), two.count())
    time.sleep(2.5)
    assert (one.count(), two.count()) == before, "no traffic while paused"
    assert [state_of(kam, u) for u in uris] == [1, 1], "states stay as they were"
    assert "paused: 1" in kam.kamcmd("keepalive.interval")
    assert "resumed" in kam.kamcmd("keepalive.resume")
    one.wait_requests(before[0] + 1, timeout=2)
    assert "paused" in kam.kamcmd("keepalive.pause", uris[0], "t")
    assert info(kam, uris[0])["probing"] == "paused"
    time.sleep(0.3)
    paused_count, running = one.count(), two.count()
    time.sleep(2.2)
    assert one.count() == paused_count and two.count() >= running + 2
    assert "resumed" in kam.kamcmd("keepalive.resume", uris[0], "t")
    one.wait_requests(paused_count + 1, timeout=2)
    assert "couldn't get data" in kam.kamcmd("keepalive.pause", "sip:192.0.2.7", "t")


def test_interval_changes_at_runtime(kam, uas_factory, tmp_path: Path) -> None:
    follows, own = uas_factory(), uas_factory()
    uri_f, uri_o = (f"sip:{u.host}:{u.port}" for u in (follows, own))
    assert result_of(kam, "ka_add_destination", uri_f, "t") == "1"
    assert result_of(kam, "api_add_destination", uri_o, "t", 1, tmp_path / "cb") == "0"
    wait_state(kam, uri_f, 1)
    assert "ping_interval: 1" in kam.kamcmd("keepalive.interval")
    assert kam.kamcmd("keepalive.interval", "2").strip() == (
        "Ok. ping_interval is 2 s for 1 destinations."
    )
    time.sleep(1.2)  # the ping already scheduled keeps its time
    start_f, start_o = follows.count(), own.count()
    time.sleep(6.2)
    steps_f = gaps([r.mono for r in follows.received()[start_f:]])
    steps_o = gaps([r.mono for r in own.received()[start_o:]])
    assert steps_f and all(abs(g - 2) < 0.3 for g in steps_f), steps_f
    assert steps_o and all(abs(g - 1) < 0.3 for g in steps_o), steps_o
    assert info(kam, uri_f)["ping interval ms"] == "2000"
    assert "error: 500" in kam.kamcmd("keepalive.interval", "0")


def test_bad_settings_are_refused_everywhere(kam) -> None:
    uri = "sip:192.0.2.10"
    assert result_of(kam, "ka_add_destination", uri, "t", "down_after=0") == "-1"
    assert "setting down_after: 0 out of range" in kam.log()
    out = kam.kamcmd("keepalive.add", uri, "t", "socket=udp:nowhere:5060")
    assert out.startswith("error: 500 - invalid destination: setting socket"), out
    out = kam.kamcmd("keepalive.add", uri, "t", "colour=blue")
    assert "unknown setting 'colour'" in out, out
    reply = jsonrpc_call(kam, "keepalive.add", [uri, "t", "alive=2yy"])
    assert "bad item '2yy'" in json.dumps(reply), reply
    assert "error: 500" in kam.kamcmd("keepalive.interval", "often")
    assert "uri:" not in kam.kamcmd("keepalive.list"), "nothing was added"


def test_a_flapping_peer_under_thresholds_3_2_gives_exactly_the_expected_changes(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    kam = kamailio_factory(
        defines={
            "KA_DOWN_AFTER": 3, "KA_UP_AFTER": 2, "KA_EVENT_CALLBACK": "ka_event",
            "KA_EVENT_INITIAL": 1, "KA_TEST_EVENTS": f'"{out}"',
        }
    )  # fmt: skip
    pattern = [200, 200, None, None, 200, None, None, None, 200, 200, 200]
    seen: dict[str | None, int] = {}

    def flap(req):  # type: ignore[no-untyped-def]
        index = seen.setdefault(req.call_id, len(seen))  # retransmissions: the same answer
        return pattern[index] if index < len(pattern) else 200

    uas = uas_factory()
    uas.set_behaviour(flap)
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "t") == "1"
    deadline = time.monotonic() + 20
    while len(seen) < len(pattern) + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    events = [(e[0], e[3], e[4]) for e in _events(out)]
    assert events == [
        ("keepalive:dst-up", 0, 1),  # the 2nd 200
        ("keepalive:dst-down", 1, 2),  # the 3rd timeout in a row (two alone did nothing)
        ("keepalive:dst-up", 2, 1),  # two 200s again
    ], events
    changes = re.findall(rf"destination {re.escape(uri)} owner t: (\w+ -> \w+)", kam.log())
    assert changes == ["UNKNOWN -> UP", "UP -> DOWN", "DOWN -> UP"], changes


def test_rtt_figures_agree_with_a_peer_that_answers_after_300_ms(kam, uas_factory) -> None:
    uas = uas_factory()
    uas.delay(0.3)
    uri = f"sip:{uas.host}:{uas.port}"
    assert result_of(kam, "ka_add_destination", uri, "t") == "1"
    wait_state(kam, uri, 1)
    uas.wait_requests(4, timeout=6)
    time.sleep(0.5)
    row = info(kam, uri)
    for name in ("last rtt ms", "avg rtt ms", "ewma rtt ms", "max rtt ms"):
        assert abs(float(row[name]) - 300) <= 20, (name, row)
    assert int(row["replies"]) >= 3 and row["timeouts"] == "0"
