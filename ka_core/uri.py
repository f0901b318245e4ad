"""Destination URIs: parsing, validation and the canonical lookup key.

The C module stores the URI as given (``sip:`` added when missing) and compares strings, so
``sip:h`` and ``sip:h:5060`` are two destinations and ``ka_is_alive("sip:h")`` never matches
(it compares against ``uri+4``).  Here every URI has two forms:

* ``display`` - what the user gave, with ``sip:`` added when no scheme was given.  This is the
  Request-URI pinged and the text shown by ``keepalive.list`` (as in C);
* ``key`` - the canonical form used for matching: lower-case scheme and host, explicit port
  (5060 for ``sip``, 5061 for ``sips``), compressed IPv6, lower-case transport.  Lookups accept
  any spelling that has the same key, with or without scheme.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass

from ka_core.errors import InvalidUri

MAX_URI_BYTES = 255
DEFAULT_PORTS = {"sip": 5060, "sips": 5061}
TRANSPORTS = ("udp", "tcp", "tls")

_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_USERINFO = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$")


@dataclass(frozen=True, slots=True)
class SipUri:
    """A parsed destination URI."""

    scheme: str
    """``sip`` or ``sips``."""
    user: str
    host: str
    """Lower-case hostname, dotted IPv4, or IPv6 in brackets (compressed)."""
    port: int
    port_given: bool
    transport: str
    """``udp``, ``tcp``, ``tls`` or empty when the URI has no ``transport`` parameter."""
    display: str
    key: str


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN = re.compile(rf"sip:({_OCTET}(?:\.{_OCTET}){{3}}):([1-9][0-9]{{0,4}})")
"""``sip:IPv4:port`` written canonically: what a list of 100,000 destinations is made of."""


def parse_uri(text: object) -> SipUri:
    """Parse ``[sip:|sips:][user@]host[:port][;transport=udp|tcp|tls]``.

    Raises:
        InvalidUri: with a message that names what is wrong.
    """
    if isinstance(text, str) and (plain := _PLAIN.fullmatch(text)) and int(plain[2]) < 65536:
        return SipUri("sip", "", plain[1], int(plain[2]), True, "", text, text)  # fast path
    if not isinstance(text, str):
        raise InvalidUri(f"uri must be a string, not {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise InvalidUri("empty uri")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_URI_BYTES:
        raise InvalidUri(f"uri longer than {MAX_URI_BYTES} bytes")
    if not raw.isascii() or not raw.isprintable() or " " in raw:
        raise InvalidUri(f"uri has non-ASCII, blank or control characters: {raw!r}")
    scheme = "sip"
    rest = raw
    lowered = raw.lower()
    for candidate in ("sips:", "sip:"):
        if lowered.startswith(candidate):
            scheme = candidate[:-1]
            rest = raw[len(candidate) :]
            break
    else:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:[^0-9\[]", raw) and not raw.startswith("["):
            raise InvalidUri(f"unsupported scheme in {raw!r} (use sip: or sips:)")
    hostport, _, params = rest.partition(";")
    transport = _parse_params(params, raw)
    user = ""
    if "@" in hostport:
        user, _, hostport = hostport.rpartition("@")
        if not _USERINFO.match(user):
            raise InvalidUri(f"bad user part in {raw!r}")
    host, port, port_given = _parse_hostport(hostport, scheme, raw)
    if scheme == "sips" and transport in ("udp",):
        raise InvalidUri(f"sips: cannot use transport={transport} in {raw!r}")
    display = raw if lowered.startswith(("sip:", "sips:")) else f"sip:{raw}"
    key = f"{scheme}:{user + '@' if user else ''}{host}:{port}"
    if transport:
        key += f";transport={transport}"
    return SipUri(scheme, user, host, port, port_given, transport, display, key)


def lookup_key(text: str) -> str:
    """The canonical key of a URI, for matching a lookup against added destinations."""
    return parse_uri(text).key


def address_tag(host: str) -> int:
    """A 32-bit tag of an IP address (brackets allowed), 0 for a host name.

    The pinger compares the tag of a reply's source with the destination's, so a reply from
    another address never changes an IP destination's state.  Host names may resolve to
    several addresses: they are not checked.  Not cached here: a cache by address grows with
    every address ever added or answering; the reply path keeps one per slot
    (``ka_core.probe.replies.SourceTags``).
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return 0
    return zlib.crc32(address.packed) or 1


def _parse_params(params: str, raw: str) -> str:
    transport = ""
    if not params:
        return transport
    for param in params.split(";"):
        name, sep, value = param.partition("=")
        if name.lower() != "transport" or not sep:
            raise InvalidUri(f"unsupported uri parameter {param!r} in {raw!r} (only ;transport=)")
        if transport:
            raise InvalidUri(f"transport given twice in {raw!r}")
        transport = value.lower()
        if transport not in TRANSPORTS:
            raise InvalidUri(f"unknown transport {value!r} in {raw!r} (udp, tcp or tls)")
    return transport


def _parse_hostport(hostport: str, scheme: str, raw: str) -> tuple[str, int, bool]:
    port_text = ""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise InvalidUri(f"unclosed IPv6 bracket in {raw!r}")
        inner, after = hostport[1:end], hostport[end + 1 :]
        try:
            host = f"[{ipaddress.IPv6Address(inner).compressed}]"
        except ValueError:
            raise InvalidUri(f"bad IPv6 address {inner!r} in {raw!r}") from None
        if after:
            if not after.startswith(":"):
                raise InvalidUri(f"junk after IPv6 address in {raw!r}")
            port_text = after[1:]
    else:
        if hostport.count(":") > 1:
            raise InvalidUri(f"IPv6 address must be in brackets in {raw!r}")
        host, sep, port_text = hostport.partition(":")
        if sep and not port_text:
            raise InvalidUri(f"empty port in {raw!r}")
        host = _check_host(host, raw)
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise InvalidUri(f"bad port {port_text!r} in {raw!r}")
        return host, int(port_text), True
    return host, DEFAULT_PORTS[scheme], False


def _check_host(host: str, raw: str) -> str:
    if not host:
        raise InvalidUri(f"missing host in {raw!r}")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise InvalidUri(f"bad IPv4 address {host!r} in {raw!r}") from None
    name = host.rstrip(".") if host.endswith(".") and len(host) > 1 else host
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in name.split(".")):
        raise InvalidUri(f"bad host name {host!r} in {raw!r}")
    return name.lower()
