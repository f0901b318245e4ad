"""A native kamailio.cfg's view of ka-kemi (``kemi/native.py``): the one argument string of
``python_exec``, the ``$var(ka_*)`` an event route reads, and evrexec's answers.

``python_exec("name", "arg")`` gives each method one string; ``split_words`` cuts it into the
KEMI function's arguments or says, in one line, how the call is written.  A state change
sets ``event_vars(event)`` and runs its route with ``evrexec_request``; a refusal from
evrexec is told once per route (``evrexec_refusal``).
"""

from __future__ import annotations

import json

from ka_core.errors import InvalidArgument
from ka_core.script.callbacks import DestinationEvent

EVENT_METHOD = "deliver_event"
"""The handler method the pinger's ``EventSink`` calls on each state change."""
EVENT_VARS = ("uri", "owner", "old_state", "new_state", "code", "rtt_ms")
"""``$var(ka_<name>)`` set before each event route runs."""
USAGES = {
    "ka_is_alive": ("<uri>", 1, 1),
    "ka_add_destination": ("<uri> <owner> [<settings>]", 2, 3),
    "ka_del_destination": ("<uri> <owner>", 2, 2),
    "ka_report": ("<uri> <code> [<owner>|* [<retry-after>]]", 2, 4),
    "ka_select": ("<group> [<alg> [<pv without $> [<skip_degraded>]]]", 1, 4),
    "ka_next": ("", 0, 0),
    "tcp_keepalive_enable": ("[<conid>] <idle> <count> <interval>", 3, 4),
    "tcp_keepalive_disable": ("[<conid>]", 0, 1),
}
"""Per method: how its argument string is written, and the least and most words."""


def split_words(name: str, arg: object) -> list[str]:
    """``arg`` split on white space (no argument: no words).

    Raises:
        InvalidArgument: the count of words is off for ``name``; the text says the usage.
    """
    usage, least, most = USAGES[name]
    words = arg.split() if isinstance(arg, str) else []
    if least <= len(words) <= most:
        return words
    raise InvalidArgument(f'{name}: use python_exec("{name}", "{usage}"), not {arg!r}')


def report_args(words: list[str]) -> list[str]:
    """``ka_report``'s words as the KEMI function's arguments: ``*`` (any owner, written so a
    Retry-After can follow) is the empty owner."""
    return [("" if at == 2 and word == "*" else word) for at, word in enumerate(words)]


def select_args(words: list[str]) -> list[str]:
    """``ka_select``'s words as the KEMI function's arguments: the variable is written
    without its ``$`` (``du``, ``var(gw)``), since python_exec expands ``$`` names in its
    argument string; one written with it is taken as it is."""
    return [("$" + word if at == 2 and not word.startswith("$") else word)
            for at, word in enumerate(words)]  # fmt: skip


def callback_refusal(event_callback: str) -> str | None:
    """Why ``KA_EVENT_CALLBACK`` stops a native cfg at start-up, or None when it is unset."""
    if not event_callback:
        return None
    return (
        f"cannot start: KA_EVENT_CALLBACK {event_callback!r} has no use in a native cfg: "
        "state changes go to event_route[keepalive:dst-up|dst-down|dst-degraded]"
    )


def is_ka_path(path: str, rpc_path: str, metrics_path: str) -> bool:
    """Whether an xhttp request's path is ka-kemi's (JSON-RPC, or metrics when enabled)."""
    return path in (rpc_path, metrics_path or None)


def event_vars(event: DestinationEvent) -> list[tuple[str, int | str]]:
    """``$var`` names and values for an event route (ints stay ints, the RTT is rounded)."""
    values = (event.uri, event.owner, event.old_state, event.new_state, event.code)
    return [
        (f"ka_{name}", value if isinstance(value, int) else str(value))
        for name, value in zip(EVENT_VARS, (*values, round(event.rtt_ms)), strict=True)
    ]


def evrexec_request(evname: str, uri: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": "evrexec.run", "params": [evname, uri]})


def evrexec_refusal(evname: str, body: object) -> tuple[bool, str]:
    """(is an error, text) for an evrexec answer other than 200: the module missing is an
    error, a cfg without that route only an info."""
    if "Method Not Found" in str(body):
        return True, f"evrexec.so is not loaded: state changes cannot reach event_route[{evname}]"
    return False, f"no event_route[{evname}] in the cfg: those changes are only logged"
