"""jsonrpcs-compatible unix datagram socket for the stock ``kamcli``, run by the pinger's core
thread.

kamcli 2.0 speaks JSON-RPC only over jsonrpcs' FIFO or datagram socket, and Kamailio's
jsonrpcs does not know ``keepalive.*``.  So, as ``kemi.rpc_server`` does for kamcmd, ka-kemi
serves the datagram path kamcli uses: ``keepalive.*`` is answered here with the very JSON the
HTTP endpoint gives (``ka_core.ops.jsonrpc``); every other request is relayed to Kamailio's own
jsonrpcs socket (``KA_JSONRPC_FORWARD``) and its reply passed back to the client.

Nothing here blocks the core thread: all sockets are non-blocking.  jsonrpcs answers to the
sender's address, so the relay has a socket of its own, bound next to the served path (mode
0600); each relayed request carries an id of ours and waits in a bounded map until its reply
comes (the client's id is put back) or ``RELAY_TIMEOUT_S`` passes (the client gets a JSON-RPC
error, before kamcli gives up at 4 s even with the pinger's longest sleep of 1 s).  Every
datagram gets a JSON-RPC answer, errors included, except those from an unbound client socket:
there is nowhere to send one.  The served socket is mode 0660.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import socket
import stat
from dataclasses import dataclass

from ka_core.ops import jsonrpc
from ka_core.ops.commands import METHODS, RpcCommands
from kemi.ksr_port import Clock

SOCKET_MODE = 0o660
RELAY_MODE = 0o600
RELAY_SUFFIX = ".reply"
RECV_BYTES = jsonrpc.MAX_BODY_BYTES + 1
"""A longer datagram is cut to this and refused as too large by ``jsonrpc.answer``."""
RELAY_RECV_BYTES = 1 << 20
KAMCLI_MAX_REPLY = 84000
"""kamcli 2.0 reads a reply with ``recv(84000)``: a longer one would reach it cut."""
BATCH = 64
"""Datagrams read per socket per call, so a flood cannot hold the core thread."""
MAX_PENDING = 256
RELAY_TIMEOUT_S = 2.0
SERVER_ERROR = 500
MAX_RELAY_ID = (1 << 31) - 1
TOO_BIG = (
    "reply too big for a datagram ({size} bytes): page with 'keepalive.list <offset> "
    "<count>' (integers; kamcli: i:0 i:300) or use JSON-RPC over HTTP (see README)"
)


def error(req_id: object, code: int, message: str) -> bytes:
    return jsonrpc.error_body(req_id, code, message).encode()


def result(req_id: object, value: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": req_id, "result": value}).encode()


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


Address = str | bytes
Outgoing = list[tuple[Address, bytes]]


@dataclass(slots=True)
class _Waiting:
    client: Address
    client_id: object
    deadline: float
    list_methods: bool


class JsonrpcRelay:
    """Relayed requests in flight to jsonrpcs, matched to their replies by an id of ours."""

    def __init__(self, target: str, reply_path: str, monotonic: Clock) -> None:
        self._target = target
        self._path = reply_path
        self._monotonic = monotonic
        self.sock = bind_datagram(reply_path, RELAY_MODE)
        self._inode = _inode(reply_path)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Waiting] = {}

    def submit(self, request: dict[str, object], client: Address) -> bytes | None:
        """Send the request on; None, or at once the error the client gets instead."""
        client_id = request.get("id")
        if len(self._pending) >= MAX_PENDING:
            return error(client_id, SERVER_ERROR, "kamailio jsonrpcs relay busy, try again")
        relay_id = next(self._ids) % MAX_RELAY_ID + 1
        try:
            self.sock.sendto(json.dumps({**request, "id": relay_id}).encode(), self._target)
        except BlockingIOError:
            return error(client_id, SERVER_ERROR, "kamailio jsonrpcs relay busy, try again")
        except OSError as exc:
            return error(client_id, SERVER_ERROR, f"kamailio jsonrpcs not reachable: {exc}")
        listing = request.get("method") == "system.listMethods"
        deadline = self._monotonic() + RELAY_TIMEOUT_S
        self._pending[relay_id] = _Waiting(client, client_id, deadline, listing)
        return None

    def replies(self) -> Outgoing:
        """Replies that came in, with the clients' ids back; late or foreign ones dropped."""
        out: Outgoing = []
        for _ in range(BATCH):
            try:
                data = self.sock.recv(RELAY_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            try:
                reply = json.loads(data)
            except (ValueError, RecursionError):
                continue
            relay_id = reply.get("id") if isinstance(reply, dict) else None
            if not isinstance(relay_id, int) or relay_id not in self._pending:
                continue
            waiting = self._pending.pop(relay_id)
            reply["id"] = waiting.client_id
            if waiting.list_methods and isinstance(reply.get("result"), list):
                reply["result"] = [*reply["result"], *METHODS]
            out.append((waiting.client, json.dumps(reply).encode()))
        return out

    def expired(self) -> Outgoing:
        """Timeout errors for requests jsonrpcs has not answered in time."""
        now, out = self._monotonic(), []
        for relay_id, waiting in list(self._pending.items()):
            if waiting.deadline > now:
                break  # inserted in deadline order
            del self._pending[relay_id]
            text = f"no reply from kamailio jsonrpcs within {RELAY_TIMEOUT_S} s"
            out.append((waiting.client, error(waiting.client_id, SERVER_ERROR, text)))
        return out

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
        answered = jsonrpc.answer(data, self._commands)
        if answered is not None:
            body = answered.body.encode()
            if len(body) <= KAMCLI_MAX_REPLY:
                return body
            return error(_id_of(data), SERVER_ERROR, TOO_BIG.format(size=len(body)))
        request = json.loads(data)  # a well-formed request object: ``answer`` checked it
        method = request["method"]
        if self._relay is not None:
            return self._relay.submit(request, client)
        if method == "system.listMethods":
            return result(request.get("id"), list(METHODS))
        return error(request.get("id"), SERVER_ERROR, "Method Not Found")  # as jsonrpcs says

    def _send_all(self, replies: Outgoing) -> None:
        for client, data in replies:
            self._send(client, data)

    def _send(self, client: Address, data: bytes) -> None:
        """Best effort, as jsonrpcs does: a client gone or not reading loses its reply."""
        try:
            self._sock.sendto(data, client)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                text = TOO_BIG.format(size=len(data))
                self._send(client, error(_id_of(data), SERVER_ERROR, text))

    def close(self) -> None:
        self._sock.close()
        _unlink_if_ours(self._path, self._inode)
        if self._relay is not None:
            self._relay.close()


def _id_of(data: bytes) -> object:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return message.get("id") if isinstance(message, dict) else None
