"""BINRPC server for the stock ``kamcmd``, run by the pinger's core thread: the sockets only;
what each packet gets is ``ka_core.ops.kamcmd``.

Every packet that is not ``keepalive.*`` goes unchanged to Kamailio's own ctl socket
(``KA_CTL_FORWARD``) through ``CtlRelay``'s thread, so with the example config the module can
own the default socket path, plain ``kamcmd`` keeps working for everything, and a slow relayed
command never delays a ping.  Non-blocking, bounded: at most ``MAX_CLIENTS`` connections,
idle clients dropped after ``kamcmd.IDLE_TIMEOUT_S``; a malformed packet closes that connection
only.  The socket is created mode 0660.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass

from ka_core.ops import binrpc
from ka_core.ops.commands import RpcCommands
from ka_core.ops.kamcmd import Pending, Relay, Session, route
from kemi.ctl_relay import CtlRelay
from kemi.ksr_port import Clock

MAX_CLIENTS = 64
RECV_BYTES = 65536
SOCKET_MODE = 0o660


@dataclass
class _Client:
    sock: socket.socket
    session: Session


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
        writers = [fd for fd, c in self._clients.items() if c.session.out]
        return readers, writers

    def handle(self, readable: list[int], writable: list[int]) -> None:
        if self._listener.fileno() in readable:
            self._accept()
        if self._relay is not None and self._relay.done_fd in readable:
            self._relay.drain_done()
        now = self._monotonic()
        for fd, client in list(self._clients.items()):
            session = client.session
            try:
                if fd in readable:
                    self._read(client, now)
                if session.collect():
                    session.sent(client.sock.send(session.out), now)
            except BlockingIOError:
                pass  # the client reads slowly: the rest goes when it is writable
            except (OSError, binrpc.BinrpcError):
                self._close(fd)
                continue
            if session.is_idle(now):
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
        self._clients[sock.fileno()] = _Client(sock, Session(self._monotonic()))

    def _read(self, client: _Client, now: float) -> None:
        data = client.sock.recv(RECV_BYTES)
        if not data:
            raise ConnectionResetError("client closed")
        for packet in client.session.received(data, now):
            client.session.waiting.append(self._answer(packet))

    def _answer(self, packet: bytes) -> Pending:
        answered = route(packet, self._commands, self._relay is not None)
        if isinstance(answered, Relay):
            assert self._relay is not None  # a packet to relay comes only when relaying
            return self._relay.submit(answered)
        return Pending(answered)

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
