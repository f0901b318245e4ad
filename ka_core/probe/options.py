"""Probe options of a destination: the request method and the outbound proxy.

Both are settings of a destination (``method=``, ``proxy=``) with a module-wide default
(``KA_PING_METHOD``, ``KA_PING_PROXY``); the defaults leave the C module's behaviour: an
OPTIONS sent straight to the destination.

The proxy works like dispatcher's ``obproxy`` attribute: the Request-URI (and To) stay the
destination, the packet goes to the proxy's address, port and transport through Kamailio's
own socket, and only replies from the proxy's address count (the proxy is the one that
answers, or relays the destination's answer).  No Route header is added, as dispatcher
adds none: the proxy routes on the Request-URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ka_core.errors import InvalidArgument, InvalidUri
from ka_core.uri import SipUri, address_tag, parse_uri

DEFAULT_METHOD = "OPTIONS"
NO_PROXY = "none"
"""``proxy=none``: this destination is pinged directly even with a ``KA_PING_PROXY``."""
REFUSED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE")
"""They would start, end or cancel a call (dispatcher refuses none; a probe must not)."""
MAX_METHOD_CHARS = 32
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
"""RFC 3261 ``token``: what a SIP method is made of."""


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


def transport_of(uri: SipUri) -> str:
    """The protocol a ping to ``uri`` uses: its ``transport`` parameter, TLS for sips."""
    if uri.transport:
        return uri.transport
    return "tls" if uri.scheme == "sips" else "udp"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a destination's pings go and where their replies must come from."""

    transport: str
    ipv6: bool
    """Of the next hop: the listener a ping leaves from has the same family."""
    hop: str
    """``sip:host:port;transport=proto``, as ``corex.sendx`` takes it."""
    source: int
    """``address_tag`` replies must come from; 0 = not checked (a host name)."""


def route_of(uri: SipUri, proxy: str) -> Route:
    """The route of pings to ``uri``: straight to it, or through ``proxy`` (a URI given by
    ``parse_proxy``; empty or ``none``: no proxy)."""
    hop = uri if proxy in ("", NO_PROXY) else parse_uri(proxy)
    transport = transport_of(hop)
    return Route(
        transport,
        hop.host.startswith("["),
        f"sip:{hop.host}:{hop.port};transport={transport}",
        address_tag(hop.host),
    )
