"""BINRPC encoding, in the same layout Kamailio's C writers produce."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ka_core.ops.binrpc.wire import (
    FAULT,
    MAGIC_VERSION,
    MAX_DEPTH,
    REPLY,
    REQUEST,
    T_ARRAY,
    T_AVP,
    T_BYTES,
    T_DOUBLE,
    T_INT,
    T_STR,
    T_STRUCT,
    BinrpcError,
    Struct,
    Value,
)


def _minimal(unsigned: int) -> bytes:
    """Big endian in as few bytes as possible (none for 0), as the C writers produce."""
    return unsigned.to_bytes((unsigned.bit_length() + 7) // 8, "big")


def _put_number(out: bytearray, rtype: int, unsigned: int) -> None:
    raw = _minimal(unsigned)
    out.append(len(raw) << 4 | rtype)
    out += raw


def _put_blob(out: bytearray, rtype: int, data: bytes) -> None:
    if len(data) < 8:
        out.append(len(data) << 4 | rtype)
    else:
        length = _minimal(len(data))
        out.append((8 | len(length)) << 4 | rtype)
        out += length
    out += data


def _utf8z(text: str) -> bytes:
    try:
        return text.encode() + b"\0"
    except UnicodeEncodeError as exc:
        raise BinrpcError(f"string is not encodable as UTF-8: {exc}") from None


def _put_value(out: bytearray, value: object, depth: int) -> None:
    if isinstance(value, int):  # bool included: C sends 'b' as an int
        if not -(1 << 31) <= value < 1 << 31:
            raise BinrpcError(f"int {value} does not fit in 32 bits (send it as float or str)")
        _put_number(out, T_INT, value & 0xFFFFFFFF)
    elif isinstance(value, float):
        scaled = value * 1000
        if not math.isfinite(scaled) or not -(1 << 63) <= int(scaled) < 1 << 63:
            raise BinrpcError(f"float {value!r} does not fit BINRPC fixed point")
        _put_number(out, T_DOUBLE, int(scaled) & 0xFFFFFFFFFFFFFFFF)  # C: (long long)(f*1000)
    elif isinstance(value, str):
        _put_blob(out, T_STR, _utf8z(value))
    elif isinstance(value, bytes):
        _put_blob(out, T_BYTES, value)
    elif isinstance(value, Struct | list):
        if depth >= MAX_DEPTH:
            raise BinrpcError(f"nesting deeper than {MAX_DEPTH}")
        if isinstance(value, Struct):
            out.append(T_STRUCT)
            for name, member in value.members:
                _put_blob(out, T_AVP, _utf8z(name))
                _put_value(out, member, depth + 1)
            out.append(0x80 | T_STRUCT)
        else:
            out.append(T_ARRAY)
            for item in value:
                _put_value(out, item, depth + 1)
            out.append(0x80 | T_ARRAY)
    else:
        raise BinrpcError(f"cannot encode a {type(value).__name__}")


def _packet(ptype: int, cookie: int, values: Iterable[object]) -> bytes:
    if not 0 <= cookie <= 0xFFFFFFFF:
        raise BinrpcError(f"cookie {cookie} does not fit in 32 bits")
    body = bytearray()
    for value in values:
        _put_value(body, value, 0)
    length = _minimal(len(body)) or b"\0"
    cookie_raw = _minimal(cookie) or b"\0"
    flags = ptype << 4 | (len(length) - 1) << 2 | (len(cookie_raw) - 1)
    return bytes((MAGIC_VERSION, flags)) + length + cookie_raw + body


def encode_request(cookie: int, method: str, params: Sequence[Value]) -> bytes:
    """Encode a request the way kamcmd does (method name first, then the parameters)."""
    return _packet(REQUEST, cookie, (method, *params))


def encode_reply(cookie: int, values: Sequence[Value]) -> bytes:
    """Encode a normal reply. Each value is one top-level record (kamcmd prints one per line)."""
    return _packet(REPLY, cookie, values)


def encode_fault(cookie: int, code: int, text: str) -> bytes:
    """Encode a fault reply; kamcmd prints it as ``error: <code> - <text>``."""
    return _packet(FAULT, cookie, (code, text))
