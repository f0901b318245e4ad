"""ka_core.script: what a script sees, decided without Kamailio (callbacks and their events,
native cfg arguments and event variables, the TCP keepalive functions' decisions)."""

from __future__ import annotations

import json

import pytest

from ka_core.errors import InvalidArgument
from ka_core.events import ProbingStopped, ResponseReceived, StateChanged
from ka_core.script import callbacks, native_cfg, tcp_calls
from ka_core.script.callbacks import DestinationEvent
from ka_core.state import State
from ka_core.tcpka import TcpConn, TcpKaError

URI = "sip:10.0.0.1:5060"


def changed(old: State, new: State, callback: str = "", user: str = "") -> StateChanged:
    return StateChanged(URI, "own", old, new, callback, user, code=200, rtt_ms=12.3456)


def module_level(uri: str, state: int, user: object) -> None:
    """A callback other processes can import."""


# ---- callbacks ---------------------------------------------------------------------------


def test_callback_path_is_the_import_path_and_refuses_lambdas_and_closures() -> None:
    assert callbacks.callback_path(module_level) == f"{__name__}:module_level"
    assert callbacks.callback_path("pkg.mod:fn") == "pkg.mod:fn"
    assert callbacks.callback_path(None) == ""
    with pytest.raises(InvalidArgument, match="module-level functions"):
        callbacks.callback_path(lambda *a: None)

    def inner() -> None: ...

    with pytest.raises(InvalidArgument, match="no lambdas or closures"):
        callbacks.callback_path(inner)


def test_user_attr_travels_as_json_and_a_bad_one_is_refused() -> None:
    assert callbacks.encode_user(None) == ""
    assert callbacks.decode_user(callbacks.encode_user({"a": [1, 2]})) == {"a": [1, 2]}
    assert callbacks.decode_user("") is None
    with pytest.raises(InvalidArgument, match="user_attr is not JSON-serialisable"):
        callbacks.encode_user(object())


def test_script_event_names_the_route_rounds_the_rtt_and_skips_first_states() -> None:
    event = changed(State.UP, State.DOWN, user='{"k": 1}')
    assert callbacks.script_event(event, initial=False) == (
        "keepalive:dst-down", DestinationEvent(URI, "own", 1, 2, 200, 12.346, {"k": 1}),
    )  # fmt: skip
    first = changed(State.UNKNOWN, State.UP)
    assert callbacks.script_event(first, initial=False) is None
    assert callbacks.script_event(first, initial=True) is not None
    assert callbacks.script_event(changed(State.UP, State.UNKNOWN), initial=True) is None


def test_each_event_has_its_log_line_and_its_callback_arguments() -> None:
    event = changed(State.UP, State.DEGRADED, callback="m:f", user="[1]")
    assert callbacks.log_line(event) == (
        callbacks.INFO, f"destination {URI} owner own: UP -> DEGRADED",
    )  # fmt: skip
    assert callbacks.user_call(event) == ("m:f", 12.3456, (URI, 3, [1]))
    reply = ResponseReceived(URI, "own", 408, "m:g", "", rtt_ms=0.0)
    assert callbacks.log_line(reply) is None
    assert callbacks.user_call(reply) == ("m:g", 0.0, (URI, 408, None))
    assert callbacks.user_call(changed(State.UP, State.DOWN)) is None, "no callback set"
    stopped = ProbingStopped(URI, "own", 4)
    level, text = callbacks.log_line(stopped) or ("", "")
    assert level == callbacks.WARN and "4 consecutive failures, probing stopped" in text
    assert callbacks.user_call(stopped) is None


def test_call_with_rtt_passes_it_only_to_callbacks_that_take_it() -> None:
    seen: list[tuple[object, ...]] = []

    def plain(*args: object) -> None:
        seen.append(args)

    def with_rtt(uri: str, code: int, user: object, rtt_ms: float = -1.0) -> None:
        seen.append((uri, code, user, rtt_ms))

    callbacks.call_with_rtt(plain, 1.23456, URI, 200, None)
    callbacks.call_with_rtt(with_rtt, 1.23456, URI, 200, None)
    assert seen == [(URI, 200, None), (URI, 200, None, 1.235)]
    assert not callbacks.takes_rtt(len), "a builtin without a signature gets C's arguments"


# ---- native cfg --------------------------------------------------------------------------


def test_words_are_split_and_a_wrong_count_says_the_usage() -> None:
    assert native_cfg.split_words("ka_add_destination", " sip:a  own ") == ["sip:a", "own"]
    assert native_cfg.split_words("tcp_keepalive_disable", None) == []
    with pytest.raises(InvalidArgument) as info:
        native_cfg.split_words("ka_del_destination", "sip:a")
    assert str(info.value) == (
        'ka_del_destination: use python_exec("ka_del_destination", "<uri> <owner>"), not \'sip:a\''
    )
    with pytest.raises(InvalidArgument, match="not None"):
        native_cfg.split_words("ka_is_alive", None)


def test_event_vars_keep_ints_and_round_the_rtt() -> None:
    event = DestinationEvent(URI, "cfg", 1, 2, 408, 12.6, None)
    assert native_cfg.event_vars(event) == [
        ("ka_uri", URI), ("ka_owner", "cfg"), ("ka_old_state", 1), ("ka_new_state", 2),
        ("ka_code", 408), ("ka_rtt_ms", 13),
    ]  # fmt: skip


def test_evrexec_request_and_refusals() -> None:
    request = json.loads(native_cfg.evrexec_request("keepalive:dst-up", URI))
    assert request == {"jsonrpc": "2.0", "method": "evrexec.run",
                       "params": ["keepalive:dst-up", URI]}  # fmt: skip
    is_error, text = native_cfg.evrexec_refusal(
        "keepalive:dst-up", '{"message":"Method Not Found"}'
    )
    assert is_error and "evrexec.so is not loaded" in text
    is_error, text = native_cfg.evrexec_refusal("keepalive:dst-up", None)
    assert not is_error and text.startswith("no event_route[keepalive:dst-up] in the cfg")


def test_event_callback_is_refused_in_a_native_cfg_and_ka_paths_are_known() -> None:
    assert native_cfg.callback_refusal("") is None
    assert "KA_EVENT_CALLBACK 'cb' has no use" in (native_cfg.callback_refusal("cb") or "")
    assert native_cfg.is_ka_path("/RPC", "/RPC", "")
    assert native_cfg.is_ka_path("/metrics", "/RPC", "/metrics")
    assert not native_cfg.is_ka_path("/", "/RPC", ""), "no metrics path: '' is not one"


# ---- TCP keepalive -----------------------------------------------------------------------


def test_enable_arguments_with_and_without_conid() -> None:
    assert tcp_calls.enable_args(("60", 5, 5)) == (None, (60, 5, 5))
    assert tcp_calls.enable_args((7, 60, 5, 5)) == (7, (60, 5, 5))
    with pytest.raises(InvalidArgument, match="got 2 argument"):
        tcp_calls.enable_args((1, 2))
    with pytest.raises(InvalidArgument):
        tcp_calls.enable_args((0, 60, 5, 5))
    assert tcp_calls.optional_conid(None) is None and tcp_calls.optional_conid("9") == 9


def test_uri_peer_refuses_udp_and_connections_must_exist() -> None:
    assert tcp_calls.uri_peer("sip:10.0.0.1:5070;transport=tcp") == ("10.0.0.1", 5070)
    with pytest.raises(InvalidArgument, match="transport=udp has no TCP connection"):
        tcp_calls.uri_peer("sip:10.0.0.1;transport=udp")
    conn = TcpConn(3, "TCP", "10.0.0.1", 5070, "10.0.0.9", 40000, "")
    assert tcp_calls.connections_to({3: conn}, ["10.0.0.1"], "gw", 5070) == [conn]
    with pytest.raises(TcpKaError, match="no TCP connection to gw:5070"):
        tcp_calls.connections_to({3: conn}, ["10.0.0.2"], "gw", 5070)


def test_message_target_from_the_current_message() -> None:
    message = ("tcp", "4", "10.0.0.1", "5060", "10.0.0.9", 5060)
    target = tcp_calls.message_target(None, message)
    assert target == (4, (("10.0.0.9", 5060), ("10.0.0.1", 5060)))
    assert tcp_calls.message_target(4, message).sockets is not None, "its own conid"
    assert tcp_calls.message_target(5, message) == (5, None), "another connection"
    assert tcp_calls.not_held(target) == 4
    with pytest.raises(TcpKaError, match="not a TCP connection"):
        tcp_calls.message_target(None, ("udp", None, "10.0.0.1", 5060, "10.0.0.9", 5060))
    with pytest.raises(TcpKaError, match="no port"):
        tcp_calls.message_target(None, ("tcp", None, "10.0.0.1", None, "10.0.0.9", 5060))
    unheld = tcp_calls.message_target(None, ("TLS", None, "10.0.0.1", 1, "10.0.0.9", 2))
    with pytest.raises(TcpKaError, match="in this process and no \\$conid"):
        tcp_calls.not_held(unheld)


def test_listed_connections_and_their_sockets() -> None:
    ws = TcpConn(2, "WS", "10.0.0.1", 1, "10.0.0.9", 2, "")
    udp = TcpConn(3, "UDP", "10.0.0.1", 1, "10.0.0.9", 2, "")
    assert tcp_calls.listed({2: ws}, 2) is ws
    with pytest.raises(TcpKaError, match="unknown conid 8"):
        tcp_calls.listed({2: ws}, 8)
    assert tcp_calls.conn_sockets(ws) == (("10.0.0.9", 2), ("10.0.0.1", 1))
    with pytest.raises(TcpKaError, match="is a UDP connection, not TCP"):
        tcp_calls.conn_sockets(udp)


def test_path_texts_and_failures() -> None:
    assert tcp_calls.announcement(*tcp_calls.pidfd_used(42), pid=7) == (
        "tcp:pidfd",
        "tcp_keepalive: process 7 uses other connections: pidfd_getfd on tcp main pid 42",
    )
    assert tcp_calls.tcpops_fallback("EPERM")[1] == "other connections: tcpops fallback (EPERM)"
    assert "KA_TCP_KEEPALIVE_METHOD=pidfd" in str(tcp_calls.pidfd_refused(3, "EPERM"))
    assert "tcpops.so is not loaded" in str(tcp_calls.tcpops_missing(3))
    tcp_calls.tcpops_result(3, 1)
    with pytest.raises(TcpKaError, match="tcpops failed \\(rc -1\\)"):
        tcp_calls.tcpops_result(3, -1)
    with pytest.raises(TcpKaError, match="need Linux \\(this is darwin\\)"):
        tcp_calls.platform_check("darwin", True)
    tcp_calls.platform_check("linux", True)


def test_jsonrpcs_requests_and_answers() -> None:
    assert json.loads(tcp_calls.rpc_request("core.psx"))["method"] == "core.psx"
    assert tcp_calls.rpc_body("core.psx", "200", "{}") == "{}"
    with pytest.raises(TcpKaError, match=r"core\.psx via jsonrpcs failed: code 500"):
        tcp_calls.rpc_body("core.psx", 500, "{}")
    with pytest.raises(TcpKaError):
        tcp_calls.rpc_body("core.psx", 200, None)
    assert tcp_calls.ip_literal("0:0::1") == "::1"
    assert tcp_calls.ip_literal("gw.example") is None
    assert tcp_calls.as_int(True) is None and tcp_calls.as_int(" 12 ") == 12
