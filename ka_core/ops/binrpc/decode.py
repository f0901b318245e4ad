"""BINRPC decoding: headers, a stream splitter, records; every length is checked first."""

from __future__ import annotations

from typing import NoReturn

from ka_core.ops.binrpc.wire import (
    FAULT,
    MAGIC_VERSION,
    MAX_DEPTH,
    MAX_PACKET,
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
    Request,
    Struct,
    Value,
    _name,
    _Tag,
)


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
