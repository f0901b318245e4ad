"""The text of every ping, from a handful of templates (``kemi/sender.py`` sends them).

One template per sender, protocol, family, socket and method: the OPTIONS request with placeholders
for the R-URI, Call-ID and branch hash, so a ping costs three string replacements.  The
listeners come from ``corex.list_sockets`` (``listeners_from``); ``User-Agent`` is tm's, made
from ``$version(full)`` (``user_agent``).
"""

from __future__ import annotations

import json

from ka_core.probe.callid import make_callid
from ka_core.probe.prober import Ping
from ka_core.probe.wire import (
    BRANCH_MAGIC,
    Listener,
    Listeners,
    branch_for,
    options_request,
    parse_listeners,
)
from ka_core.settings import DEFAULT_METHOD

LIST_SOCKETS = json.dumps({"jsonrpc": "2.0", "method": "corex.list_sockets", "id": 1})
_RURI, _CALLID, _HASH = "\2", "\0", "\1"


def user_agent(version: str) -> str:
    """tm's ``User-Agent`` from ``$version(full)``: ``kamailio 5.6.3 (x86_64/linux)`` ->
    ``kamailio (5.6.3 (x86_64/linux))``."""
    name, _, rest = version.strip().partition(" ")
    return f"{name} ({rest})" if rest else version


def listeners_from(code: object, body: object) -> tuple[list[Listener], str | None]:
    """The listeners of a ``corex.list_sockets`` answer, and the error to log when none."""
    found = parse_listeners(body) if str(code) == "200" and isinstance(body, str) else []
    if found:
        return found, None
    return found, (
        f"no UDP/TCP/TLS listener from corex.list_sockets (code {code}): pings "
        "cannot be sent (load corex.so and jsonrpcs.so)"
    )


class PingTexts:
    """The templates of one pinger, made on first use."""

    def __init__(self, listeners: Listeners, agent: str, key: bytes, prefix: str) -> None:
        self.listeners = listeners
        self._agent = agent
        self._key = key
        self._prefix = prefix
        self._templates: dict[tuple[str, str, bool, str, str], tuple[str, str] | None] = {}

    def template(
        self, from_uri: str, transport: str, ipv6: bool, socket: str, method: str = DEFAULT_METHOD
    ) -> tuple[str, str] | None:
        """(socket, template) for a ping, or None when no listener fits."""
        key = (from_uri, transport, ipv6, socket, method)
        if key not in self._templates:
            listener = self.listeners.pick(transport, ipv6, socket)
            self._templates[key] = None if listener is None else (
                listener.spec,
                options_request(
                    _RURI, from_uri, _CALLID, BRANCH_MAGIC + _HASH, listener, self._agent, method
                ),
            )  # fmt: skip
        return self._templates[key]

    def text(self, template: str, ping: Ping) -> str:
        """The request of ``ping`` (a retransmission gets the same bytes); a ping answering
        a challenge (``ka_core.probe.auth_hooks``) gets its ``Authorization`` line last."""
        callid = make_callid(self._prefix, ping.seq, ping.slot)
        digest = branch_for(self._key, callid)[len(BRANCH_MAGIC) :]
        text = template.replace(_RURI, ping.uri).replace(_HASH, digest).replace(_CALLID, callid)
        return f"{text[:-2]}{ping.auth}\r\n\r\n" if ping.auth else text


def busy_line(count: int) -> str:
    """Pings the UDP gate held back in one step (``kemi.udp_gate``)."""
    return (
        f"{count} OPTIONS not sent: Kamailio's UDP socket has no send "
        "buffer free (network down?); they count as failures"
    )


def udp_address(spec: str) -> tuple[str, int] | None:
    """(address, port) of a ``udp:address:port`` listener spec; None for other protocols
    or a spec without a port."""
    proto, _, rest = spec.partition(":")
    address, _, port = rest.rpartition(":")
    if proto != "udp" or not port.isdigit():
        return None
    return address, int(port)
