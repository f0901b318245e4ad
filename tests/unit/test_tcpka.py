"""ka_core.tcpka: keepalive argument validation, core.tcp_list/core.psx parsing and
/proc/net/tcp lookups (sample texts captured from Kamailio 5.6.3 and Linux)."""

from __future__ import annotations

import ipaddress
import json
import struct

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ka_core import tcpka
from ka_core.errors import InvalidArgument
from ka_core.tcpka import TcpConn, TcpKaError

# Captured: jsonrpcs answer of core.tcp_list (an IPv4 and an IPv6 client, one idle).
TCP_LIST = (
    '{\n\t"jsonrpc":\t"2.0",\n\t"result":\t[{\n\t\t\t"id":\t1,\n\t\t\t"type":\t"TCP",\n\t\t\t'
    '"state":\t"CONN_OK",\n\t\t\t"timeout":\t4,\n\t\t\t"lifetime":\t120,\n\t\t\t"ref_count":\t2,'
    '\n\t\t\t"src_ip":\t"127.0.0.1",\n\t\t\t"src_port":\t39338,\n\t\t\t"dst_ip":\t'
    '"127.140.36.29",\n\t\t\t"dst_port":\t31054\n\t\t}, {\n\t\t\t"id":\t2,\n\t\t\t"type":\t'
    '"TCP",\n\t\t\t"state":\t"CONN_OK",\n\t\t\t"timeout":\t4,\n\t\t\t"lifetime":\t120,\n\t\t\t'
    '"ref_count":\t2,\n\t\t\t"src_ip":\t"::1",\n\t\t\t"src_port":\t38238,\n\t\t\t"dst_ip":\t'
    '"::1",\n\t\t\t"dst_port":\t31054\n\t\t}, {\n\t\t\t"id":\t3,\n\t\t\t"type":\t"TLS",\n\t\t\t'
    '"state":\t"CONN_OK",\n\t\t\t"timeout":\t119,\n\t\t\t"lifetime":\t120,\n\t\t\t"ref_count":'
    '\t2,\n\t\t\t"src_ip":\t"127.0.0.1",\n\t\t\t"src_port":\t39340,\n\t\t\t"dst_ip":\t'
    '"127.140.36.29",\n\t\t\t"dst_port":\t31054\n\t\t}],\n\t"id":\t1\n}'
)
PSX = json.dumps(
    {
        "jsonrpc": "2.0",
        "result": [
            {"IDX": 0, "PID": 31697, "DSC": "main process - attendant"},
            {"IDX": 7, "PID": 31704, "DSC": "RTIMER EXEC child=0 timer=ka"},
            {"IDX": 8, "PID": 31705, "DSC": "tcp receiver (generic) child=0"},
            {"IDX": 10, "PID": 31707, "DSC": "tcp main process"},
        ],
        "id": 1,
    }
)
# Captured /proc/net/tcp6 on x86_64: a listener on [::1]:31054 and both ends of one connection.
PROC_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:794E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 273629 1 00000000c10a3232 100 0 0 10 0
   1: 00000000000000000000000001000000:794E 00000000000000000000000001000000:955E 01 00000000:00000000 02:000AFC5E 00000000     0        0 273287 2 000000002683a327 20 4 31 11 -1
   2: 00000000000000000000000001000000:955E 00000000000000000000000001000000:794E 01 00000000:00000002 00:00000000 00000000     0        0 273286 1 000000000800a6f5 20 4 30 11 -1
"""  # noqa: E501
PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 1D248C7F:794E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 273630 1 0000000000000000 100 0 0 10 0
   1: 1D248C7F:794E 0100007F:99AA 01 00000000:00000000 02:000AFC5E 00000000     0        0 273288 2 0000000000000000 20 4 31 10 -1
   2: 1D248C7F:794E 0100007F:99AC 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   3: 0100007F:99AA 1D248C7F:794E 01 00000000:00000000 00:00000000 00000000     0        0 273289 1 0000000000000000 20 4 30 10 -1
"""  # noqa: E501


# ---- keepalive_values / conid_value ------------------------------------------------------


def test_accepts_ints_and_decimal_strings() -> None:
    assert tcpka.keepalive_values(60, 5, 5) == (60, 5, 5)
    assert tcpka.keepalive_values("60", " 5 ", "02") == (60, 5, 2)
    assert tcpka.keepalive_values(1, 1, 1) == (1, 1, 1)
    assert tcpka.keepalive_values(32767, 127, 32767) == (32767, 127, 32767)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 5, 5), "idle must be in 1..32767, not 0"),
        ((-1, 5, 5), "idle must be in 1..32767, not -1"),
        ((32768, 5, 5), "idle must be in 1..32767, not 32768"),
        ((60, 128, 5), "count must be in 1..127, not 128"),
        ((60, 0, 5), "count must be in 1..127, not 0"),
        ((60, 5, 32768), "interval must be in 1..32767, not 32768"),
        ((60, 5, 10**40), "interval must be in 1..32767"),
        (("-1", 5, 5), "idle must be a decimal integer, not '-1'"),
        (("abc", 5, 5), "idle must be a decimal integer, not 'abc'"),
        (("", 5, 5), "idle must be a decimal integer, not ''"),
        (("1.5", 5, 5), "idle must be a decimal integer"),
        (("0x10", 5, 5), "idle must be a decimal integer"),
        (("1e3", 5, 5), "idle must be a decimal integer"),
        (("+5", 5, 5), "idle must be a decimal integer"),
        (("\u0661\u0662", 5, 5), "idle must be a decimal integer"),  # Arabic-Indic digits
        (("9" * 5000, 5, 5), "idle must be a decimal integer, not '999"),
        (("99999999999", 5, 5), "idle must be in 1..32767, not 99999999999"),
        ((True, 5, 5), "idle must be an integer, not a boolean"),
        ((60, False, 5), "count must be an integer, not a boolean"),
        ((60.0, 5, 5), "idle must be an integer, not float"),
        ((None, 5, 5), "idle is missing"),
        ((60, 5, None), "interval is missing"),
        ((b"60", 5, 5), "idle must be an integer, not bytes"),
        (([60], 5, 5), "idle must be an integer, not list"),
    ],
)
def test_rejects_bad_values_with_a_clear_message(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        tcpka.keepalive_values(*args)
    assert message in str(info.value)
    assert len(str(info.value)) < 200


def test_conid() -> None:
    assert tcpka.conid_value(1) == 1
    assert tcpka.conid_value("42") == 42
    assert tcpka.conid_value(2**31 - 1) == 2**31 - 1
    for bad in (0, -1, 2**31, "x", "", None, True, 1.0, "1 2"):
        with pytest.raises(InvalidArgument, match="conid"):
            tcpka.conid_value(bad)


LIMITS = {"idle": tcpka.IDLE_MAX, "count": tcpka.COUNT_MAX, "interval": tcpka.INTERVAL_MAX}


def _call(position: int, value: object) -> tuple[int, int, int]:
    args: list[object] = [60, 5, 5]
    args[position] = value
    return tcpka.keepalive_values(*args)


@given(st.integers(0, 2), st.integers())
def test_property_ints(position: int, value: int) -> None:
    high = list(LIMITS.values())[position]
    if 1 <= value <= high:
        assert _call(position, value)[position] == value
        assert _call(position, str(value))[position] == value
    else:
        with pytest.raises(InvalidArgument, match=list(LIMITS)[position]):
            _call(position, value)


@given(st.integers(0, 2), st.text(max_size=80))
def test_property_text_is_a_plain_decimal_or_rejected(position: int, text: str) -> None:
    try:
        result = _call(position, text)[position]
    except InvalidArgument as exc:
        assert list(LIMITS)[position] in str(exc)
        return
    stripped = text.strip()
    assert stripped.isascii() and stripped.isdigit()
    assert result == int(stripped)


@given(
    st.one_of(
        st.none(), st.booleans(), st.floats(), st.binary(), st.lists(st.integers()),
        st.dictionaries(st.text(), st.integers()), st.complex_numbers(),
    )
)  # fmt: skip
def test_property_other_types_are_rejected(value: object) -> None:
    for position in range(3):
        with pytest.raises(InvalidArgument):
            _call(position, value)
    with pytest.raises(InvalidArgument):
        tcpka.conid_value(value)


@given(st.integers(1, 2**31 - 1))
def test_property_conid_roundtrip(conid: int) -> None:
    assert tcpka.conid_value(conid) == tcpka.conid_value(f" {conid}\t") == conid


# ---- core.tcp_list / core.psx --------------------------------------------------------------


def test_parse_tcp_list() -> None:
    table = tcpka.parse_tcp_list(TCP_LIST)
    assert set(table) == {1, 2, 3}
    assert table[1] == TcpConn(1, "TCP", "127.0.0.1", 39338, "127.140.36.29", 31054, "CONN_OK")
    assert table[2].src_ip == "::1" and table[2].dst_port == 31054
    assert table[3].type == "TLS"


def test_parse_tcp_list_empty_and_single() -> None:
    assert tcpka.parse_tcp_list('{"jsonrpc": "2.0", "result": [], "id": 1}') == {}
    assert tcpka.parse_tcp_list('{"jsonrpc": "2.0", "result": null, "id": 1}') == {}
    row = {"id": 7, "type": "ws", "src_ip": "[2001:db8::0:1]", "src_port": 5,
           "dst_ip": "::ffff:10.0.0.1", "dst_port": 6}  # fmt: skip
    table = tcpka.parse_tcp_list(json.dumps({"result": row}))
    assert table[7] == TcpConn(7, "WS", "2001:db8::1", 5, "10.0.0.1", 6, "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "unparsable JSON-RPC answer"),
        ("not json", "unparsable JSON-RPC answer"),
        ("[]", "not an object"),
        ('{"jsonrpc": "2.0", "id": 1}', "has no result"),
        ('{"error": {"code": 500, "message": "Method Not Found"}}', "Method Not Found"),
        ('{"result": [1]}', "bad row"),
        ('{"result": [{"id": 1}]}', "row without"),
        ('{"result": [{"id": "1", "type": "TCP", "src_ip": "1.2.3.4", "src_port": 1, '
         '"dst_ip": "1.2.3.4", "dst_port": 2}]}', "bad id"),
        ('{"result": [{"id": 1, "type": "TCP", "src_ip": "nope", "src_port": 1, '
         '"dst_ip": "1.2.3.4", "dst_port": 2}]}', "not an IP address"),
        ('{"result": [{"id": 1, "type": "TCP", "src_ip": "1.2.3.4", "src_port": 70000, '
         '"dst_ip": "1.2.3.4", "dst_port": 2}]}', "bad port"),
    ],
)  # fmt: skip
def test_parse_tcp_list_errors(body: str, message: str) -> None:
    with pytest.raises(TcpKaError, match=message):
        tcpka.parse_tcp_list(body)


def test_tcp_main_pid() -> None:
    assert tcpka.tcp_main_pid(PSX) == 31707
    with pytest.raises(TcpKaError, match="no 'tcp main process'"):
        tcpka.tcp_main_pid('{"result": [{"IDX": 0, "PID": 1, "DSC": "main process"}]}')
    with pytest.raises(TcpKaError):
        tcpka.tcp_main_pid('{"result": [{"PID": "x", "DSC": "tcp main process"}]}')


def test_connections_to() -> None:
    table = tcpka.parse_tcp_list(TCP_LIST)
    assert [c.conid for c in tcpka.connections_to(table, "127.0.0.1", 39340)] == [3]
    assert [c.conid for c in tcpka.connections_to(table, "[::1]", 38238)] == [2]
    assert tcpka.connections_to(table, "127.0.0.1", 1) == []


# ---- /proc/net/tcp -------------------------------------------------------------------------


def test_find_inode_ipv4() -> None:
    local, remote = ("127.140.36.29", 31054), ("127.0.0.1", 39338)
    assert tcpka.find_inode(PROC_TCP, local, remote, "little") == 273288
    assert tcpka.find_inode(PROC_TCP, remote, local, "little") == 273289
    # the listener (remote 0.0.0.0:0) and a TIME_WAIT entry (inode 0) never match
    assert tcpka.find_inode(PROC_TCP, local, ("127.0.0.1", 39340), "little") is None
    assert tcpka.find_inode(PROC_TCP, local, ("0.0.0.0", 0), "little") == 273630
    assert tcpka.find_inode(PROC_TCP, local, ("127.0.0.2", 39338), "little") is None


def test_find_inode_ipv6() -> None:
    assert tcpka.find_inode(PROC_TCP6, ("::1", 31054), ("::1", 38238), "little") == 273287
    assert tcpka.find_inode(PROC_TCP6, ("[::1]", 38238), ("::1", 31054), "little") == 273286


def test_find_inode_ignores_garbage() -> None:
    text = PROC_TCP.splitlines()[0] + "\n  x: zz:yy 1:2 01 0 0 0 0 0 0 5\n\n short line\n"
    assert tcpka.find_inode(text, ("127.0.0.1", 1), ("127.0.0.1", 2), "little") is None
    assert tcpka.find_inode("", ("127.0.0.1", 1), ("127.0.0.1", 2)) is None


def _proc_line(local: tuple[str, int], remote: tuple[str, int], inode: int, order: str) -> str:
    def enc(addr: tuple[str, int]) -> str:
        raw = ipaddress.ip_address(addr[0]).packed
        if order == "little":
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        return f"{raw.hex().upper()}:{addr[1]:04X}"

    return f"   0: {enc(local)} {enc(remote)} 01 00000000:00000000 00:00000000 00000000 0 0 {inode}"


addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)
).filter(lambda a: not (":" in a and ipaddress.IPv6Address(a).ipv4_mapped))  # fmt: skip
ports = st.integers(0, 65535)


@given(
    st.lists(st.tuples(addresses, ports, addresses, ports), min_size=1, max_size=8),
    st.sampled_from(["little", "big"]), st.data(),
)  # fmt: skip
def test_property_find_inode(
    rows: list[tuple[str, int, str, int]], order: str, data: st.DataObject
) -> None:
    rows = [r for r in rows if (":" in r[0]) == (":" in r[2])]
    assume(rows)
    lines = ["  sl  local_address rem_address   st ..."]
    lines += [
        _proc_line((la, lp), (ra, rp), 1000 + i, order) for i, (la, lp, ra, rp) in enumerate(rows)
    ]
    text = "\n".join(lines) + "\n"
    pick = data.draw(st.integers(0, len(rows) - 1))
    la, lp, ra, rp = rows[pick]
    first = next(i for i, r in enumerate(rows) if r == rows[pick])
    assert tcpka.find_inode(text, (la, lp), (ra, rp), order) == 1000 + first


def test_ipv4_mapped_matches_ipv4() -> None:
    line = _proc_line(("::ffff:10.1.2.3", 5060), ("::ffff:10.1.2.4", 40000), 77, "little")
    text = "header\n" + line + "\n"
    assert tcpka.find_inode(text, ("10.1.2.3", 5060), ("10.1.2.4", 40000), "little") == 77


# ---- sock_diag ------------------------------------------------------------------------------


def test_diag_request_layout() -> None:
    req = tcpka.diag_request(("127.0.0.1", 5060), ("10.0.0.1", 40000), seq=9)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", req)
    assert (length, kind, flags, seq, pid) == (len(req), 20, 1, 9, 0)
    assert len(req) == 16 + 56  # nlmsghdr + inet_diag_req_v2
    assert req[16:18] == bytes([2, 6])  # AF_INET, IPPROTO_TCP
    assert req[24:28] == (5060).to_bytes(2, "big") + (40000).to_bytes(2, "big")
    assert req[28:32] == bytes([127, 0, 0, 1]) and req[44:48] == bytes([10, 0, 0, 1])
    assert req[-8:] == b"\xff" * 8  # INET_DIAG_NOCOOKIE
    req6 = tcpka.diag_request(("::1", 1), ("[2001:db8::2]", 2))
    assert req6[16] == 10 and req6[28:44] == ipaddress.ip_address("::1").packed


def _diag_reply(
    local: tuple[str, int], remote: tuple[str, int], inode: int, state: int = 1
) -> bytes:
    family = 10 if ":" in local[0] else 2
    src = ipaddress.ip_address(local[0]).packed.ljust(16, b"\0")
    dst = ipaddress.ip_address(remote[0]).packed.ljust(16, b"\0")
    body = bytes([family, state, 0, 0]) + struct.pack(">HH16s16s", local[1], remote[1], src, dst)
    body += struct.pack("=III", 0, 1, 2) + struct.pack("=IIIII", 0, 0, 0, 0, inode)
    return struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body


def test_diag_inode() -> None:
    local, remote = ("127.0.0.1", 5060), ("10.0.0.1", 40000)
    assert tcpka.diag_inode(_diag_reply(local, remote, 4242), local, remote) == 4242
    assert tcpka.diag_inode(_diag_reply(local, remote, 0), local, remote) is None
    # the kernel answers with the listener when no connection matches
    listener = _diag_reply(local, ("0.0.0.0", 0), 77, state=10)
    assert tcpka.diag_inode(listener, local, remote) is None
    v6 = (("2001:db8::1", 1), ("2001:db8::2", 2))
    assert tcpka.diag_inode(_diag_reply(*v6, 5), *v6) == 5
    enoent = struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -2) + b"\0" * 16
    assert tcpka.diag_inode(enoent, local, remote) is None
    with pytest.raises(TcpKaError, match="sock_diag error 1"):
        tcpka.diag_inode(struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -1), local, remote)
    for bad in (b"", b"\0" * 10, struct.pack("=IHHII", 16, 2, 0, 1, 0),
                struct.pack("=IHHII", 20, 20, 0, 1, 0) + b"\0" * 4):  # fmt: skip
        with pytest.raises(TcpKaError):
            tcpka.diag_inode(bad, local, remote)


def test_normalize_and_socket_inode() -> None:
    assert tcpka.normalize_ip(" [2001:DB8:0::1] ") == "2001:db8::1"
    assert tcpka.normalize_ip("::ffff:127.0.0.1") == "127.0.0.1"
    with pytest.raises(TcpKaError):
        tcpka.normalize_ip("example.com")
    assert tcpka.socket_inode("socket:[12345]") == 12345
    assert tcpka.socket_inode("pipe:[12345]") is None
    assert tcpka.socket_inode("socket:[]") is None
    assert tcpka.socket_inode("/dev/null") is None
