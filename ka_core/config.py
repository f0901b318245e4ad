"""Module parameters, read from ``#!define KA_<NAME> value`` lines of kamailio.cfg.

Kamailio 5.6.3 gives Python no ``modparam`` of its own, and custom cfg variables are not
readable in ``mod_init``; ``#!define`` values are (``$def(NAME)``).  ``destination`` is
repeatable through numbered defines (``KA_DESTINATION``, ``KA_DESTINATION_1`` ...
``KA_DESTINATION_99``), each holding one or more URIs separated by spaces or commas.

Invalid values raise ``InvalidArgument`` naming the parameter and the value; the glue turns
that into a failed ``mod_init``, so Kamailio refuses to start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ka_core.access import LOOPBACK, HttpGuard, Network, parse_allow, parse_path, parse_token
from ka_core.errors import InvalidArgument, InvalidUri
from ka_core.uri import SipUri, parse_uri

DEFINE_PREFIX = "KA_"
MAX_NUMBERED_DESTINATIONS = 99
DEFAULT_PING_FROM = "sip:keepalive@kamailio.org"
PARAMS_OWNER = "_params"


@dataclass(frozen=True, slots=True)
class KaConfig:
    ping_interval: int = 30
    """Seconds between two pings of a destination (``KA_PING_INTERVAL``)."""
    delete_counter: int = 5
    """Stop pinging after more than this many consecutive failures; 0 = never."""
    ping_from: str = DEFAULT_PING_FROM
    """From URI of the OPTIONS."""
    ping_timeout_ms: int = 5000
    """No final reply within this time counts as a failure; match tm's ``fr_timer``."""
    max_destinations: int = 10000
    """Upper bound of the shared table; adds beyond it are refused."""
    destinations: tuple[SipUri, ...] = field(default_factory=tuple)
    rpc_socket: str = ""
    """Unix socket path served for ``kamcmd -s unix:<path>``; empty = no BINRPC server."""
    ctl_forward: str = ""
    """Kamailio's real ctl socket; RPCs not named ``keepalive.*`` are relayed there."""
    rpc_http_path: str = "/RPC"
    """The only URL path that JSON-RPC over HTTP answers on; others get 404."""
    rpc_http_allow: tuple[Network, ...] = field(default_factory=lambda: parse_allow("", LOOPBACK))
    """Sources that may use JSON-RPC over HTTP; others get 403.  Empty = nobody."""
    rpc_http_token: str = ""
    """If set, JSON-RPC over HTTP also needs ``Authorization: Bearer <token>``."""
    rpc_add_rate: int = 1000
    """``keepalive.add`` calls per second over all RPC paths together; 0 = no limit."""
    tcp_keepalive_method: str = "auto"
    """How tcp_keepalive_* reach a socket another process holds: auto, pidfd or tcpops."""

    @property
    def http_guard(self) -> HttpGuard:
        return HttpGuard(self.rpc_http_path, self.rpc_http_allow, self.rpc_http_token)


def _int(name: str, low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text.strip().strip('"'))
        except ValueError:
            raise InvalidArgument(f"parameter {name}: not an integer: {text!r}") from None
        if not low <= value <= high:
            raise InvalidArgument(f"parameter {name}: {value} out of range [{low}, {high}]")
        return value

    return convert


def _from_uri(text: str) -> str:
    value = text.strip().strip('"')
    try:
        uri = parse_uri(value)
    except InvalidUri as exc:
        raise InvalidArgument(f"parameter ping_from: {exc}") from None
    if not uri.user:
        raise InvalidArgument(f"parameter ping_from: needs a user part: {value!r}")
    return uri.display


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.strip().strip('"').lower()
        if value not in choices:
            raise InvalidArgument(f"parameter {name}: {value!r} is not one of {', '.join(choices)}")
        return value

    return convert


def _path(name: str) -> Callable[[str], str]:
    """An absolute socket path, ``unix:`` prefix allowed; empty turns the feature off."""

    def convert(text: str) -> str:
        value = text.strip().strip('"')
        if value.startswith("unix:"):
            value = value[len("unix:") :]
        if value and not value.startswith("/"):
            raise InvalidArgument(f"parameter {name}: needs an absolute path: {text!r}")
        return value

    return convert


_SCALARS: Mapping[str, Callable[[str], object]] = {
    "ping_interval": _int("ping_interval", 1, 86400),
    "delete_counter": _int("delete_counter", 0, 1_000_000),
    "ping_from": _from_uri,
    "ping_timeout_ms": _int("ping_timeout_ms", 100, 600_000),
    "max_destinations": _int("max_destinations", 1, 1_000_000),
    "rpc_socket": _path("rpc_socket"),
    "ctl_forward": _path("ctl_forward"),
    "rpc_http_path": lambda text: parse_path("rpc_http_path", text),
    "rpc_http_allow": lambda text: parse_allow("rpc_http_allow", text),
    "rpc_http_token": lambda text: parse_token("rpc_http_token", text),
    "rpc_add_rate": _int("rpc_add_rate", 0, 1_000_000),
    "tcp_keepalive_method": _choice("tcp_keepalive_method", ("auto", "pidfd", "tcpops")),
}


def destination_defines() -> list[str]:
    return ["DESTINATION"] + [f"DESTINATION_{i}" for i in range(1, MAX_NUMBERED_DESTINATIONS + 1)]


def parse_destinations(text: str) -> list[SipUri]:
    """URIs of one ``destination`` value, separated by spaces or commas."""
    uris = []
    for item in text.strip().strip('"').replace(",", " ").split():
        try:
            uris.append(parse_uri(item))
        except InvalidUri as exc:
            raise InvalidArgument(f"parameter destination: {exc}") from None
    return uris


def load_config(defines: Mapping[str, str]) -> KaConfig:
    """Build the config from ``{"PING_INTERVAL": "10", ...}`` (names without ``KA_``)."""
    values: dict[str, object] = {}
    for name, convert in _SCALARS.items():
        raw = defines.get(name.upper())
        if raw is not None:
            values[name] = convert(raw)
    destinations: list[SipUri] = []
    for define in destination_defines():
        raw = defines.get(define)
        if raw is not None:
            destinations.extend(parse_destinations(raw))
    keys = [uri.key for uri in destinations]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise InvalidArgument(f"parameter destination: {dup} listed twice")
    config = KaConfig(destinations=tuple(destinations), **values)  # type: ignore[arg-type]
    if len(destinations) > config.max_destinations:
        raise InvalidArgument(
            f"parameter destination: {len(destinations)} destinations exceed "
            f"max_destinations {config.max_destinations}"
        )
    return config


def define_names() -> list[str]:
    """Every ``#!define`` name the glue should read."""
    return [DEFINE_PREFIX + n.upper() for n in _SCALARS] + [
        DEFINE_PREFIX + d for d in destination_defines()
    ]
