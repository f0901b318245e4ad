"""JSON-RPC over jsonrpcs' datagram socket, for the stock ``kamcli``: what each datagram gets
back, sans-I/O (the sockets are ``kemi.jsonrpc_socket``).

kamcli 2.0 speaks JSON-RPC only over jsonrpcs' FIFO or datagram socket, and Kamailio's
jsonrpcs does not know ``keepalive.*``.  ``answer_datagram`` answers ``keepalive.*`` with the
very JSON the HTTP endpoint gives (``ka_core.ops.jsonrpc``) and hands every other request back
as a dict, for the glue to relay to Kamailio's own jsonrpcs socket (``KA_JSONRPC_FORWARD``).

jsonrpcs answers to the sender's address, so a relayed request carries an id of ours
(``RelayBook``) and waits in a bounded map until its reply comes (the client's id is put
back) or ``RELAY_TIMEOUT_S`` passes (the client gets a JSON-RPC error, before kamcli gives up
at 4 s even with the pinger's longest sleep of 1 s).  Every datagram gets a JSON-RPC answer,
errors included.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from ka_core.ops import jsonrpc
from ka_core.ops.commands import METHODS, RpcCommands

KAMCLI_MAX_REPLY = 84000
"""kamcli 2.0 reads a reply with ``recv(84000)``: a longer one would reach it cut."""
MAX_PENDING = 256
RELAY_TIMEOUT_S = 2.0
SERVER_ERROR = 500
MAX_RELAY_ID = (1 << 31) - 1
BUSY = "kamailio jsonrpcs relay busy, try again"
TOO_BIG = (
    "reply too big for a datagram ({size} bytes): page with 'keepalive.list <offset> "
    "<count>' (integers; kamcli: i:0 i:300) or use JSON-RPC over HTTP (see README)"
)

Address = str | bytes
Outgoing = list[tuple[Address, bytes]]


def error(req_id: object, code: int, message: str) -> bytes:
    return jsonrpc.error_body(req_id, code, message).encode()


def result(req_id: object, value: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": req_id, "result": value}).encode()


def id_of(data: bytes) -> object:
    """The ``id`` of a JSON-RPC message, None when there is none or it is not JSON."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return message.get("id") if isinstance(message, dict) else None


def too_big(data: bytes) -> bytes:
    """The error a client gets instead of ``data``, which does not fit a datagram."""
    return error(id_of(data), SERVER_ERROR, TOO_BIG.format(size=len(data)))


def answer_datagram(
    data: bytes, commands: RpcCommands, relaying: bool
) -> bytes | dict[str, object]:
    """The reply to one datagram, or (``relaying``) the request to pass to jsonrpcs."""
    answered = jsonrpc.answer(data, commands)
    if answered is not None:
        body = answered.body.encode()
        return body if len(body) <= KAMCLI_MAX_REPLY else too_big(body)
    request: dict[str, object] = json.loads(data)  # a well-formed object: ``answer`` checked
    if relaying:
        return request
    if request["method"] == "system.listMethods":
        return result(request.get("id"), list(METHODS))
    return error(request.get("id"), SERVER_ERROR, "Method Not Found")  # as jsonrpcs says


@dataclass(slots=True)
class _Waiting:
    client: Address
    client_id: object
    deadline: float
    list_methods: bool


class RelayBook:
    """Relayed requests in flight to jsonrpcs, matched to their replies by an id of ours."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, _Waiting] = {}

    def outgoing(self, request: dict[str, object]) -> tuple[int, bytes] | None:
        """(our id, the datagram for jsonrpcs), or None when too many wait already."""
        if len(self._pending) >= MAX_PENDING:
            return None
        relay_id = next(self._ids) % MAX_RELAY_ID + 1
        return relay_id, json.dumps({**request, "id": relay_id}).encode()

    def wait(self, relay_id: int, request: dict[str, object], client: Address, now: float) -> None:
        """The datagram of ``outgoing`` left: its reply goes to ``client``."""
        listing = request.get("method") == "system.listMethods"
        self._pending[relay_id] = _Waiting(
            client, request.get("id"), now + RELAY_TIMEOUT_S, listing
        )

    def reply(self, data: bytes) -> tuple[Address, bytes] | None:
        """A reply from jsonrpcs, with the client's id back; None when late or foreign."""
        try:
            reply = json.loads(data)
        except (ValueError, RecursionError):
            return None
        relay_id = reply.get("id") if isinstance(reply, dict) else None
        if not isinstance(relay_id, int) or relay_id not in self._pending:
            return None
        waiting = self._pending.pop(relay_id)
        reply["id"] = waiting.client_id
        if waiting.list_methods and isinstance(reply.get("result"), list):
            reply["result"] = [*reply["result"], *METHODS]
        return waiting.client, json.dumps(reply).encode()

    def expired(self, now: float) -> Outgoing:
        """Timeout errors for requests jsonrpcs has not answered in time."""
        out: Outgoing = []
        for relay_id, waiting in list(self._pending.items()):
            if waiting.deadline > now:
                break  # inserted in deadline order
            del self._pending[relay_id]
            text = f"no reply from kamailio jsonrpcs within {RELAY_TIMEOUT_S} s"
            out.append((waiting.client, error(waiting.client_id, SERVER_ERROR, text)))
        return out
