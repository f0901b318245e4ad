"""BINRPC codec: property round trips, golden bytes from the wire, and the real ``kamcmd``.

Set ``KA_HYPOTHESIS_EXAMPLES=10000`` to run the property tests at full strength.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ka_core.ops.binrpc import (
    KAMCMD_MAX_REPLY,
    MAX_DEPTH,
    MAX_PACKET,
    BinrpcError,
    PacketReader,
    Request,
    Struct,
    Value,
    decode_reply,
    decode_request,
    encode_fault,
    encode_reply,
    encode_request,
    packet_cookie,
)

EXAMPLES = int(os.environ.get("KA_HYPOTHESIS_EXAMPLES", "100"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None)
KAMCMD = "/usr/sbin/kamcmd"
COOKIE = 0x7E55FC12

# ------------------------------------------------------------------ strategies

texts = st.text(st.characters(codec="utf-8"), max_size=40)
floats = st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
scalars: st.SearchStrategy[Value] = st.one_of(
    st.integers(-(2**31), 2**31 - 1), texts, floats, st.binary(max_size=40)
)
values: st.SearchStrategy[Value] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(texts, inner), max_size=4).map(lambda ms: Struct(tuple(ms))),
    ),
    max_leaves=25,
)
cookies = st.integers(0, 2**32 - 1)


def fixed_point(value: Value) -> Value:
    """What a value becomes after the wire: doubles are truncated to 3 decimals, as in C."""
    if isinstance(value, float):
        return int(value * 1000) / 1000
    if isinstance(value, list):
        return [fixed_point(v) for v in value]
    if isinstance(value, Struct):
        return Struct(tuple((k, fixed_point(v)) for k, v in value.members))
    return value


def framed(flags: int, body: bytes, cookie: int = COOKIE) -> bytes:
    """A header with an honest length around an arbitrary body (to fuzz the record decoder)."""
    return (
        bytes([0xA1, flags | 0x03 | 0x04])
        + len(body).to_bytes(2, "big")
        + cookie.to_bytes(4, "big")
        + body
    )


# ------------------------------------------------------------------ property tests


@PROPERTY
@given(cookies, texts, st.lists(values, max_size=5))
def test_request_round_trip(cookie: int, method: str, params: list[Value]) -> None:
    packet = encode_request(cookie, method, params)
    request = decode_request(packet)
    assert request == Request(cookie, method, tuple(fixed_point(p) for p in params))
    assert packet_cookie(packet) == cookie
    assert encode_request(cookie, request.method, request.params) == packet


@PROPERTY
@given(cookies, st.lists(values, max_size=6))
def test_reply_round_trip(cookie: int, reply: list[Value]) -> None:
    packet = encode_reply(cookie, reply)
    assert decode_reply(packet) == (False, [fixed_point(v) for v in reply])
    assert encode_reply(cookie, decode_reply(packet)[1]) == packet


@PROPERTY
@given(cookies, st.integers(-(2**31), 2**31 - 1), texts)
def test_fault_round_trip(cookie: int, code: int, text: str) -> None:
    assert decode_reply(encode_fault(cookie, code, text)) == (True, [code, text])


@PROPERTY
@given(
    st.lists(st.tuples(cookies, st.lists(values, max_size=3)), min_size=1, max_size=5),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
)
def test_reader_frames_any_chunking(
    calls: list[tuple[int, list[Value]]], chunk_sizes: list[int]
) -> None:
    packets = [encode_request(c, "m", p) for c, p in calls] + [encode_reply(1, ["x" * 300])]
    stream = b"".join(packets)
    reader, got, pos = PacketReader(), [], 0
    for step in itertools.cycle(chunk_sizes):
        if pos >= len(stream):
            break
        reader.feed(stream[pos : pos + step])
        pos += step
        while (packet := reader.next_packet()) is not None:
            got.append(packet)
    assert got == packets
    assert reader.buffered == 0


def only_binrpc_errors(blob: bytes) -> None:
    for decode in (decode_request, decode_reply, packet_cookie):
        with contextlib.suppress(BinrpcError):
            decode(blob)
    reader = PacketReader()
    try:
        reader.feed(blob)
        while reader.next_packet() is not None:
            pass
    except BinrpcError:
        with pytest.raises(BinrpcError):  # the error sticks: the stream is unusable
            reader.feed(b"")


@PROPERTY
@given(st.binary(max_size=200))
def test_garbage_raises_only_binrpc_error(blob: bytes) -> None:
    only_binrpc_errors(blob)
    only_binrpc_errors(b"\xa1" + blob)


@PROPERTY
@given(st.sampled_from([0x00, 0x10, 0x30]), st.binary(max_size=200))
def test_garbage_body_raises_only_binrpc_error(flags: int, body: bytes) -> None:
    only_binrpc_errors(framed(flags, body))


@PROPERTY
@given(cookies, st.lists(values, min_size=1, max_size=4), st.data())
def test_mutated_packet_raises_only_binrpc_error(
    cookie: int, params: list[Value], data: st.DataObject
) -> None:
    packet = bytearray(encode_request(cookie, "keepalive.add", params))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(packet) - 1))
        action = data.draw(st.sampled_from(["set", "cut", "insert"]))
        if action == "set":
            packet[i] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del packet[i:]
            if not packet:
                break
        else:
            packet.insert(i, data.draw(st.integers(0, 255)))
    only_binrpc_errors(bytes(packet))


# ------------------------------------------------------------------ golden bytes (notes Q5)


def test_golden_keepalive_list_request() -> None:
    packet = bytes.fromhex("a1 03 11 7e55fc12 91 0f") + b"keepalive.list\0"
    assert encode_request(COOKIE, "keepalive.list", []) == packet
    assert decode_request(packet) == Request(COOKIE, "keepalive.list", ())


def test_golden_keepalive_add_request() -> None:
    body = b"\x91\x0ekeepalive.add\0\x91\x13sip:127.0.0.1:5076\0\x41own\0"
    packet = encode_request(COOKIE, "keepalive.add", ["sip:127.0.0.1:5076", "own"])
    assert packet == bytes.fromhex("a1 03") + bytes([len(body)]) + COOKIE.to_bytes(4, "big") + body
    assert decode_request(packet).params == ("sip:127.0.0.1:5076", "own")


def test_golden_replies_and_fault() -> None:
    ok = encode_reply(COOKIE, ["Ok. Destination added."])
    assert ok == bytes.fromhex("a1 13 19 7e55fc12 91 17") + b"Ok. Destination added.\0"
    fault = encode_fault(COOKIE, 500, "couldn't delete data from list")
    expected = (
        bytes.fromhex("a1 33 24 7e55fc12 20 01f4 91 1f") + b"couldn't delete data from list\0"
    )
    assert fault == expected
    assert decode_reply(fault) == (True, [500, "couldn't delete data from list"])


def test_golden_list_reply_struct_layout() -> None:
    packet = encode_reply(COOKIE, Q7_REPLY)
    header = (
        bytes.fromhex("a1 17") + (len(packet) - 8).to_bytes(2, "big") + COOKIE.to_bytes(4, "big")
    )
    assert packet[:8] == header
    assert packet[8:].startswith(
        b"\x03\x45uri\0\x91\x13sip:127.0.0.1:5071\0"
        b"\x65owner\0\x91\x08_params\0\x95\x0dlast checked\0"
    )
    assert b"\x65state\0\x10\x02\x83\x03" in packet
    assert packet.endswith(b"\x65state\0\x10\x01\x83")


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, "00"),
        (7, "10 07"),
        (0x1234, "20 1234"),
        (-1, "40 ffffffff"),
        (1.5, "22 05dc"),
        (-0.001, "82 ffffffffffffffff"),
        ("", "11 00"),
        ("abcdef", "71 616263646566 00"),
        (b"", "06"),
        ([1, 2], "04 10 01 10 02 84"),
        (Struct.of({"s": "abc"}), "03 25 7300 41 616263 00 83"),
    ],
)
def test_record_encodings(value: Value, wire: str) -> None:
    """Examples from the binrpc.h comments: minimal ints, NUL-terminated strings, tags."""
    packet = encode_reply(1, [value])
    assert packet[4:] == bytes.fromhex(wire)
    assert decode_reply(packet) == (False, [value])


def test_header_length_field_grows_past_64k() -> None:
    """Body length takes 1, 2 or 3 bytes: big keepalive.list replies need no special case."""
    assert encode_reply(5, ["x" * 200])[:3] == b"\xa1\x10\xcb"
    assert encode_reply(5, ["x" * 300])[1] == 0x14
    one = Q7_REPLY[0]
    assert isinstance(one, Struct)
    big: list[Value] = [
        Struct((("uri", f"sip:10.0.{i // 250}.{i % 250}:5060"), *one.members[1:]))
        for i in range(1000)
    ]
    packet = encode_reply(0x7FFFFFFF, big)  # 1,000 destinations: more than kamcmd accepts
    assert packet[1] == 0x1B and KAMCMD_MAX_REPLY < len(packet) < 200_000
    assert decode_reply(packet) == (False, big)


def test_suboptimal_but_legal_encodings_decode() -> None:
    """binrpc.h allows longer forms (e.g. an int with an explicit length byte)."""
    assert decode_reply(framed(0x10, bytes.fromhex("90 02 1234 a0 0002 1234")))[1] == [0x1234] * 2
    assert decode_reply(framed(0x10, bytes.fromhex("03 93 00")))[1] == [Struct()]


# ------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"", "truncated header"),
        (b"\xa1\x03\x11", "truncated header"),
        (b"\xa2" + encode_request(1, "m", [])[1:], "magic"),
        (b"\xa1\x20\x00\x01", "packet type"),
        (encode_request(1, "m", [])[:-1], "length field"),
        (encode_request(1, "m", []) + b"\0", "length field"),
        (encode_reply(1, ["x"]), "expected a request"),
        (framed(0, b""), "no method"),
        (framed(0, b"\x10\x05"), "method name is a int"),
        (framed(0, b"\x41abcd"), "NUL"),
        (framed(0, b"\x01"), "NUL"),
        (framed(0, b"\x21\xff\x00"), "UTF-8"),
        (framed(0, b"\x11\x00\x25a\x00\x10\x01"), "outside a struct"),
        (framed(0, b"\x11\x00\x83"), "unbalanced"),
        (framed(0, b"\x11\x00\x03\x10\x01\x83"), "name/value"),
        (framed(0, b"\x11\x00\x04\x83"), "inside an array"),
        (framed(0, b"\x11\x00\x03\x25a\x00\x83"), "unbalanced"),
        (framed(0, b"\x11\x00\x13\x00"), "tag with length"),
        (framed(0, b"\x11\x00\x07"), "unknown record type"),
        (framed(0, b"\x11\x00\xf1\xff\xff\xff\xff\xff\xff\xff"), "truncated"),
        (framed(0, b"\x11\x00\x04\x10\x01"), ", 0 left"),
        (framed(0, b"\x11\x00" + b"\x04" * (MAX_DEPTH + 1)), "nesting"),
        (encode_request(1, "m", ["x" * MAX_PACKET]), "exceeds"),
    ],
)
def test_decode_request_rejects(packet: bytes, message: str) -> None:
    with pytest.raises(BinrpcError, match=message):
        decode_request(packet)


def test_reader_rejects_huge_declared_length_at_once() -> None:
    """A 4 GiB length claim is refused from the header alone, before any body arrives."""
    reader = PacketReader()
    with pytest.raises(BinrpcError, match="exceeds"):
        reader.feed(bytes.fromhex("a1 0f ffffffff 7e55fc12"))
    with pytest.raises(BinrpcError):
        reader.next_packet()


@pytest.mark.parametrize("first", [b"\x00", b"GET / HTTP/1.1\r\n", b"\xa1\xf0"])
def test_reader_rejects_garbage_from_the_first_bytes(first: bytes) -> None:
    with pytest.raises(BinrpcError):
        PacketReader().feed(first)


def test_reader_bounds_buffered_data() -> None:
    reader = PacketReader(max_packet=64)
    reader.feed(b"\xa1\x03\x30")  # declares 48 body bytes: within the bound, incomplete
    assert reader.next_packet() is None
    with pytest.raises(BinrpcError, match="buffered"):
        reader.feed(b"\0" * 70)


def test_max_packet_request_is_accepted() -> None:
    packet = encode_request(1, "m", ["x" * (MAX_PACKET - 12)])
    assert len(packet) == MAX_PACKET
    reader = PacketReader()
    reader.feed(packet)
    assert reader.next_packet() == packet
    assert decode_request(packet).method == "m"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**31, "32 bits"),
        (-(2**31) - 1, "32 bits"),
        (float("nan"), "fixed point"),
        (1e300, "fixed point"),
        ("\ud800", "UTF-8"),
        ({"a": 1}, "cannot encode"),
    ],
)
def test_encode_rejects(value: object, message: str) -> None:
    with pytest.raises(BinrpcError, match=message):
        encode_reply(1, [value])  # type: ignore[list-item]


def test_encode_rejects_bad_cookie_and_deep_nesting() -> None:
    with pytest.raises(BinrpcError, match="cookie"):
        encode_reply(2**32, [])
    deep: Value = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert decode_reply(encode_reply(1, [deep])) == (False, [deep])
    with pytest.raises(BinrpcError, match="nesting"):
        encode_reply(1, [[deep]])


def test_struct_helpers() -> None:
    s = Struct.of([("a", 1), ("a", 2), ("b", "x")])
    assert s["a"] == 1 and s["b"] == "x"
    with pytest.raises(KeyError):
        s["c"]
    assert Struct.of({"a": 1}) == Struct((("a", 1),))


# ------------------------------------------------------------------ real kamcmd

Q7_REPLY: list[Value] = [
    Struct.of(
        {
            "uri": "sip:127.0.0.1:5071",
            "owner": "_params",
            "last checked": "Sun Nov 22 19:21:35 2026\n",
            "last up": "Sun Nov 22 19:21:35 2026\n",
            "last down": "Thu Jan  1 00:00:00 1970\n",
            "state": 2,
        }
    ),
    Struct.of(
        {
            "uri": "sip:127.0.0.1:5080",
            "owner": "_params",
            "last checked": "Sun Nov 22 19:21:38 2026\n",
            "last up": "Thu Jan  1 00:00:00 1970\n",
            "last down": "Sun Nov 22 19:21:38 2026\n",
            "state": 1,
        }
    ),
]

# Verbatim `kamcmd keepalive.list` from the C module (notes Q7): ctime strings end in "\n".
Q7_TEXT = """\
{
	uri: sip:127.0.0.1:5071
	owner: _params
	last checked: Sun Nov 22 19:21:35 2026

	last up: Sun Nov 22 19:21:35 2026

	last down: Thu Jan  1 00:00:00 1970

	state: 2
}
{
	uri: sip:127.0.0.1:5080
	owner: _params
	last checked: Sun Nov 22 19:21:38 2026

	last up: Thu Jan  1 00:00:00 1970

	last down: Sun Nov 22 19:21:38 2026

	state: 1
}
"""

METHODS = ["keepalive.list", "keepalive.add", "keepalive.del", "keepalive.get", "keepalive.flush"]


def answer(request: Request) -> bytes:
    """The fake ctl: enough of keepalive.* to compare kamcmd's rendering with the C module."""
    cookie, params = request.cookie, request.params
    if request.method == "system.listMethods":  # C: one top-level str per method
        return encode_reply(cookie, [*METHODS, "echo", "sized.reply", "array.in.struct"])
    if request.method == "keepalive.list":
        return encode_reply(cookie, Q7_REPLY)
    if request.method == "keepalive.add":
        return encode_reply(cookie, ["Ok. Destination added."])
    if request.method == "echo":  # shows how kamcmd typed its arguments
        return encode_reply(cookie, [f"{type(p).__name__}:{p!r}" for p in params])
    if request.method == "sized.reply" and params and isinstance(params[0], int):
        return sized_reply(cookie, params[0])
    if request.method == "array.in.struct":
        arr: list[Value] = [1, 2]
        return encode_reply(cookie, [Struct.of({"arr": arr})])
    return encode_fault(cookie, 500, "couldn't add data to list")


def sized_reply(cookie: int, total: int) -> bytes:
    """A one-string reply of exactly ``total`` bytes, header included."""
    n = total
    while len(packet := encode_reply(cookie, ["y" * n])) != total:
        n += total - len(packet)
    return packet


class FakeCtl:
    """A tiny blocking BINRPC server on a unix stream socket, one connection at a time."""

    def __init__(self, path: Path, handler: Callable[[Request], bytes]) -> None:
        self.address = f"unix:{path}"
        self.handler = handler
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    self.converse(conn)
                except Exception as exc:
                    self.errors.append(exc)

    def converse(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        reader = PacketReader()
        while data := conn.recv(65536):
            reader.feed(data)
            while (packet := reader.next_packet()) is not None:
                request = decode_request(packet)
                self.requests.append(request)
                conn.sendall(self.handler(request))  # one write: kamcmd wants the header whole

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        assert not self.errors, self.errors


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[FakeCtl]:
    server = FakeCtl(tmp_path / "ctl.sock", answer)
    yield server
    server.close()


def kamcmd(address: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KAMCMD, "-s", address, *args], input=stdin, capture_output=True, text=True, timeout=20
    )


needs_kamcmd = pytest.mark.skipif(not os.access(KAMCMD, os.X_OK), reason="kamcmd not installed")


@needs_kamcmd
def test_kamcmd_renders_list_like_the_c_module(ctl: FakeCtl) -> None:
    result = kamcmd(ctl.address, "keepalive.list")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == Q7_TEXT
    assert ctl.requests == [Request(ctl.requests[0].cookie, "keepalive.list", ())]


@needs_kamcmd
def test_kamcmd_add_and_fault(ctl: FakeCtl) -> None:
    added = kamcmd(ctl.address, "keepalive.add", "sip:127.0.0.1:5073", "rpcowner")
    assert added.stdout == "Ok. Destination added.\n"
    assert ctl.requests[-1].params == ("sip:127.0.0.1:5073", "rpcowner")
    fault = kamcmd(ctl.address, "keepalive.del", "sip:127.0.0.1:5073", "rpcowner")
    assert (fault.returncode, fault.stdout) == (0, "error: 500 - couldn't add data to list\n")


@needs_kamcmd
def test_kamcmd_argument_typing(ctl: FakeCtl) -> None:
    """kamcmd types each argument with strtol, then strtod, else str (``s:`` forces str).

    Surprises: "" is int 0, an int overflowing 32 bits wraps, "0x10" is the double 16.0,
    doubles keep 3 decimals, and a negative number needs ``--`` before the method.
    """
    args = ["42", "s:1", "2.5", "2.0001", "sip:a", "", "99999999999", "0x10"]
    result = kamcmd(ctl.address, "echo", *args)
    assert result.stdout.splitlines() == [
        "int:42",
        "str:'1'",
        "float:2.5",
        "float:2.0",
        "str:'sip:a'",
        "int:0",
        "int:1215752191",
        "float:16.0",
    ]
    assert kamcmd(ctl.address, "--", "echo", "-7").stdout == "int:-7\n"
    assert ctl.requests[-1].params == (-7,)


@needs_kamcmd
def test_kamcmd_interactive_mode(ctl: FakeCtl) -> None:
    """Interactive kamcmd first calls system.listMethods, then echoes and runs each stdin line."""
    result = kamcmd(ctl.address, stdin="keepalive.list\nkeepalive.add sip:x y\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("kamcmd 1.5\n")
    assert "kamcmd> keepalive.list\n" + Q7_TEXT + "kamcmd> keepalive.add sip:x y\n" in result.stdout
    assert "Ok. Destination added.\n" in result.stdout
    assert [r.method for r in ctl.requests] == [
        "system.listMethods",
        "keepalive.list",
        "keepalive.add",
    ]


@needs_kamcmd
def test_kamcmd_reply_size_limit(ctl: FakeCtl) -> None:
    """kamcmd takes a reply of exactly KAMCMD_MAX_REPLY bytes (header included), not one more.

    Over the limit it prints ``ERROR: reply too big`` on stderr and exits with 255 (-1). Before
    that it reads the socket empty, for up to 1 s while the server keeps the connection open.
    A 1,000-destination keepalive.list (~178 KB with the C module) is therefore too big.
    """
    fits = kamcmd(ctl.address, "sized.reply", str(KAMCMD_MAX_REPLY))
    assert fits.returncode == 0 and fits.stdout.count("y") > KAMCMD_MAX_REPLY - 20
    too_big = kamcmd(ctl.address, "sized.reply", str(KAMCMD_MAX_REPLY + 1))
    assert (too_big.returncode, too_big.stdout) == (255, "")
    assert too_big.stderr == "ERROR: reply too big\n"


@needs_kamcmd
def test_kamcmd_cannot_render_an_array_inside_a_struct(ctl: FakeCtl) -> None:
    """Legal BINRPC that kamcmd rejects; Kamailio's C servers send such members as structs."""
    result = kamcmd(ctl.address, "array.in.struct")
    assert (result.returncode, result.stdout) == (255, "{\n")
    assert "bad record" in result.stderr
