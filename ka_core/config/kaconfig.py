"""Module parameters, read from ``#!define KA_<NAME> value`` lines of kamailio.cfg.

Kamailio 5.6.3 gives Python no ``modparam`` of its own, and custom cfg variables are not
readable in ``mod_init``; ``#!define`` values are (``$def(NAME)``).  ``destination`` is
repeatable through numbered defines (``KA_DESTINATION``, ``KA_DESTINATION_1`` ...
``KA_DESTINATION_99``), each holding one or more URIs separated by spaces or commas.  A URI
may carry per-destination settings after a ``|`` (``sip:10.0.0.1|down_after=3;alive=2xx,404``,
``ka_core.settings``); such an item ends at the next space.

Invalid values raise ``InvalidArgument`` naming the parameter and the value; the glue turns
that into a failed ``mod_init``, so Kamailio refuses to start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ka_core.cluster.codec import BadMessage, node_id
from ka_core.config.destinations import parse_destinations
from ka_core.errors import InvalidArgument
from ka_core.names.servers import parse_dns_servers, servers_text
from ka_core.ops.access import LOOPBACK, HttpGuard, Network, parse_allow, parse_path, parse_token
from ka_core.ops.dispatcher import DEFAULT_SYNC_S
from ka_core.policy import (
    DEFAULT_AFTER,
    DEFAULT_ALIVE,
    DEFAULT_EJECT_MAX_PERCENT,
    DEFAULT_EJECT_MAX_S,
    DEFAULT_EJECT_S,
    DEFAULT_FAILURE_CODES,
    DEFAULT_RETRY_CODES,
    MAX_RETRY_AFTER_S,
    CodeSet,
    Ejection,
    Policy,
)
from ka_core.settings import (
    DEFAULT_METHOD,
    MAX_INTERVAL_S,
    NO_PROXY,
    Settings,
    parse_failure_codes,
    parse_from,
    parse_method,
    parse_proxy,
)
from ka_core.uri import SipUri

DEFINE_PREFIX = "KA_"
MAX_NUMBERED_DESTINATIONS = 99
DEFAULT_PING_FROM = "sip:keepalive@kamailio.org"


@dataclass(frozen=True, slots=True)
class KaConfig:
    ping_interval: int = 30
    """Seconds between two pings of a destination (``KA_PING_INTERVAL``)."""
    delete_counter: int = 5
    """Stop pinging after more than this many consecutive failures; 0 = never."""
    ping_from: str = DEFAULT_PING_FROM
    """From URI of the OPTIONS."""
    ping_proxy: str = ""
    """Outbound proxy URI every ping goes through (``proxy`` setting); empty = none."""
    ping_method: str = DEFAULT_METHOD
    """Request method of the pings (``method`` setting; dispatcher's ``ds_ping_method``)."""
    ping_timeout_ms: int = 5000
    """No final reply within this time counts as a failure; match tm's ``fr_timer``."""
    max_destinations: int = 10000
    """Upper bound of the shared table; adds beyond it are refused."""
    string_chunks: int = 0
    """128-byte chunks of the table's pool for strings too long for a slot
    (``KA_STRING_CHUNKS``); 0 = the default for ``max_destinations``."""
    destinations: tuple[tuple[SipUri, Settings], ...] = field(default_factory=tuple)
    """The ``destination`` parameters, each with its own settings (often none)."""
    down_after: int = 1
    """Consecutive failed probes that make a destination DOWN (C: 1)."""
    up_after: int = 1
    """Consecutive alive replies that take a destination out of DOWN or UNKNOWN (C: 1)."""
    alive_codes: CodeSet = DEFAULT_ALIVE
    """Final reply codes that count as alive (C: 2xx)."""
    degraded_ms: int = 0
    """An alive reply slower than this marks the destination DEGRADED; 0 = never."""
    degraded_as: str = "degraded"
    """``down``: a reply slower than ``degraded_ms`` counts as a failure instead."""
    down_backoff_max: int = 0
    """Seconds; > 0 keeps probing DOWN destinations (never stops for ``delete_counter``),
    doubling the interval after each failure up to this."""
    event_callback: str = ""
    """Name of a method of the script's handler object called on state changes."""
    event_initial: int = 0
    """1: the event method also gets each destination's first state (out of UNKNOWN)."""
    dns: int = 0
    """1: host names are resolved by ka-kemi (A/AAAA, SRV), each address probed on its own;
    0: tm resolves them at each ping, one destination (C)."""
    dns_server: str = ""
    """``ip:port`` of the DNS servers, space-separated, tried in turn; empty = the
    nameservers of /etc/resolv.conf (``ka_core.names.servers``)."""
    dns_naptr: int = 0
    """1: NAPTR first for names without port and transport (RFC 3263; Kamailio's
    ``dns_try_naptr``, also off by default)."""
    dns_refresh: int = 300
    """Seconds: names are resolved again at least this often (sooner when the TTL ends)."""
    dns_state: str = "any"
    """A name's state from its targets: ``any`` target UP, or ``all`` of them."""
    rpc_socket: str = ""
    """Unix socket path served for ``kamcmd -s unix:<path>``; empty = no BINRPC server."""
    ctl_forward: str = ""
    """Kamailio's real ctl socket; RPCs not named ``keepalive.*`` are relayed there."""
    jsonrpc_socket: str = ""
    """Unix datagram socket served for kamcli (jsonrpcs' protocol); empty = none."""
    jsonrpc_forward: str = ""
    """Kamailio's jsonrpcs datagram socket; other JSON-RPC methods are relayed there."""
    rpc_http_path: str = "/RPC"
    """The only URL path that JSON-RPC over HTTP answers on; others get 404."""
    rpc_http_allow: tuple[Network, ...] = field(default_factory=lambda: parse_allow("", LOOPBACK))
    """Sources that may use JSON-RPC over HTTP; others get 403.  Empty = nobody."""
    rpc_http_token: str = ""
    """If set, JSON-RPC over HTTP also needs ``Authorization: Bearer <token>``."""
    rpc_add_rate: int = 1000
    """``keepalive.add`` calls per second over all RPC paths together; 0 = no limit."""
    metrics_path: str = "/metrics"
    """Where Prometheus scrapes (GET) on the SIP TCP/TLS listeners; empty = no metrics."""
    metrics_allow: tuple[Network, ...] = field(default_factory=lambda: parse_allow("", LOOPBACK))
    """Sources that may scrape; others get 403.  Empty = nobody."""
    metrics_token: str = ""
    """If set, a scrape also needs ``Authorization: Bearer <token>``."""
    tcp_keepalive_method: str = "auto"
    """How tcp_keepalive_* reach a socket another process holds: auto, pidfd or tcpops."""
    state_file: str = ""
    """Absolute path keeping runtime destinations and last states (``kemi.persistence``)."""
    cluster: int = 0
    """1: cluster mode over dmq (``kemi.cluster``, docs/cluster.md)."""
    dmq_server: str = ""
    """This node's dmq ``server_address`` as ``host:port``: its name in the cluster."""
    cluster_mode: str = "distributed"
    """``distributed``: each destination probed by one live node; ``all``: by every node."""
    cluster_channel: str = "keepalive"
    """The DMQ channel (the KDMQ R-URI user) of ka-kemi's messages."""
    cluster_heartbeat_ms: int = 1000
    """Heartbeat period; a node silent for three of them is out."""
    dispatcher_bridge: int = 0
    """1: dispatcher's destinations, probed by ka-kemi, follow its states (docs/dispatcher.md)."""
    dispatcher_sync_s: int = DEFAULT_SYNC_S
    """Seconds between two reads of ``dispatcher.list`` (new, gone and reset entries)."""
    passive: int = 0
    """1: passive health for every destination (``ka_report`` outcomes eject it)."""
    eject_after: int = DEFAULT_AFTER
    """Reported failures in a row that eject a destination (Envoy's default 5)."""
    eject_codes: CodeSet = DEFAULT_FAILURE_CODES
    """Reported codes that count as failures (5xx, and 408 for a local timeout)."""
    eject_time: int = DEFAULT_EJECT_S
    """Seconds of the first ejection; the n-th lasts n times this, at most ``eject_max``."""
    eject_max: int = DEFAULT_EJECT_MAX_S
    eject_max_percent: int = DEFAULT_EJECT_MAX_PERCENT
    """At most this share of an owner's destinations is ejected at once (at least one)."""
    eject_as: str = "ejected"
    """``down``: ``ka_is_alive`` answers 2 for an ejected destination instead of 4."""
    retry_after_max: int = 0
    """Seconds a reply in ``retry_after_codes`` with Retry-After holds out, at most; 0 = off."""
    retry_after_codes: CodeSet = DEFAULT_RETRY_CODES
    select_panic_percent: int = 0
    """``ka_select`` picks among all of a group when less than this share is live; 0 = never."""

    @property
    def ejection(self) -> Ejection:
        """The module-wide passive-health policy (off unless ``passive`` is 1)."""
        return Ejection(
            self.eject_after if self.passive else 0, self.eject_codes, self.eject_time,
            max(self.eject_max, self.eject_time), self.eject_max_percent,
            self.eject_as == "down", self.retry_after_codes, self.retry_after_max,
        )  # fmt: skip

    @property
    def policy(self) -> Policy:
        return Policy(
            self.down_after, self.up_after, self.alive_codes, self.degraded_ms,
            self.degraded_as == "down",
        )  # fmt: skip

    @property
    def metrics_guard(self) -> HttpGuard:
        return HttpGuard(self.metrics_path, self.metrics_allow, self.metrics_token, "GET")

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
    return parse_from(text.strip().strip('"'), "parameter ping_from")


def _proxy(text: str) -> str:
    value = text.strip().strip('"')
    proxy = parse_proxy(value, "parameter ping_proxy") if value else ""
    return "" if proxy == NO_PROXY else proxy


def _method(text: str) -> str:
    return parse_method(text.strip().strip('"'), "parameter ping_method")


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


def _codes(text: str) -> CodeSet:
    try:
        return CodeSet.parse(text.strip().strip('"'))
    except InvalidArgument as exc:
        raise InvalidArgument(f"parameter alive_codes: {exc}") from None


def _metrics_path(text: str) -> str:
    value = text.strip().strip('"')
    return parse_path("metrics_path", value) if value else ""


def _dns_server(text: str) -> str:
    try:
        return servers_text(parse_dns_servers(text))
    except ValueError as exc:
        raise InvalidArgument(f"parameter dns_server: {exc}") from None


def _method_name(text: str) -> str:
    value = text.strip().strip('"')
    if value and not value.isidentifier():
        raise InvalidArgument(f"parameter event_callback: not a method name: {value!r}")
    return value


def _switch(name: str) -> Callable[[str], int]:
    """0 or 1; ``#!define KA_CLUSTER`` without a value turns it on too."""
    return lambda text: _int(name, 0, 1)(text.strip().strip('"') or "1")


def _node(text: str) -> str:
    value = text.strip().strip('"')
    try:
        return node_id(value) if value else ""
    except BadMessage as exc:
        raise InvalidArgument(f"parameter dmq_server: {exc}") from None


def _channel(text: str) -> str:
    value = text.strip().strip('"')
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        raise InvalidArgument(f"parameter cluster_channel: not a SIP user token: {text!r}")
    return value


_SCALARS: Mapping[str, Callable[[str], object]] = {
    "ping_interval": _int("ping_interval", 1, MAX_INTERVAL_S),
    "delete_counter": _int("delete_counter", 0, 1_000_000),
    "ping_from": _from_uri,
    "ping_proxy": _proxy,
    "ping_method": _method,
    "ping_timeout_ms": _int("ping_timeout_ms", 100, 600_000),
    "max_destinations": _int("max_destinations", 1, 1_000_000),
    "string_chunks": _int("string_chunks", 1, 10_000_000),
    "rpc_socket": _path("rpc_socket"),
    "ctl_forward": _path("ctl_forward"),
    "jsonrpc_socket": _path("jsonrpc_socket"),
    "jsonrpc_forward": _path("jsonrpc_forward"),
    "rpc_http_path": lambda text: parse_path("rpc_http_path", text),
    "rpc_http_allow": lambda text: parse_allow("rpc_http_allow", text),
    "rpc_http_token": lambda text: parse_token("rpc_http_token", text),
    "rpc_add_rate": _int("rpc_add_rate", 0, 1_000_000),
    "metrics_path": lambda text: _metrics_path(text),
    "metrics_allow": lambda text: parse_allow("metrics_allow", text),
    "metrics_token": lambda text: parse_token("metrics_token", text),
    "tcp_keepalive_method": _choice("tcp_keepalive_method", ("auto", "pidfd", "tcpops")),
    "state_file": _path("state_file"),
    "down_after": _int("down_after", 1, 1000),
    "up_after": _int("up_after", 1, 1000),
    "alive_codes": lambda text: _codes(text),
    "degraded_ms": _int("degraded_ms", 0, 600_000),
    "degraded_as": _choice("degraded_as", ("degraded", "down")),
    "down_backoff_max": _int("down_backoff_max", 0, 86400),
    "event_callback": lambda text: _method_name(text),
    "event_initial": _int("event_initial", 0, 1),
    "dns": _int("dns", 0, 1),
    "dns_server": _dns_server,
    "dns_naptr": _int("dns_naptr", 0, 1),
    "dns_refresh": _int("dns_refresh", 5, 86400),
    "dns_state": _choice("dns_state", ("any", "all")),
    "cluster": _switch("cluster"),
    "dmq_server": _node,
    "cluster_mode": _choice("cluster_mode", ("distributed", "all")),
    "cluster_channel": _channel,
    "cluster_heartbeat_ms": _int("cluster_heartbeat_ms", 200, 60_000),
    "dispatcher_bridge": _switch("dispatcher_bridge"),
    "dispatcher_sync_s": _int("dispatcher_sync_s", 1, 3600),
    "passive": _int("passive", 0, 1),
    "eject_after": _int("eject_after", 1, 1000),
    "eject_codes": lambda text: parse_failure_codes(
        text.strip().strip('"'), "parameter eject_codes"
    ),
    "eject_time": _int("eject_time", 1, MAX_INTERVAL_S),
    "eject_max": _int("eject_max", 1, MAX_INTERVAL_S),
    "eject_max_percent": _int("eject_max_percent", 1, 100),
    "eject_as": _choice("eject_as", ("ejected", "down")),
    "select_panic_percent": _int("select_panic_percent", 0, 100),
    "retry_after_max": _int("retry_after_max", 0, MAX_RETRY_AFTER_S),
    "retry_after_codes": lambda text: parse_failure_codes(
        text.strip().strip('"'), "parameter retry_after_codes"
    ),
}


def destination_defines() -> list[str]:
    return ["DESTINATION"] + [f"DESTINATION_{i}" for i in range(1, MAX_NUMBERED_DESTINATIONS + 1)]


def load_config(defines: Mapping[str, str]) -> KaConfig:
    """Build the config from ``{"PING_INTERVAL": "10", ...}`` (names without ``KA_``)."""
    values: dict[str, object] = {}
    for name, convert in _SCALARS.items():
        raw = defines.get(name.upper())
        if raw is not None:
            values[name] = convert(raw)
    destinations: list[tuple[SipUri, Settings]] = []
    for define in destination_defines():
        raw = defines.get(define)
        if raw is not None:
            destinations.extend(parse_destinations(raw))
    keys = [uri.key for uri, _ in destinations]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise InvalidArgument(f"parameter destination: {dup} listed twice")
    config = KaConfig(destinations=tuple(destinations), **values)  # type: ignore[arg-type]
    if len(destinations) > config.max_destinations:
        raise InvalidArgument(
            f"parameter destination: {len(destinations)} destinations exceed "
            f"max_destinations {config.max_destinations}"
        )
    if config.cluster and not config.dmq_server:
        raise InvalidArgument("parameter dmq_server: needed with cluster 1 (sip:ip:port)")
    if config.dns and config.ping_proxy:
        raise InvalidArgument(
            "parameter ping_proxy: not supported together with dns 1 (the proxy resolves "
            "the names; a destination's own proxy= setting is allowed)"
        )
    if config.cluster and config.dispatcher_bridge:
        raise InvalidArgument(
            "parameter dispatcher_bridge: not supported together with cluster 1 yet"
        )
    if config.cluster and config.dns:
        raise InvalidArgument("parameter cluster: not supported together with dns 1 yet")
    return config


def define_names() -> list[str]:
    """Every ``#!define`` name the glue should read."""
    return [DEFINE_PREFIX + n.upper() for n in _SCALARS] + [
        DEFINE_PREFIX + d for d in destination_defines()
    ]
