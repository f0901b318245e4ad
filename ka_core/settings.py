"""Per-destination settings: the text form ``key=value;key=value`` that the developer API,
the RPC ``keepalive.add`` and the config (``uri|settings``) accept, and its merge with the
module parameters into one destination's ``Policy``.

Keys: ``interval`` (s), ``from`` (From URI), ``down_after``, ``up_after``, ``alive`` (codes,
``ka_core.policy.CodeSet``), ``degraded_ms`` (0 = no latency threshold) and ``socket``
(``proto:ip:port``, one of Kamailio's listeners: pings leave from it, and only replies
received on it count), ``proxy`` (an outbound proxy URI, or ``none``: where pings go,
``ka_core.probe.options``), ``method`` (the probe's request method), ``auth_user`` and
``auth_password`` (digest credentials for a 401/407 challenge, ``ka_core.probe.digest``; the
password is left out of ``public_settings``, the text RPC and the state file show), ``group``,
``priority`` and ``weight`` (selection, ``ka_core.route.selection``).  A key
not given follows the module parameter, also when that changes at runtime
(``keepalive.interval``).  The canonical text is stored in the shared table, so every
process sees the same settings.
"""

from __future__ import annotations

import ipaddress
import re
import struct
import zlib
from dataclasses import dataclass, field, replace

from ka_core.errors import InvalidArgument, InvalidUri
from ka_core.policy import CodeSet, Ejection, Policy
from ka_core.uri import parse_uri

MAX_INTERVAL_S = 86400
"""The longest ping interval anywhere (config, settings, RPC, API): one day."""
MAX_THRESHOLD = 1000
PROTOS = ("udp", "tcp", "tls")
_PORT = struct.Struct("<H")
DEFAULT_METHOD = "OPTIONS"
NO_PROXY = "none"
"""``proxy=none``: this destination is pinged directly even with a ``KA_PING_PROXY``."""
REFUSED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE")
"""They would start, end or cancel a call (dispatcher refuses none; a probe must not)."""
MAX_METHOD_CHARS = 32
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
"""RFC 3261 ``token``: what a SIP method is made of."""
MAX_CREDENTIAL_CHARS = 128
MAX_WEIGHT = 1000
MAX_GROUP_CHARS = 63
_GROUP = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class Credentials:
    """Digest credentials of a destination (``ka_core.probe.digest`` answers with them)."""

    user: str
    password: str = field(repr=False)
    """Never in a repr, a log line or any RPC text."""


@dataclass(frozen=True, slots=True)
class Settings:
    interval: int = 0
    """Seconds; 0 = the module's ``ping_interval``."""
    from_uri: str = ""
    down_after: int = 0
    up_after: int = 0
    alive: CodeSet | None = None
    degraded_ms: int | None = None
    socket: str = ""
    eject_after: int | None = None
    """Passive health (``ka_core.probe.outlier``): failures in a row that eject; 0 = off."""
    eject_codes: CodeSet | None = None
    eject_time: int = 0
    eject_max: int = 0
    proxy: str = ""
    """Outbound proxy URI; ``none``: no proxy even with ``KA_PING_PROXY``; empty: the module's."""
    method: str = ""
    """Probe method; empty: the module's ``ping_method``."""
    auth_user: str = ""
    auth_password: str = field(default="", repr=False)
    """Never shown: ``public_settings`` leaves it out."""
    group: str = ""
    """Selection: the group ``ka_select`` finds it in; empty: its owner."""
    priority: int = 0
    """Selection (``first``): lower goes first; equal priorities keep the add order."""
    weight: int = 1
    """Selection (``weight``): the share of picks, relative to the group's other weights."""
    target_of: str = ""
    """Internal (``KA_DNS``): the host-name destination this target was resolved from;
    written by ka-kemi only, refused from users (``parse_settings(internal=False)``)."""

    @property
    def text(self) -> str:
        """The canonical text (empty when nothing is set)."""
        parts = []
        if self.interval:
            parts.append(f"interval={self.interval}")
        if self.from_uri:
            parts.append(f"from={self.from_uri}")
        if self.down_after:
            parts.append(f"down_after={self.down_after}")
        if self.up_after:
            parts.append(f"up_after={self.up_after}")
        if self.alive is not None:
            parts.append(f"alive={self.alive.text}")
        if self.degraded_ms is not None:
            parts.append(f"degraded_ms={self.degraded_ms}")
        if self.socket:
            parts.append(f"socket={self.socket}")
        if self.eject_after is not None:
            parts.append(f"eject_after={self.eject_after}")
        if self.eject_codes is not None:
            parts.append(f"eject_codes={self.eject_codes.text}")
        if self.eject_time:
            parts.append(f"eject_time={self.eject_time}")
        if self.eject_max:
            parts.append(f"eject_max={self.eject_max}")
        if self.method:
            parts.append(f"method={self.method}")
        if self.auth_user:
            parts.append(f"auth_user={self.auth_user};auth_password={self.auth_password}")
        if self.group:
            parts.append(f"group={self.group}")
        if self.priority:
            parts.append(f"priority={self.priority}")
        if self.weight != 1:
            parts.append(f"weight={self.weight}")
        if self.proxy:  # its ;transport= is read back as part of it
            parts.append(f"proxy={self.proxy}")
        if self.target_of:  # last: its URI may hold a ';'
            parts.append(f"target_of={self.target_of}")
        return ";".join(parts)

    @property
    def credentials(self) -> Credentials | None:
        return Credentials(self.auth_user, self.auth_password) if self.auth_user else None

    @property
    def has_own_proxy(self) -> bool:
        """An outbound proxy of its own (``proxy=none`` is none)."""
        return self.proxy not in ("", NO_PROXY)

    def policy(self, defaults: Policy) -> Policy:
        """This destination's policy: the module's, with what these settings override."""
        return replace(
            defaults,
            down_after=self.down_after or defaults.down_after,
            up_after=self.up_after or defaults.up_after,
            alive=self.alive or defaults.alive,
            degraded_ms=defaults.degraded_ms if self.degraded_ms is None else self.degraded_ms,
        )


def ejection_of(settings: Settings, defaults: Ejection) -> Ejection:
    """A destination's passive-health policy: the module's, with what its settings override
    (``eject_after`` > 0 turns it on for this destination even when ``KA_PASSIVE`` is 0)."""
    after = defaults.after if settings.eject_after is None else settings.eject_after
    if not after:
        return replace(defaults, after=0)
    return replace(
        defaults,
        after=after,
        codes=settings.eject_codes or defaults.codes,
        base_s=settings.eject_time or defaults.base_s,
        max_s=settings.eject_max or defaults.max_s,
    )


def _count(key: str, value: str, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"setting {key}: not an integer: {value!r}") from None
    if not 1 <= number <= high:
        raise InvalidArgument(f"setting {key}: {number} out of range [1, {high}]")
    return number


def parse_from(value: str, what: str = "setting from") -> str:
    """A From URI (the ``from`` setting, the ``ping_from`` parameter): needs a user part."""
    try:
        uri = parse_uri(value)
    except InvalidUri as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if not uri.user:
        raise InvalidArgument(f"{what}: needs a user part: {value!r}")
    return uri.display


def parse_failure_codes(value: str, what: str) -> CodeSet:
    """Codes that count as a failure of a real request (``5xx,408``; the alive-codes
    syntax)."""
    try:
        return CodeSet.parse(value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {str(exc).replace('alive codes: ', '')}") from None


def parse_socket(value: str) -> tuple[str, str, int]:
    """``udp:127.0.0.1:5060`` or ``tls:[::1]:5061`` to (proto, address, port)."""
    proto, sep, rest = value.partition(":")
    host, sep2, port_text = rest.rpartition(":")
    try:
        if not (sep and sep2 and proto.lower() in PROTOS):
            raise ValueError
        bracketed = host.startswith("[") and host.endswith("]")
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
        if bracketed != (address.version == 6):
            raise ValueError
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise InvalidArgument(
            f"setting socket: {value!r} is not proto:address:port (udp|tcp|tls, an IP "
            "address, IPv6 in brackets)"
        ) from None
    return proto.lower(), address.compressed, port


def socket_text(proto: str, address: str, port: int) -> str:
    shown = f"[{address}]" if ":" in address else address
    return f"{proto}:{shown}:{port}"


def socket_tag(address: str, port: int) -> int:
    """A 32-bit tag of a local address and port (never 0): what a SIP worker computes for
    the socket a reply arrived on, compared with the destination's ``socket``."""
    try:
        packed = ipaddress.ip_address(address.strip("[]")).packed
    except ValueError:
        return 1
    return zlib.crc32(packed + _PORT.pack(port & 0xFFFF)) or 1


def _join_proxy(items: list[str]) -> list[str]:
    """``proxy=sip:h;transport=tcp``: the URI's ``transport`` parameter (no setting has
    that name) joins the proxy item it follows."""
    out: list[str] = []
    for item in items:
        if (
            out
            and out[-1].lstrip().lower().startswith("proxy=")
            and (item.strip().lower().startswith("transport="))
        ):
            out[-1] += ";" + item.strip()
        else:
            out.append(item)
    return out


def parse_group(value: str) -> str:
    """A group name: letters, digits, ``_ . -``, as an owner is usually written."""
    if not _GROUP.fullmatch(value) or len(value) > MAX_GROUP_CHARS:
        raise InvalidArgument(f"setting group: letters, digits, _ . - (up to 63): {value!r}")
    return value


def parse_method(value: str, what: str = "setting method") -> str:
    """A probe method (``OPTIONS``, ``INFO``, ``NOTIFY`` ...), as given (methods are
    case-sensitive); raises ``InvalidArgument`` for a non-token or a dialog method."""
    if not _TOKEN.fullmatch(value) or len(value) > MAX_METHOD_CHARS:
        raise InvalidArgument(f"{what}: not a SIP method (a token, up to 32 characters): {value!r}")
    if value.upper() in REFUSED_METHODS:
        raise InvalidArgument(
            f"{what}: {value} cannot be a probe (INVITE, ACK, CANCEL and BYE are refused)"
        )
    return value


def parse_proxy(value: str, what: str = "setting proxy") -> str:
    """An outbound proxy: a SIP URI without a user part (``sip:10.0.0.5:5070;transport=tcp``)
    in its given form, or ``none``."""
    if value.lower() == NO_PROXY:
        return NO_PROXY
    try:
        uri = parse_uri(value)
    except InvalidUri as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if uri.user:
        raise InvalidArgument(f"{what}: a proxy URI has no user part: {value!r}")
    return uri.display


def check_credential(key: str, value: str) -> str:
    """``auth_user`` or ``auth_password``: printable, no ``;`` or ``"`` (the settings text
    and the header cannot carry them); the error never shows a password."""
    shown = "the password" if key == "auth_password" else repr(value)
    if not value.isprintable() or any(c in value for c in ';"\\') or " " in value:
        raise ValueError(f'setting {key}: {shown} has a blank, control character, ; " or \\')
    if len(value) > MAX_CREDENTIAL_CHARS:
        raise ValueError(f"setting {key}: longer than {MAX_CREDENTIAL_CHARS} characters")
    return value


def parse_settings(text: str, internal: bool = False) -> Settings:
    """``interval=10;alive=2xx,404`` to ``Settings``; empty text is no settings.
    ``internal``: text from the table, where ka-kemi's own ``target_of`` may stand (last)."""
    values: dict[str, object] = {}
    seen: set[str] = set()
    items = _join_proxy(text.strip().strip('"').split(";"))
    for at, item in enumerate(items):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise InvalidArgument(f"setting {item.strip()!r}: expected key=value")
        if key in seen:
            raise InvalidArgument(f"setting {key} given twice")
        seen.add(key)
        if key == "interval":
            values[key] = _count(key, value, MAX_INTERVAL_S)
        elif key == "from":
            values["from_uri"] = parse_from(value)
        elif key in ("down_after", "up_after"):
            values[key] = _count(key, value, MAX_THRESHOLD)
        elif key == "alive":
            values[key] = CodeSet.parse(value)
        elif key == "degraded_ms":
            values[key] = (
                0 if value.isdecimal() and int(value) == 0 else _count(key, value, 600_000)
            )
        elif key == "socket":
            values[key] = socket_text(*parse_socket(value))
        elif key == "eject_after":
            values[key] = 0 if value.isdecimal() and int(value) == 0 else _count(key, value, 1000)
        elif key == "eject_codes":
            values[key] = parse_failure_codes(value, f"setting {key}")
        elif key in ("eject_time", "eject_max"):
            values[key] = _count(key, value, MAX_INTERVAL_S)
        elif key == "proxy":
            values[key] = parse_proxy(value)
        elif key == "method":
            values[key] = parse_method(value)
        elif key in ("auth_user", "auth_password"):
            try:
                values[key] = check_credential(key, value)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
        elif key == "group":
            values[key] = parse_group(value)
        elif key == "priority":
            values[key] = 0 if value.isdecimal() and int(value) == 0 else _count(key, value, 1000)
        elif key == "weight":
            values[key] = _count(key, value, MAX_WEIGHT)
        elif key == "target_of" and internal:
            values[key] = ";".join([value, *items[at + 1 :]])
            break
        else:
            raise InvalidArgument(
                f"unknown setting {key!r} (interval, from, down_after, up_after, alive, "
                "degraded_ms, socket, eject_after, eject_codes, eject_time, eject_max, proxy, "
                "method, auth_user, auth_password, group, priority, weight)"
            )
    if ("auth_user" in values) != ("auth_password" in values):
        raise InvalidArgument(
            "settings auth_user and auth_password go together (passwords are never written "
            "to the state file or shown by RPC: give it again)"
        )
    return Settings(**values)  # type: ignore[arg-type]


def public_settings(text: str) -> str:
    """Canonical settings text without the password: what RPC and the state file show."""
    if "auth_password=" not in text:
        return text
    return ";".join(i for i in text.split(";") if not i.startswith("auth_password="))
