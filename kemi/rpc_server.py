"""BINRPC server for the stock ``kamcmd``, run by the pinger's core thread.

It answers ``keepalive.*`` itself from the shared table and relays every other packet
unchanged to Kamailio's own ctl socket (``KA_CTL_FORWARD``), so with the example config the
module can own the default socket path and plain ``kamcmd`` keeps working for everything.
Non-blocking, bounded: at most ``MAX_CLIENTS`` connections, ``MAX_PACKET`` per request, idle
clients dropped after ``IDLE_TIMEOUT_S``; a malformed packet closes that connection only.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from dataclasses import dataclass, field

from ka_core import binrpc
from ka_core.errors import RpcFault
from ka_core.rpc import METHODS, RpcCommands

MAX_CLIENTS = 64
IDLE_TIMEOUT_S = 30.0
FORWARD_TIMEOUT_S = 5.0
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


@dataclass
class _Client:
    sock: socket.socket
    reader: binrpc.PacketReader = field(default_factory=binrpc.PacketReader)
    out: bytearray = field(default_factory=bytearray)
    seen: float = field(default_factory=time.monotonic)


class RpcServer:
    def __init__(self, path: str, commands: RpcCommands, forward: str = "") -> None:
        self._commands = commands
        self._forward = forward
        self._path = path
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            self._listener.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, SOCKET_MODE)
        self._listener.listen(16)
        self._listener.setblocking(False)
        self._clients: dict[int, _Client] = {}

    def fds(self) -> tuple[list[int], list[int]]:
        readers = [self._listener.fileno(), *self._clients]
        writers = [fd for fd, c in self._clients.items() if c.out]
        return readers, writers

    def handle(self, readable: list[int], writable: list[int]) -> None:
        if self._listener.fileno() in readable:
            self._accept()
        now = time.monotonic()
        for fd, client in list(self._clients.items()):
            try:
                if fd in readable:
                    self._read(client)
                if client.out and (fd in writable or fd in readable):
                    sent = client.sock.send(client.out)
                    del client.out[:sent]
                    client.seen = now
            except (OSError, binrpc.BinrpcError):
                self._close(fd)
                continue
            if now - client.seen > IDLE_TIMEOUT_S:
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
        self._clients[sock.fileno()] = _Client(sock)

    def _read(self, client: _Client) -> None:
        data = client.sock.recv(RECV_BYTES)
        if not data:
            raise ConnectionResetError("client closed")
        client.seen = time.monotonic()
        client.reader.feed(data)
        while (packet := client.reader.next_packet()) is not None:
            client.out += self._answer(packet)

    def _answer(self, packet: bytes) -> bytes:
        request = binrpc.decode_request(packet)
        if request.method.startswith("keepalive."):
            return self._local(request)
        if request.method == "system.listMethods":
            return self._list_methods(packet, request.cookie)
        if self._forward:
            return self._relay(packet, request.cookie)
        return binrpc.encode_fault(request.cookie, 500, f"command {request.method} not found")

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

    def _list_methods(self, packet: bytes, cookie: int) -> bytes:
        names: list[binrpc.Value] = list(METHODS)
        if self._forward:
            is_fault, values = binrpc.decode_reply(self._relay(packet, cookie))
            if not is_fault:
                names = values + names
        return binrpc.encode_reply(cookie, names)

    def _relay(self, packet: bytes, cookie: int) -> bytes:
        """Pass one packet to Kamailio's ctl and return its reply unchanged."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
                ctl.settimeout(FORWARD_TIMEOUT_S)
                ctl.connect(self._forward)
                ctl.sendall(packet)
                reader = binrpc.PacketReader(max_packet=64 << 20)
                while (reply := reader.next_packet()) is None:
                    data = ctl.recv(RECV_BYTES)
                    if not data:
                        raise ConnectionError("ctl closed the connection")
                    reader.feed(data)
                return reply
        except (OSError, binrpc.BinrpcError) as exc:
            return binrpc.encode_fault(cookie, 500, f"kamailio ctl not reachable: {exc}")

    def _close(self, fd: int) -> None:
        client = self._clients.pop(fd, None)
        if client is not None:
            client.sock.close()
