"""JSON-RPC 2.0 for the ``keepalive.*`` commands (the xhttp endpoint), sans-I/O.

``answer(body, commands)`` returns the response body, or None when the request is not one of
ours (the glue then passes it to Kamailio's jsonrpcs).  Timestamps lose the trailing newline
that ``ctime()`` text carries on the BINRPC side.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii

from ka_core.errors import RpcFault
from ka_core.rpc import RpcCommands, RpcValue, ctime
from ka_core.table import Summary

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
MAX_BODY_BYTES = 1 << 20


def _clean(value: object) -> object:
    if isinstance(value, str):
        return value.rstrip("\n")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def list_text(rows: list[Summary]) -> str:
    """The ``keepalive.list`` result as JSON text, written directly: the same text
    ``json.dumps`` gives for the list of structs, in a third of the time (10,000 rows)."""
    quote = encode_basestring_ascii
    return (
        "["
        + ", ".join(
            f'{{"uri": {quote(r.uri)}, "owner": {quote(r.owner)}, '
            f'"last checked": "{ctime(r.last_checked, False)}", '
            f'"last up": "{ctime(r.last_up, False)}", '
            f'"last down": "{ctime(r.last_down, False)}", "state": {int(r.state)}}}'
            for r in rows
        )
        + "]"
    )


def _error(req_id: object, code: int, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}})


def method_of(body: bytes) -> str | None:
    """The method name if ``body`` is a JSON-RPC request object, else None."""
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    method = req.get("method") if isinstance(req, dict) else None
    return method if isinstance(method, str) else None


def answer(body: bytes, commands: RpcCommands) -> str | None:
    if len(body) > MAX_BODY_BYTES:
        return _error(None, INVALID_REQUEST, "request too large")
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _error(None, PARSE_ERROR, "Parse error")
    if not isinstance(req, dict):
        return None
    method, req_id = req.get("method"), req.get("id")
    if not isinstance(method, str) or not commands.handles(method):
        return None
    params = req.get("params", [])
    if isinstance(params, dict):
        params = [v for v in (params.get("uri"), params.get("owner")) if v is not None]
    if not isinstance(params, list):
        return _error(req_id, INVALID_REQUEST, "params must be an array")
    try:
        if method == "keepalive.list":
            listing = list_text(commands.list_rows(params))
            return f'{{"jsonrpc": "2.0", "id": {json.dumps(req_id)}, "result": {listing}}}'
        values: list[RpcValue] = commands.call(method, params)
    except RpcFault as fault:
        return _error(req_id, fault.code, fault.text)
    result: object = values if method == "keepalive.info" else values[0]
    return json.dumps({"jsonrpc": "2.0", "id": req_id, "result": _clean(result)})
