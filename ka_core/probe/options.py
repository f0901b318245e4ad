"""Probe options of a destination: the request method and the outbound proxy (parsed as
settings, ``ka_core.settings``), and the route a ping takes.

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

from dataclasses import dataclass

from ka_core.settings import NO_PROXY
from ka_core.uri import SipUri, address_tag, parse_uri


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
