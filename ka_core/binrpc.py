"""BINRPC codec: the binary RPC that ``kamcmd`` speaks to Kamailio's ctl module (sans-I/O).

Theory of operation
-------------------
Bytes in, values out, and the reverse; sockets, clocks and threads belong to the caller.

A packet is a variable-size header and a body of records (all numbers big endian)::

    0xA1 | TTTT LL CC | body length (LL+1 bytes) | cookie (CC+1 bytes) | body ...

``0xA1`` is magic 0xA, version 1; TTTT is 0 request, 1 reply, 3 fault. Length and cookie use the
fewest bytes that hold them (header 4 to 10 bytes), so replies over 64 KiB need no special
case. A reply echoes the request's cookie; kamcmd rejects one that does not match.

Every record starts with one byte ``S SSS TTTT``: type TTTT and size SSSS. For every type
except double, a set S bit means that the next SSS bytes hold the real length. On
struct/array tags the S bit instead marks the *end* tag: ``0x03 ... 0x83`` wraps a struct and
``0x04 ... 0x84`` wraps an array. The types are:

- 0 int: 32-bit two's complement, leading zero bytes dropped (0 is the bare type byte).
- 1 str: UTF-8 + NUL, and the length counts the NUL; 6 (bytes) is the same without NUL.
- 2 double: ``int(x * 1000)`` as a 64-bit int, i.e. fixed point with 3 decimals, truncated.
- 3 struct: (name, value) pairs, each name a type 5 "avp" string (legal only here).
- 4 array: plain values. kamcmd cannot parse one as a struct member, so Kamailio's C
  servers send ``[`` as a struct; do the same for anything kamcmd must show.

A request body is the method name (str), then the parameters. A reply body is any number of
top-level values, which kamcmd prints one per line. A fault body is an int code and a str
text, printed as ``error: <code> - <text>``.

Decoders trust no length field: each is checked against the bytes really present before
anything is sliced; packet size and nesting are bounded; bad input raises BinrpcError only.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias

MAGIC_VERSION: Final = 0xA1
REQUEST, REPLY, FAULT = 0, 1, 3  # packet types
T_INT, T_STR, T_DOUBLE, T_STRUCT, T_ARRAY, T_AVP, T_BYTES = range(7)  # record types

#: Upper bound for one incoming request, header included. Kamailio's ctl stream buffer
#: (io_listener.c STREAM_BUF_SIZE) holds 65535 bytes, so the real server cannot take more.
MAX_PACKET: Final = 65536
#: kamcmd.c MAX_REPLY_SIZE: the largest reply (header + body) kamcmd takes. On a larger one
#: it prints ``ERROR: reply too big`` on stderr and exits 255, after draining the socket
#: (up to 1 s, or until the server closes).
KAMCMD_MAX_REPLY: Final = 128 * 1024
#: Deepest struct/array nesting accepted (and produced). Real replies nest a few levels.
MAX_DEPTH: Final = 32

_TYPE_NAMES: Final = ("int", "str", "double", "struct", "array", "avp", "bytes")


def _name(rtype: int) -> str:
    return _TYPE_NAMES[rtype] if rtype < len(_TYPE_NAMES) else f"type {rtype}"


class BinrpcError(ValueError):
    """Malformed, truncated or oversized BINRPC data, or a value that cannot be encoded."""


@dataclass(frozen=True, slots=True)
class Struct:
    """Ordered ``(name, value)`` pairs, printed by kamcmd as ``{ name: value }``.

    Not a dict: the wire keeps member order and allows repeated names.
    """

    members: tuple[tuple[str, Value], ...] = ()

    @classmethod
    def of(cls, items: Mapping[str, Value] | Iterable[tuple[str, Value]]) -> Struct:
        """Build from a mapping or an iterable of pairs (``Struct.of({"uri": u, "state": 0})``)."""
        pairs = items.items() if isinstance(items, Mapping) else items
        return cls(tuple((name, value) for name, value in pairs))

    def __getitem__(self, name: str) -> Value:
        """Return the first member called ``name`` (KeyError if there is none)."""
        for key, value in self.members:
            if key == name:
                return value
        raise KeyError(name)


Value: TypeAlias = "int | str | float | bytes | Struct | list[Value]"


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request: the cookie to echo, the method name and its parameters."""

    cookie: int
    method: str
    params: tuple[Value, ...]


class _Tag(enum.Enum):
    """An end tag read where a value was expected; only the matching container accepts it."""

    STRUCT_END = T_STRUCT
    ARRAY_END = T_ARRAY


def _parse_header(data: bytes | bytearray) -> tuple[int, int, int, int] | None:
    """Return ``(type, header_len, body_len, cookie)``, or None while bytes are missing.

    Bad magic or type raises as soon as its byte is in, so garbage streams are dropped at once.
    """
    if len(data) >= 1 and data[0] != MAGIC_VERSION:
        raise BinrpcError(f"bad magic/version byte 0x{data[0]:02x} (expected 0xa1)")
    if len(data) < 2:
        return None
    ptype = data[1] >> 4
    if ptype not in (REQUEST, REPLY, FAULT):
        raise BinrpcError(f"bad packet type {ptype}")
    len_len = ((data[1] >> 2) & 3) + 1
    header_len = 2 + len_len + (data[1] & 3) + 1
    if len(data) < header_len:
        return None
    body_len = int.from_bytes(data[2 : 2 + len_len], "big")
    cookie = int.from_bytes(data[2 + len_len : header_len], "big")
    return ptype, header_len, body_len, cookie


def _open(packet: bytes, *, exact: bool = True) -> tuple[int, int, _Decoder]:
    """Check that the header's length agrees with the packet, then return type, cookie, body."""
    header = _parse_header(packet)
    if header is None:
        raise BinrpcError(f"truncated header ({len(packet)} bytes)")
    ptype, header_len, body_len, cookie = header
    if exact and len(packet) - header_len != body_len:
        raise BinrpcError(
            f"length field says {body_len} body bytes, packet has {len(packet) - header_len}"
        )
    return ptype, cookie, _Decoder(packet, header_len)


def packet_cookie(packet: bytes) -> int:
    """The cookie of a packet with a complete header: lets a bad request still be faulted."""
    return _open(packet, exact=False)[1]


class PacketReader:
    """Frame one stream connection into whole packets (header + body, undecoded).

    Drain :meth:`next_packet` after every :meth:`feed`: at most ``max_packet`` bytes may wait.
    A stream cannot be resynchronised after an error, so the reader keeps raising it; close.
    """

    __slots__ = ("_buf", "_error", "_limit")

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self._buf = bytearray()
        self._limit = max_packet
        self._error: BinrpcError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned; non-zero at EOF means a truncated packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Append received bytes. Raise BinrpcError on a bad header or when over the bound."""
        self._front_size()  # re-raises an earlier error
        self._buf += data
        if len(self._buf) > self._limit:
            self._fail(f"{len(self._buf)} bytes buffered, limit is {self._limit}")
        self._front_size()

    def next_packet(self) -> bytes | None:
        """Remove and return the next complete packet, or None if it has not all arrived."""
        size = self._front_size()
        if size is None or len(self._buf) < size:
            return None
        packet = bytes(self._buf[:size])
        del self._buf[:size]
        return packet

    def _front_size(self) -> int | None:
        if self._error is not None:
            raise self._error
        try:
            header = _parse_header(self._buf)
        except BinrpcError as exc:
            self._fail(str(exc))
        if header is None:
            return None
        size = header[1] + header[2]
        if size > self._limit:
            self._fail(f"declared packet size {size} exceeds the limit of {self._limit}")
        return size

    def _fail(self, message: str) -> NoReturn:
        self._error = BinrpcError(message)
        raise self._error


class _Decoder:
    """Cursor over a packet body. Every read checks the remaining length first."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, start: int) -> None:
        self._data = data
        self._pos = start

    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def values(self) -> list[Value]:
        """Read top-level values up to the end of the body."""
        out: list[Value] = []
        while not self.at_end():
            out.append(self.value(0))
        return out

    def value(self, depth: int) -> Value:
        item = self._item(depth)
        if isinstance(item, _Tag):
            raise BinrpcError(f"unbalanced {_name(item.value)} end tag before {self._pos}")
        return item

    def _take(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            left = len(self._data) - self._pos
            raise BinrpcError(f"truncated: {n} bytes needed at offset {self._pos}, {left} left")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def _head(self) -> tuple[int, int, bool]:
        """Read type and length; the flag says the S bit was set (end tag, for containers)."""
        byte = self._take(1)[0]
        rtype, size = byte & 0xF, byte >> 4
        if rtype != T_DOUBLE and size & 8:
            return rtype, int.from_bytes(self._take(size & 7), "big"), True
        return rtype, size, False

    def _text(self, size: int) -> str:
        raw = self._take(size)
        if not raw or raw[-1] != 0:
            raise BinrpcError(f"string at offset {self._pos - size} is not NUL-terminated")
        try:
            return raw[:-1].decode()
        except UnicodeDecodeError as exc:
            raise BinrpcError(f"string at offset {self._pos - size} is not UTF-8: {exc}") from None

    def _item(self, depth: int) -> Value | _Tag:
        rtype, size, flagged = self._head()
        if rtype == T_INT:
            # C reads into an unsigned int, so only the last 4 bytes count.
            unsigned = int.from_bytes(self._take(size)[-4:], "big")
            return unsigned - (1 << 32) if unsigned & 0x80000000 else unsigned
        if rtype == T_STR:
            return self._text(size)
        if rtype == T_BYTES:
            return self._take(size)
        if rtype == T_DOUBLE:
            fixed = int.from_bytes(self._take(size)[-8:], "big")
            return (fixed - (1 << 64) if fixed >> 63 else fixed) / 1000
        if rtype in (T_STRUCT, T_ARRAY):
            if size:
                raise BinrpcError(f"{_name(rtype)} tag with length {size}")
            if flagged:
                return _Tag(rtype)
            if depth >= MAX_DEPTH:
                raise BinrpcError(f"nesting deeper than {MAX_DEPTH}")
            return self._struct(depth + 1) if rtype == T_STRUCT else self._array(depth + 1)
        if rtype == T_AVP:
            raise BinrpcError(f"struct member name outside a struct at {self._pos}")
        raise BinrpcError(f"unknown record type {rtype}")

    def _struct(self, depth: int) -> Struct:
        members: list[tuple[str, Value]] = []
        while True:
            rtype, size, flagged = self._head()
            if rtype == T_STRUCT and flagged and not size:
                return Struct(tuple(members))
            if rtype != T_AVP:
                raise BinrpcError(f"struct member is not a name/value pair: {_name(rtype)}")
            name = self._text(size)
            members.append((name, self.value(depth)))

    def _array(self, depth: int) -> list[Value]:
        items: list[Value] = []
        while (item := self._item(depth)) is not _Tag.ARRAY_END:
            if isinstance(item, _Tag):
                raise BinrpcError("struct end tag inside an array")
            items.append(item)
        return items


def decode_request(packet: bytes) -> Request:
    """Decode one complete request packet (e.g. from :class:`PacketReader`)."""
    if len(packet) > MAX_PACKET:
        raise BinrpcError(f"request of {len(packet)} bytes exceeds {MAX_PACKET}")
    ptype, cookie, body = _open(packet)
    if ptype != REQUEST:
        raise BinrpcError(f"expected a request, got packet type {ptype}")
    if body.at_end():
        raise BinrpcError("request has no method name")
    method = body.value(0)
    if not isinstance(method, str):
        raise BinrpcError(f"method name is a {type(method).__name__}, not a str")
    return Request(cookie, method, tuple(body.values()))


def decode_reply(packet: bytes) -> tuple[bool, list[Value]]:
    """Decode a reply or fault packet into ``(is_fault, top-level values)``."""
    ptype, _cookie, body = _open(packet)
    if ptype == REQUEST:
        raise BinrpcError("expected a reply or fault, got a request")
    return ptype == FAULT, body.values()


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
