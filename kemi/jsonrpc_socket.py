"""jsonrpcs-compatible unix datagram socket for the stock ``kamcli``, run by the pinger's core
thread: the sockets only; what each datagram gets is ``ka_core.ops.jsonrpc_dgram``.

Nothing here blocks the core thread: all sockets are non-blocking.  The relay to Kamailio's
jsonrpcs has a socket of its own, bound next to the served path (mode 0600), because jsonrpcs
answers to the sender's address.  A datagram from an unbound client socket gets no answer:
there is nowhere to send one.  The served socket is mode 0660.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from ka_core.ops import jsonrpc
from ka_core.ops.commands import RpcCommands
from ka_core.ops.jsonrpc_dgram import (
    BUSY,
    SERVER_ERROR,
    Address,
    Outgoing,
    RelayBook,
    answer_datagram,
    error,
    too_big,
)
from kemi.ksr_port import Clock

SOCKET_MODE = 0o660
RELAY_MODE = 0o600
RELAY_SUFFIX = ".reply"
RECV_BYTES = jsonrpc.MAX_BODY_BYTES + 1
"""A longer datagram is cut to this and refused as too large by ``jsonrpc.answer``."""
RELAY_RECV_BYTES = 1 << 20
BATCH = 64
"""Datagrams read per socket per call, so a flood cannot hold the core thread."""


def bind_datagram(path: str, mode: int) -> socket.socket:
    """A non-blocking unix datagram socket at ``path`` (a stale socket there is replaced),
    never wider than ``mode``, even between bind and chmod."""
    if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.setblocking(False)
    return sock


def _unlink_if_ours(path: str, inode: tuple[int, int]) -> None:
    try:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == inode:
            os.unlink(path)
    except OSError:
        pass


def _inode(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class JsonrpcRelay:
    """The relay's socket; which reply goes to which client is ``RelayBook``'s."""

    def __init__(self, target: str, reply_path: str, monotonic: Clock) -> None:
        self._target = target
        self._path = reply_path
        self._monotonic = monotonic
        self.sock = bind_datagram(reply_path, RELAY_MODE)
        self._inode = _inode(reply_path)
        self._book = RelayBook()

    def submit(self, request: dict[str, object], client: Address) -> bytes | None:
        """Send the request on; None, or at once the error the client gets instead."""
        client_id = request.get("id")
        out = self._book.outgoing(request)
        if out is None:
            return error(client_id, SERVER_ERROR, BUSY)
        relay_id, data = out
        try:
            self.sock.sendto(data, self._target)
        except BlockingIOError:
            return error(client_id, SERVER_ERROR, BUSY)
        except OSError as exc:
            return error(client_id, SERVER_ERROR, f"kamailio jsonrpcs not reachable: {exc}")
        self._book.wait(relay_id, request, client, self._monotonic())
        return None

    def replies(self) -> Outgoing:
        """Replies that came in, with the clients' ids back; late or foreign ones dropped."""
        out: Outgoing = []
        for _ in range(BATCH):
            try:
                data = self.sock.recv(RELAY_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            reply = self._book.reply(data)
            if reply is not None:
                out.append(reply)
        return out

    def expired(self) -> Outgoing:
        return self._book.expired(self._monotonic())

    def close(self) -> None:
        self.sock.close()
        _unlink_if_ours(self._path, self._inode)


class JsonrpcSocket:
    """The served datagram socket; ``fds``/``handle`` are polled by the pinger's select."""

    def __init__(self, path: str, commands: RpcCommands, forward: str, monotonic: Clock) -> None:
        self._path = path
        self._commands = commands
        self._sock = bind_datagram(path, SOCKET_MODE)
        self._inode = _inode(path)
        try:
            self._relay = JsonrpcRelay(forward, path + RELAY_SUFFIX, monotonic) if forward else None
        except OSError:
            self._sock.close()
            raise

    def fds(self) -> tuple[list[int], list[int]]:
        readers = [self._sock.fileno()]
        if self._relay is not None:
            readers.append(self._relay.sock.fileno())
        return readers, []

    def handle(self, readable: list[int], writable: list[int]) -> None:
        if self._sock.fileno() in readable:
            self._serve()
        if self._relay is not None:
            if self._relay.sock.fileno() in readable:
                self._send_all(self._relay.replies())
            self._send_all(self._relay.expired())

    def _serve(self) -> None:
        for _ in range(BATCH):
            try:
                data, client = self._sock.recvfrom(RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            if not client:
                continue  # an unbound client socket: nowhere to answer
            reply = self._answer(data, client)
            if reply is not None:
                self._send(client, reply)

    def _answer(self, data: bytes, client: Address) -> bytes | None:
        answered = answer_datagram(data, self._commands, self._relay is not None)
        if isinstance(answered, bytes):
            return answered
        assert self._relay is not None  # a request to relay comes only when relaying
        return self._relay.submit(answered, client)

    def _send_all(self, replies: Outgoing) -> None:
        for client, data in replies:
            self._send(client, data)

    def _send(self, client: Address, data: bytes) -> None:
        """Best effort, as jsonrpcs does: a client gone or not reading loses its reply."""
        try:
            self._sock.sendto(data, client)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                self._send(client, too_big(data))

    def close(self) -> None:
        self._sock.close()
        _unlink_if_ours(self._path, self._inode)
        if self._relay is not None:
            self._relay.close()
