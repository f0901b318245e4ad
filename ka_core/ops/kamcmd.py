"""What ``kamcmd`` gets from ka-kemi's BINRPC socket, sans-I/O (the sockets are
``kemi.rpc_server``, the relay thread ``kemi.ctl_relay``).

``route`` answers ``keepalive.*`` from the commands and hands every other packet back as a
``Relay``, unchanged, for Kamailio's own ctl socket (``KA_CTL_FORWARD``); without a relay,
``system.listMethods`` lists ours and anything else is C's "not found" fault.  A
``Session`` holds one client connection's bytes: packets cut from what it sent, replies in the
order of its requests (relayed ones fill in later), and when it was last heard from.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from ka_core.errors import RpcFault
from ka_core.ops import binrpc
from ka_core.ops.commands import METHODS, RpcCommands

IDLE_TIMEOUT_S = 30.0
TOO_BIG = (
    "reply too big for kamcmd ({size} bytes, {count} destinations): page with "
    "'keepalive.list <offset> <count>' or use JSON-RPC over HTTP (see README)"
)

Transform = Callable[[bytes], bytes]


@dataclass(slots=True)
class Pending:
    """A reply to come; ``data`` is set once, by whichever thread produces it."""

    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Relay:
    """A packet for Kamailio's ctl; ``transform`` (pure) is applied to its reply."""

    packet: bytes
    cookie: int
    transform: Transform | None = None


def to_wire(value: object) -> binrpc.Value:
    if isinstance(value, dict):
        return binrpc.Struct.of((k, to_wire(v)) for k, v in value.items())
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | str | float | bytes):
        return value
    raise TypeError(f"cannot encode {type(value).__name__}")


def with_our_methods(cookie: int, reply: bytes) -> bytes:
    """``system.listMethods`` from ctl, with the ``keepalive.*`` names appended."""
    is_fault, values = binrpc.decode_reply(reply)
    names: list[binrpc.Value] = list(METHODS) if is_fault else [*values, *METHODS]
    return binrpc.encode_reply(cookie, names)


def answer_local(commands: RpcCommands, request: binrpc.Request) -> bytes:
    """The reply (or fault) to a ``keepalive.*`` request; one kamcmd cannot read is a fault."""
    try:
        values = commands.call(request.method, request.params)
    except RpcFault as fault:
        return binrpc.encode_fault(request.cookie, fault.code, fault.text)
    reply = binrpc.encode_reply(request.cookie, [to_wire(v) for v in values])
    if len(reply) > binrpc.KAMCMD_MAX_REPLY:
        text = TOO_BIG.format(size=len(reply), count=len(values))
        return binrpc.encode_fault(request.cookie, 500, text)
    return reply


def route(packet: bytes, commands: RpcCommands, relaying: bool) -> bytes | Relay:
    """The reply to one request packet, or the ``Relay`` that gets it (raises BinrpcError)."""
    request = binrpc.decode_request(packet)
    if request.method.startswith("keepalive."):
        return answer_local(commands, request)
    if not relaying:
        if request.method == "system.listMethods":
            return binrpc.encode_reply(request.cookie, list(METHODS))
        fault = f"command {request.method} not found"
        return binrpc.encode_fault(request.cookie, 500, fault)
    if request.method == "system.listMethods":
        merge = functools.partial(with_our_methods, request.cookie)
        return Relay(packet, request.cookie, merge)
    return Relay(packet, request.cookie)


@dataclass
class Session:
    """One kamcmd connection: bytes in, packets out, replies back in request order."""

    seen: float
    reader: binrpc.PacketReader = field(default_factory=binrpc.PacketReader)
    out: bytearray = field(default_factory=bytearray)
    waiting: collections.deque[Pending] = field(default_factory=collections.deque)
    """Replies in request order; relayed ones fill in later."""

    def received(self, data: bytes, now: float) -> list[bytes]:
        """The complete packets so far (raises BinrpcError on a malformed one)."""
        self.seen = now
        self.reader.feed(data)
        packets = []
        while (packet := self.reader.next_packet()) is not None:
            packets.append(packet)
        return packets

    def collect(self) -> bytearray:
        """Move the replies that are ready, in order, to ``out``; return ``out``."""
        while self.waiting and self.waiting[0].data is not None:
            self.out += self.waiting.popleft().data or b""
        return self.out

    def sent(self, count: int, now: float) -> None:
        del self.out[:count]
        self.seen = now

    def is_idle(self, now: float) -> bool:
        """Silent for ``IDLE_TIMEOUT_S`` with no reply to wait for: to be dropped."""
        return now - self.seen > IDLE_TIMEOUT_S and not self.waiting
