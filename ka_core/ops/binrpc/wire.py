"""BINRPC wire constants and value types (see the package docstring for the format)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

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
