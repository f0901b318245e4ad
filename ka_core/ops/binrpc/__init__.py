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

from ka_core.ops.binrpc.decode import (
    PacketReader,
    decode_reply,
    decode_request,
    packet_cookie,
)
from ka_core.ops.binrpc.encode import encode_fault, encode_reply, encode_request
from ka_core.ops.binrpc.wire import (
    FAULT,
    KAMCMD_MAX_REPLY,
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
)

__all__ = [
    "FAULT", "KAMCMD_MAX_REPLY", "MAGIC_VERSION", "MAX_DEPTH", "MAX_PACKET", "REPLY", "REQUEST",
    "T_ARRAY", "T_AVP", "T_BYTES", "T_DOUBLE", "T_INT", "T_STR", "T_STRUCT", "BinrpcError",
    "PacketReader", "Request", "Struct", "Value", "decode_reply", "decode_request",
    "encode_fault", "encode_reply", "encode_request", "packet_cookie",
]  # fmt: skip
