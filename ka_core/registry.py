"""Add, delete and look up destinations: the one implementation behind the script
functions, the RPC commands and the Python developer API."""

from __future__ import annotations

from collections.abc import Sequence

from ka_core.errors import InvalidArgument, UnknownDestination
from ka_core.records import Record
from ka_core.state import State
from ka_core.table import MAX_CALLBACK_BYTES, MAX_OWNER_BYTES, MAX_USER_BYTES, SharedTable
from ka_core.uri import SipUri, parse_uri

MAX_INTERVAL_S = 86400


def check_owner(owner: object) -> str:
    if not isinstance(owner, str) or not owner.strip():
        raise InvalidArgument("owner must be a non-empty string")
    if len(owner.encode("utf-8", "surrogatepass")) > MAX_OWNER_BYTES:
        raise InvalidArgument(f"owner longer than {MAX_OWNER_BYTES} bytes")
    if not owner.isprintable():
        raise InvalidArgument("owner has control characters")
    return owner


def check_callback(name: object) -> str:
    """Callbacks are referenced by import path so any process can run them."""
    if name in (None, ""):
        return ""
    if not isinstance(name, str) or ":" not in name:
        raise InvalidArgument("callback must be given as 'module:function'")
    if len(name.encode()) > MAX_CALLBACK_BYTES or not name.isascii() or " " in name:
        raise InvalidArgument(f"bad callback name {name!r}")
    return name


def add(
    table: SharedTable,
    uri: object,
    owner: object,
    *,
    interval_s: float,
    wall: float,
    state_cb: object = "",
    response_cb: object = "",
    user: str = "",
) -> Record:
    """Validate and add one destination; raises a ``KaError`` and changes nothing on error."""
    parsed = parse_uri(uri)
    owner = check_owner(owner)
    if isinstance(interval_s, bool) or not isinstance(interval_s, int | float):
        raise InvalidArgument("ping interval must be a number of seconds")
    if not 0.1 <= interval_s <= MAX_INTERVAL_S:
        raise InvalidArgument(f"ping interval {interval_s} s out of range [0.1, {MAX_INTERVAL_S}]")
    if len(user.encode()) > MAX_USER_BYTES:
        raise InvalidArgument(f"user data longer than {MAX_USER_BYTES} bytes once encoded")
    slot, _ = table.insert(
        parsed,
        owner,
        interval_ms=round(interval_s * 1000),
        wall=wall,
        state_cb=check_callback(state_cb),
        response_cb=check_callback(response_cb),
        user=user,
    )
    return table.read(slot)


def add_static(
    table: SharedTable, uris: Sequence[SipUri], owner: str, *, interval_s: float, wall: float
) -> None:
    """The ``destination`` parameters: already parsed and checked by ``load_config``, so
    start-up does not parse 10,000 URIs twice nor read every record back."""
    owner, interval_ms = check_owner(owner), round(interval_s * 1000)
    for uri in uris:
        table.insert(uri, owner, interval_ms=interval_ms, wall=wall)


def remove(table: SharedTable, uri: object, owner: object) -> Record:
    return table.remove(parse_uri(uri).key, check_owner(owner))


def get(table: SharedTable, uri: object, owner: object) -> Record:
    return table.get(parse_uri(uri).key, check_owner(owner))


def state_of(table: SharedTable, uri: object) -> State:
    """State of the first destination with this URI, any owner."""
    key = parse_uri(uri).key
    slot = table.find(key)
    if slot < 0:
        raise UnknownDestination(f"unknown destination {uri}")
    return table.state_at(slot)
