"""BINRPC server for the stock ``kamcmd``, run by the pinger's core thread.

It answers ``keepalive.*`` itself from the shared table and relays every other packet
unchanged to Kamailio's own ctl socket (``KA_CTL_FORWARD``) through ``CtlRelay``'s thread, so
with the example config the module can own the default socket path, plain ``kamcmd`` keeps
working for everything, and a slow relayed command never delays a ping.  Replies go back to
each client in the order of its requests.  Non-blocking, bounded: at most ``MAX_CLIENTS``
connections, ``MAX_PACKET`` per request, idle clients dropped after ``IDLE_TIMEOUT_S``; a
malformed packet closes that connection only.  The socket is created mode 0660.
"""

from __future__ import annotations

import collections
import functools
import os
import socket
import stat
from dataclasses import dataclass, field

from ka_core.errors import RpcFault
from ka_core.ops import binrpc
from ka_core.ops.commands import METHODS, RpcCommands
from kemi.ctl_relay import CtlRelay, Pending
from kemi.ksr_port import Clock

MAX_CLIENTS = 64
IDLE_TIMEOUT_S = 30.0
RECV_BYTES = 65536
SOCKET_MODE = 0o660
TOO_BIG = (
    "reply too big for kamcmd ({size} bytes, {count} destinations): page with "
    "'keepalive.list <offset> <count>' or use JSON-RPC over HTTP (see README)"
)


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


@dataclass
class _Client:
    sock: socket.socket
    seen: float
    reader: binrpc.PacketReader = field(default_factory=binrpc.PacketReader)
    out: bytearray = field(default_factory=bytearray)
    waiting: collections.deque[Pending] = field(default_factory=collections.deque)
    """Replies in request order; relayed ones fill in later."""


class RpcServer:
    def __init__(self, path: str, commands: RpcCommands, forward: str, monotonic: Clock) -> None:
        self._commands = commands
        self._relay = CtlRelay(forward) if forward else None
        self._monotonic = monotonic
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            self._listener.bind(path)
        except OSError:
            self._listener.close()
            raise
        finally:
            os.umask(old)
        os.chmod(path, SOCKET_MODE)
        self._listener.listen(16)
        self._listener.setblocking(False)
        self._clients: dict[int, _Client] = {}

    def fds(self) -> tuple[list[int], list[int]]:
        readers = [self._listener.fileno(), *self._clients]
        if self._relay is not None:
            readers.append(self._relay.done_fd)
        writers = [fd for fd, c in self._clients.items() if c.out]
        return readers, writers

    def handle(self, readable: list[int], writable: list[int]) -> None:
        if self._listener.fileno() in readable:
            self._accept()
        if self._relay is not None and self._relay.done_fd in readable:
            self._relay.drain_done()
        now = self._monotonic()
        for fd, client in list(self._clients.items()):
            try:
                if fd in readable:
                    self._read(client, now)
                while client.waiting and client.waiting[0].data is not None:
                    client.out += client.waiting.popleft().data or b""
                if client.out:
                    sent = client.sock.send(client.out)
                    del client.out[:sent]
                    client.seen = now
            except BlockingIOError:
                pass  # the client reads slowly: the rest goes when it is writable
            except (OSError, binrpc.BinrpcError):
                self._close(fd)
                continue
            if now - client.seen > IDLE_TIMEOUT_S and not client.waiting:
                self._close(fd)

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        if len(self._clients) >= MAX_CLIENTS:
            sock.close()
            return
        sock.setblocking(False)
        self._clients[sock.fileno()] = _Client(sock, self._monotonic())

    def _read(self, client: _Client, now: float) -> None:
        data = client.sock.recv(RECV_BYTES)
        if not data:
            raise ConnectionResetError("client closed")
        client.seen = now
        client.reader.feed(data)
        while (packet := client.reader.next_packet()) is not None:
            client.waiting.append(self._answer(packet))

    def _answer(self, packet: bytes) -> Pending:
        request = binrpc.decode_request(packet)
        if request.method.startswith("keepalive."):
            return Pending(self._local(request))
        if self._relay is None:
            if request.method == "system.listMethods":
                return Pending(binrpc.encode_reply(request.cookie, list(METHODS)))
            fault = f"command {request.method} not found"
            return Pending(binrpc.encode_fault(request.cookie, 500, fault))
        if request.method == "system.listMethods":
            merge = functools.partial(with_our_methods, request.cookie)
            return self._relay.submit(packet, request.cookie, merge)
        return self._relay.submit(packet, request.cookie)

    def _local(self, request: binrpc.Request) -> bytes:
        try:
            values = self._commands.call(request.method, request.params)
        except RpcFault as fault:
            return binrpc.encode_fault(request.cookie, fault.code, fault.text)
        reply = binrpc.encode_reply(request.cookie, [to_wire(v) for v in values])
        if len(reply) > binrpc.KAMCMD_MAX_REPLY:
            text = TOO_BIG.format(size=len(reply), count=len(values))
            return binrpc.encode_fault(request.cookie, 500, text)
        return reply

    def close(self) -> None:
        for fd in list(self._clients):
            self._close(fd)
        self._listener.close()
        if self._relay is not None:
            self._relay.close()

    def _close(self, fd: int) -> None:
        client = self._clients.pop(fd, None)
        if client is not None:
            client.sock.close()
