"""Add, delete and look up destinations: the one implementation behind the script
functions, the RPC commands and the Python developer API."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ka_core.errors import InvalidArgument, UnknownDestination
from ka_core.settings import MAX_INTERVAL_S, Settings, parse_settings
from ka_core.state import State
from ka_core.store.layout import FLAG_CUSTOM_POLICY, FLAG_NAME, FLAG_OWN_INTERVAL, FLAG_SOCKET
from ka_core.store.records import Record
from ka_core.store.table import (
    MAX_CALLBACK_BYTES,
    MAX_OWNER_BYTES,
    MAX_USER_BYTES,
    Seed,
    SharedTable,
    SlotGen,
)
from ka_core.uri import SipUri, address_tag, parse_uri

PARAMS_OWNER = "_params"
"""The owner of the ``destination`` parameters' destinations: the configuration decides which
exist."""


def settings_of(settings: object) -> Settings:
    """The ``settings`` argument of an add: text (RPC, script, config) or ``Settings``."""
    if isinstance(settings, Settings):
        return settings
    if settings is None or settings == "":
        return Settings()
    if not isinstance(settings, str):
        raise InvalidArgument("settings must be a string like 'down_after=3;alive=2xx,404'")
    return parse_settings(settings)


def _flags(settings: Settings, own_interval: bool) -> int:
    custom = settings.down_after or settings.up_after or settings.alive is not None
    custom = custom or settings.degraded_ms is not None
    return (
        (FLAG_OWN_INTERVAL if own_interval else 0)
        | (FLAG_SOCKET if settings.socket else 0)
        | (FLAG_CUSTOM_POLICY if custom else 0)
    )


def _name_flag(uri: SipUri, resolve_names: bool, settings: Settings) -> int:
    """``KA_DNS 1``: a host name is resolved by ka-kemi (``kemi.dns_resolver``), not pinged;
    but not one with an outbound proxy of its own: the proxy routes on the name."""
    resolved = resolve_names and not settings.has_own_proxy
    return FLAG_NAME if resolved and not address_tag(uri.host) else 0


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
    interval_s: float | None,
    wall: float,
    state_cb: object = "",
    response_cb: object = "",
    user: str = "",
    settings: object = "",
    resolve_names: bool = False,
) -> Record:
    """``add_slot``, and the record it added."""
    slot, _ = add_slot(
        table, uri, owner, interval_s=interval_s, wall=wall, state_cb=state_cb,
        response_cb=response_cb, user=user, settings=settings, resolve_names=resolve_names,
    )  # fmt: skip
    return table.read(slot)


def add_slot(
    table: SharedTable,
    uri: object,
    owner: object,
    *,
    interval_s: float | None,
    wall: float,
    state_cb: object = "",
    response_cb: object = "",
    user: str = "",
    settings: object = "",
    resolve_names: bool = False,
) -> SlotGen:
    """Validate and add one destination, (slot, gen) where it went (the state file's
    restore reads nothing back); raises a ``KaError`` and changes nothing on error.

    ``interval_s`` None: the ``interval`` setting if given, else the current
    ``ping_interval``, which the destination then follows when it changes at runtime.
    ``resolve_names``: ``KA_DNS`` is on (a host name gets ``FLAG_NAME``).
    """
    parsed = parse_uri(uri)
    owner = check_owner(owner)
    chosen = settings_of(settings)
    own = interval_s is not None or bool(chosen.interval)
    if interval_s is None:
        interval_s = chosen.interval or table.header.ping_interval
    if isinstance(interval_s, bool) or not isinstance(interval_s, int | float):
        raise InvalidArgument("ping interval must be a number of seconds")
    if not 0.1 <= interval_s <= MAX_INTERVAL_S:
        raise InvalidArgument(f"ping interval {interval_s} s out of range [0.1, {MAX_INTERVAL_S}]")
    if len(user.encode()) > MAX_USER_BYTES:
        raise InvalidArgument(f"user data longer than {MAX_USER_BYTES} bytes once encoded")
    return table.insert(
        parsed,
        owner,
        interval_ms=round(interval_s * 1000),
        wall=wall,
        state_cb=check_callback(state_cb),
        response_cb=check_callback(response_cb),
        user=user,
        settings=chosen.text,
        flags=_flags(chosen, own) | _name_flag(parsed, resolve_names, chosen),
    )


def add_static(
    table: SharedTable,
    dests: Sequence[tuple[SipUri, Settings]],
    owner: str,
    *,
    interval_s: float,
    wall: float,
    resolve_names: bool = False,
) -> None:
    """The ``destination`` parameters: already parsed and checked by ``load_config``, so
    start-up does not parse 100,000 URIs twice nor read every record back; one
    ``insert_many``, and what a ``Settings`` implies is worked out once per object (the
    config shares one per settings text)."""
    owner = check_owner(owner)
    implied: dict[int, tuple[str, int, int]] = {}  # id(settings) -> (text, flags, interval ms)

    def seeds() -> Iterator[Seed]:
        for uri, settings in dests:
            known = implied.get(id(settings))
            if known is None:
                interval_ms = round((settings.interval or interval_s) * 1000)
                known = (settings.text, _flags(settings, bool(settings.interval)), interval_ms)
                implied[id(settings)] = known
            text, flags, interval_ms = known
            if resolve_names:
                flags |= _name_flag(uri, resolve_names, settings)
            yield uri, text, flags, interval_ms

    table.insert_many(seeds(), owner, wall=wall)


def remove(table: SharedTable, uri: object, owner: object) -> Record:
    return table.remove(parse_uri(uri).key, check_owner(owner))


def find(table: SharedTable, uri: object, owner: object) -> int:
    """Slot of destination (uri, owner), or -1; raises on a bad URI or owner."""
    return table.find(parse_uri(uri).key, check_owner(owner))


def get(table: SharedTable, uri: object, owner: object) -> Record:
    return table.get(parse_uri(uri).key, check_owner(owner))


def state_of(table: SharedTable, uri: object) -> State:
    """State of the first destination with this URI, any owner."""
    key = parse_uri(uri).key
    slot = table.find(key)
    if slot < 0:
        raise UnknownDestination(f"unknown destination {uri}")
    return table.state_at(slot)
