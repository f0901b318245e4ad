"""The HTTP access check, the refusal log limiter, the shared add-rate bucket, and the
JSON-RPC answers to bad bodies: closed by default, nothing passes that the operator did not
allow."""

from __future__ import annotations

import json
import threading

import pytest

from ka_core.config.kaconfig import load_config
from ka_core.errors import InvalidArgument, RpcFault
from ka_core.ops import jsonrpc
from ka_core.ops.access import (
    HttpGuard,
    HttpRequest,
    LogLimiter,
    parse_allow,
    parse_path,
    parse_token,
    source_allowed,
)
from ka_core.ops.commands import RATE_LIMITED, RpcCommands
from ka_core.ratelimit import SharedBucket
from ka_core.store.table import SharedTable, buffer_size

TOKEN = "s3cret-token-0123456789"


def post(source: str, url: str = "/RPC", auth: str | None = None, method: str = "POST"):
    return HttpRequest(method=method, url=url, source=source, authorization=auth)


def test_default_answers_only_loopback_on_rpc() -> None:
    guard = load_config({}).http_guard
    assert guard.check(post("127.0.0.1")) is None
    assert guard.check(post("127.9.8.7")) is None
    assert guard.check(post("::1")) is None
    assert guard.check(post("[::1]")) is None
    for outside in ("10.0.0.1", "192.168.1.1", "2001:db8::1", "::ffff:10.0.0.1", "", "junk"):
        refusal = guard.check(post(outside))
        assert refusal is not None and refusal.status == 403, outside


def test_source_is_checked_before_path_and_method() -> None:
    guard = HttpGuard()
    refusal = guard.check(post("10.0.0.1", url="/nope", method="GET"))
    assert refusal is not None and refusal.status == 403


def test_path_method_and_query() -> None:
    guard = HttpGuard()
    assert guard.check(post("127.0.0.1", url="/RPC?x=1")) is None
    for url in ("/", "/rpc", "/RPC/", "/RPCx", "/anything/at/all", "http://h/x"):
        refusal = guard.check(post("127.0.0.1", url=url))
        assert refusal is not None and refusal.status == 404, url
    refusal = guard.check(post("127.0.0.1", method="GET"))
    assert refusal is not None and refusal.status == 405
    custom = HttpGuard(path="/ka/rpc")
    assert custom.check(post("127.0.0.1", url="/ka/rpc")) is None
    assert custom.check(post("127.0.0.1")) is not None


def test_allow_list_cidrs_ipv4_ipv6_and_mapped() -> None:
    allow = parse_allow("rpc_http_allow", '"127.0.0.1/32, 10.0.0.0/8 [2001:db8::/32] 192.0.2.7"')
    assert source_allowed(allow, "10.200.3.4")
    assert source_allowed(allow, "::ffff:10.1.1.1")
    assert source_allowed(allow, "2001:db8:1::5")
    assert source_allowed(allow, "192.0.2.7")
    assert not source_allowed(allow, "192.0.2.8")
    assert not source_allowed(allow, "127.0.0.2")
    assert not source_allowed(allow, "2001:db9::1")
    assert parse_allow("x", '""') == ()
    assert not source_allowed((), "127.0.0.1")


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "localhost", "10.0.0.300", "::g"])
def test_bad_allow_entries_name_the_parameter(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"rpc_http_allow: not an address or CIDR: '{bad}'"):
        load_config({"RPC_HTTP_ALLOW": f'"127.0.0.1 {bad}"'})


def test_token_required_when_set() -> None:
    guard = load_config({"RPC_HTTP_TOKEN": f'"{TOKEN}"'}).http_guard
    assert guard.check(post("127.0.0.1", auth=f"Bearer {TOKEN}")) is None
    for auth in (None, "", TOKEN, f"Bearer {TOKEN}x", f"bearer {TOKEN}", "Basic abc", "Bearer ü"):
        refusal = guard.check(post("127.0.0.1", auth=auth))
        assert refusal is not None and refusal.status == 403, auth


@pytest.mark.parametrize("bad", ["short", "has space inside it!", "ünïcødé-ünïcødé-ü"])
def test_weak_or_odd_tokens_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="rpc_http_token: needs 16 or more"):
        parse_token("rpc_http_token", bad)


@pytest.mark.parametrize("bad", ["RPC", "/a b", "/x?y", '""', "/x#y"])
def test_bad_paths(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="rpc_http_path"):
        parse_path("rpc_http_path", bad)


def test_rpc_add_rate_define() -> None:
    assert load_config({}).rpc_add_rate == 1000
    assert load_config({"RPC_ADD_RATE": "0"}).rpc_add_rate == 0
    with pytest.raises(InvalidArgument, match="rpc_add_rate: -1 out of range"):
        load_config({"RPC_ADD_RATE": "-1"})


def test_log_limiter_counts_what_it_drops() -> None:
    limiter = LogLimiter(burst=3, window_s=60)
    assert [limiter.admit(0.0) for _ in range(5)] == [0, 0, 0, None, None]
    assert limiter.admit(59.9) is None
    assert limiter.admit(60.0) == 3
    assert limiter.admit(60.1) == 0


def _bucket() -> SharedBucket:
    return SharedBucket(memoryview(bytearray(16)), threading.Lock())


def test_bucket_allows_a_one_second_burst_then_the_rate() -> None:
    bucket = _bucket()
    assert sum(bucket.take(100.0, 10) for _ in range(25)) == 10
    assert sum(bucket.take(100.5, 10) for _ in range(25)) == 5
    assert sum(bucket.take(99.0, 10) for _ in range(25)) == 0, "clock stepped back: no refill"
    assert sum(bucket.take(1e6, 10) for _ in range(25)) == 10, "a jump refills one burst only"
    assert all(bucket.take(0.0, 0) for _ in range(100)), "0 = no limit"


def _commands(rate: int, now: list[float]) -> RpcCommands:
    buf = bytearray(buffer_size(100, 64))
    SharedTable.format_buffer(buf, 100, 64)
    return RpcCommands(SharedTable(buf, threading.Lock()), lambda: now[0], add_rate=rate)


def test_rpc_add_rate_limit_is_a_clear_fault() -> None:
    now = [1_700_000_000.0]
    commands = _commands(3, now)
    for i in range(3):
        commands.call("keepalive.add", [f"10.0.0.{i}", "o"])
    with pytest.raises(RpcFault) as fault:
        commands.call("keepalive.add", ["10.0.0.9", "o"])
    assert fault.value.code == RATE_LIMITED
    assert "limit is 3 per second (rpc_add_rate)" in fault.value.text
    answer = jsonrpc.answer(
        json.dumps({"jsonrpc": "2.0", "method": "keepalive.add", "params": ["a", "b"], "id": 1})
        .encode(), commands,
    )  # fmt: skip
    assert answer is not None and answer.status == 429
    assert json.loads(answer.body)["error"]["code"] == 429
    assert len(commands.call("keepalive.list", [])) == 3
    now[0] += 1
    commands.call("keepalive.add", ["10.0.0.9", "o"])
    assert len(commands.call("keepalive.list", [])) == 4


def _answer(body: bytes) -> jsonrpc.HttpAnswer | None:
    return jsonrpc.answer(body, _commands(0, [0.0]))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"x" * (jsonrpc.MAX_BODY_BYTES + 1), 413, "request over 8192 bytes"),
        (b'{"method": "\xff\xfe"}', 400, "body is not UTF-8"),
        (b"{not json", 400, "Parse error"),
        (b"", 400, "Parse error"),
        (b"[" * 10 + b"]" * 10, 400, "batch requests are not supported"),
        (json.dumps([{"jsonrpc": "2.0", "method": "core.version", "id": i}
                     for i in range(100)]).encode(), 400, "batch requests are not supported"),
        (b'"keepalive.flush"', 400, "the request must be a JSON object"),
        (b"42", 400, "the request must be a JSON object"),
        (b'{"jsonrpc": "2.0", "id": 1}', 400, "method must be a string"),
        (b'{"jsonrpc": "2.0", "method": 7, "id": 1}', 400, "method must be a string"),
    ],
)  # fmt: skip
def test_bad_bodies_get_a_4xx_and_never_reach_jsonrpcs(
    body: bytes, status: int, message: str
) -> None:
    answer = _answer(body)
    assert answer is not None, "None would hand the body to jsonrpcs"
    assert answer.status == status
    assert json.loads(answer.body)["error"]["message"] == message


def test_deeply_nested_json_is_a_parse_error() -> None:
    answer = _answer(b'{"a":' * 5000 + b"1" + b"}" * 5000)
    assert answer is not None and answer.status in (400, 413)
    nested = _answer(b'{"a":' * 1300 + b"1" + b"}" * 1300)
    assert nested is not None and nested.status == 400
