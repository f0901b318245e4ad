"""The ``keepalive.*`` RPC commands as plain data, with the C module's field names and texts.

Codecs (BINRPC for kamcmd, JSON-RPC for HTTP) turn the returned values into bytes.  A reply is
a list of top-level values: a ``dict`` is a struct (kamcmd prints ``{ name: value }``), a
``str`` a line of text.  Errors are ``RpcFault(code, text)``; kamcmd prints
``error: <code> - <text>``.

Deliberate differences from C 5.6.3, each documented in docs/differences.md:
``last up``/``last down`` are no longer swapped; URIs are validated (``invalid destination``);
lookups match the canonical URI; ``keepalive.info``, ``keepalive.pause``, ``keepalive.resume``,
``keepalive.interval`` and ``keepalive.version`` are new; ``keepalive.add`` takes optional settings.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from ka_core.errors import (
    DuplicateDestination,
    InvalidArgument,
    InvalidUri,
    RpcFault,
    StringPoolFull,
    TableFull,
    UnknownDestination,
)
from ka_core.settings import MAX_INTERVAL_S, public_settings
from ka_core.store import registry
from ka_core.store.layout import EJECTED_BY_RETRY_AFTER, FLAG_EJECTED, FLAG_PAUSED, FLAG_STOPPED
from ka_core.store.table import SharedTable
from ka_core.version import __version__

RpcValue = int | str | float | dict[str, object] | list[object]

WRONG_FORMAT = "Not enough parameters or wrong format"
NOT_LISTED = "couldn't get data from list"
RATE_LIMITED = 429

METHODS = (
    "keepalive.list",
    "keepalive.add",
    "keepalive.del",
    "keepalive.get",
    "keepalive.flush",
    "keepalive.info",
    "keepalive.pause",
    "keepalive.resume",
    "keepalive.interval",
    "keepalive.cluster",
    "keepalive.version",
)


def ctime(wall: float, newline: bool = True) -> str:
    """``ctime_r()`` text as C prints it, trailing newline included (BINRPC)."""
    return _ctime(int(wall), newline)


@functools.lru_cache(maxsize=4096)
def _ctime(second: int, newline: bool) -> str:
    """Cached per second: a listing of 10,000 destinations has only a few distinct times."""
    return time.ctime(second) + "\n" if newline else time.ctime(second)


class Listed(NamedTuple):
    """What ``keepalive.list`` and ``keepalive.get`` show of a destination (``state`` as
    the raw table value); built from ``SharedTable.rows(LIST_FIELDS)``."""

    slot: int
    added: float
    uri: str
    owner: str
    state: int
    last_checked: float
    last_up: float
    last_down: float


LIST_FIELDS = Listed._fields
INFO_FIELDS = (
    "slot", "added", "uri", "owner", "state", "flags", "failures", "successes", "interval_ms",
    "settings", "pings", "replies", "timeouts", "last_code", "rtt_ms", "rtt_sum", "rtt_ewma",
    "rtt_max", "last_checked", "last_up", "last_down", "next_ping", "ejections", "out_until",
)  # fmt: skip
"""What ``keepalive.info`` reads of a destination, in ``info_struct``'s order."""


def list_struct(rec: Listed) -> dict[str, object]:
    return {
        "uri": rec.uri,
        "owner": rec.owner,
        "last checked": ctime(rec.last_checked),
        "last up": ctime(rec.last_up),
        "last down": ctime(rec.last_down),
        "state": int(rec.state),
    }


def info_struct(row: Sequence[Any]) -> dict[str, object]:
    """Everything ``keepalive.list`` cannot show without changing its text, from a row of
    ``INFO_FIELDS``."""
    (_, added, uri, owner, state, flags, failures, successes, interval_ms, settings, pings,
     replies, timeouts, last_code, rtt_ms, rtt_sum, rtt_ewma, rtt_max, last_checked, last_up,
     last_down, next_ping, ejections, out_until) = row  # fmt: skip
    probing = "stopped" if flags & FLAG_STOPPED else "paused" if flags & FLAG_PAUSED else "active"
    return {
        "uri": uri,
        "owner": owner,
        "state": int(state),
        "probing": probing,
        "consecutive failures": failures,
        "consecutive successes": successes,
        "ping interval ms": interval_ms,
        "settings": public_settings(settings),
        "pings sent": pings,
        "replies": replies,
        "timeouts": timeouts,
        "last code": last_code,
        "last rtt ms": round(rtt_ms, 3),
        "avg rtt ms": round(rtt_sum / replies if replies else 0.0, 3),
        "ewma rtt ms": round(rtt_ewma, 3),
        "max rtt ms": round(rtt_max, 3),
        "last checked": ctime(last_checked),
        "last up": ctime(last_up),
        "last down": ctime(last_down),
        "next ping": ctime(next_ping) if next_ping else "-\n",
        "added": ctime(added),
        **passive_fields(flags, ejections, out_until),
    }


def passive_fields(flags: int, ejections: int, out_until: float) -> dict[str, object]:
    """Passive health, once it ever held the destination out: why the state is what it is
    (``traffic`` while ejected, ``retry-after`` while a Retry-After holds it, else
    ``probe``), how often it was ejected, and until when it is out."""
    ejected, count = bool(flags & FLAG_EJECTED), ejections & ~EJECTED_BY_RETRY_AFTER
    if not (count or ejected):
        return {}
    cause = "retry-after" if ejections & EJECTED_BY_RETRY_AFTER else "traffic"
    return {
        "cause": cause if ejected else "probe",
        "ejections": count,
        "ejected until": ctime(out_until) if ejected else "-\n",
    }


def newest_first(rows: Iterable[Sequence[Any]]) -> list[Any]:
    """C prepends new destinations to its list; keep that order (rows start with slot,
    added)."""
    return sorted(rows, key=lambda r: (r[1], r[0]), reverse=True)


class RpcCommands:
    """Dispatch ``keepalive.*`` commands against the shared table."""

    def __init__(
        self,
        table: SharedTable,
        clock: Callable[[], float],
        *,
        add_rate: int = 0,
        on_added: Callable[[], None] = lambda: None,
        resolve_names: bool = False,
        cluster_status: Callable[[Sequence[object]], list[RpcValue]] | None = None,
    ):
        """``on_added`` runs after each successful add (the glue wakes the pinger there);
        ``resolve_names``: ``KA_DNS`` is on (``registry.add``)."""
        self._table = table
        self._resolve_names = resolve_names
        self._clock = clock
        self._add_rate = add_rate
        self._on_added = on_added
        self._listed: tuple[int, list[int]] | None = None
        self._handlers: dict[str, Callable[[Sequence[object]], list[RpcValue]]] = {
            "keepalive.list": self._list,
            "keepalive.add": self._add,
            "keepalive.del": self._del,
            "keepalive.get": self._get,
            "keepalive.flush": self._flush,
            "keepalive.info": self._info,
            "keepalive.pause": functools.partial(self._pause, True),
            "keepalive.resume": functools.partial(self._pause, False),
            "keepalive.interval": self._interval,
            "keepalive.cluster": cluster_status or _cluster_off,
            "keepalive.version": _version,
        }

    def handles(self, method: str) -> bool:
        return method in self._handlers

    def call(self, method: str, params: Sequence[object]) -> list[RpcValue]:
        handler = self._handlers.get(method)
        if handler is None:
            raise RpcFault(500, f"command {method} not found")
        return handler(params)

    def list_rows(self, params: Sequence[object]) -> list[Listed]:
        """What ``keepalive.list`` shows, newest first, paged by ints ``[offset [count]]``
        (C ignores parameters)."""
        ints = [p for p in params[:2] if isinstance(p, int) and not isinstance(p, bool)]
        if not (len(ints) == len(params[:2]) and ints):
            return [Listed._make(r) for r in newest_first(self._table.rows(LIST_FIELDS))]
        offset = max(ints[0], 0)
        order = self._order()
        count = ints[1] if len(ints) > 1 else len(order)
        page = order[offset : offset + max(count, 0)]
        return [Listed._make(r) for r in self._table.rows(LIST_FIELDS, page)]

    def _order(self) -> list[int]:
        """The slots newest first, kept until a destination is added or deleted: a page
        then reads only its own records (100 of 100,000: milliseconds, not a full scan)."""
        membership = self._table.header.membership
        if self._listed is None or self._listed[0] != membership:
            self._listed = (membership, self._table.newest_slots())
        return self._listed[1]

    def _list(self, params: Sequence[object]) -> list[RpcValue]:
        return [list_struct(r) for r in self.list_rows(params)]

    def _info(self, params: Sequence[object]) -> list[RpcValue]:
        if params:
            uri, owner = _two_strings(params)
            return [info_struct(self._lookup(uri, owner, INFO_FIELDS))]
        return [info_struct(r) for r in newest_first(self._table.rows(INFO_FIELDS))]

    def _add(self, params: Sequence[object]) -> list[RpcValue]:
        if not self._table.add_bucket.take(self._clock(), self._add_rate):
            raise RpcFault(
                RATE_LIMITED,
                f"too many keepalive.add requests: the limit is {self._add_rate} per second "
                "(rpc_add_rate), try again later",
            )
        uri, owner = _two_strings(params)
        settings = params[2] if len(params) > 2 else ""
        try:
            registry.add(
                self._table, uri, owner, interval_s=None, wall=self._clock(), settings=settings,
                resolve_names=self._resolve_names,
            )  # fmt: skip
        except StringPoolFull as exc:
            raise RpcFault(500, f"couldn't add data to list: {exc}") from None
        except (DuplicateDestination, TableFull):
            raise RpcFault(500, "couldn't add data to list") from None
        except (InvalidUri, InvalidArgument) as exc:
            raise RpcFault(500, f"invalid destination: {exc}") from None
        self._on_added()
        return ["Ok. Destination added."]

    def _del(self, params: Sequence[object]) -> list[RpcValue]:
        uri, owner = _two_strings(params)
        try:
            registry.remove(self._table, uri, owner)
        except (UnknownDestination, InvalidUri, InvalidArgument):
            raise RpcFault(500, "couldn't delete data from list") from None
        return ["Ok. Destination removed."]

    def _get(self, params: Sequence[object]) -> list[RpcValue]:
        uri, owner = _two_strings(params)
        fields = ("uri", "owner", "state", "flags", "ejections", "out_until")
        uri, owner, state, *passive = self._lookup(uri, owner, fields)
        shown = {"uri": uri, "owner": owner, "state": int(state)}
        cause = passive_fields(*passive).get("cause")  # only while held out
        return [shown if cause in (None, "probe") else {**shown, "cause": cause}]

    def _pause(self, paused: bool, params: Sequence[object]) -> list[RpcValue]:
        """No parameters: all probing (the state of every destination stays as it was);
        ``uri owner``: one destination."""
        word = "paused" if paused else "resumed"
        if not params:
            self._table.header.pause_all(paused)
            return [f"Ok. Probing {word}."]
        uri, owner = _two_strings(params)
        slot, gen, uri, owner = self._lookup(uri, owner, ("slot", "gen", "uri", "owner"))
        if not self._table.pause_slot(slot, gen, paused):
            raise RpcFault(500, NOT_LISTED)
        return [f"Ok. Probing of {uri} owner {owner} {word}."]

    def _interval(self, params: Sequence[object]) -> list[RpcValue]:
        """No parameter: the current ``ping_interval``; seconds: set it for every
        destination without an interval of its own, from its next ping on."""
        if not params:
            header = self._table.header
            return [{"ping_interval": header.ping_interval, "paused": int(header.paused)}]
        value = params[0]
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            value = 0
        if not 1 <= value <= MAX_INTERVAL_S:
            raise RpcFault(
                500, f"ping interval must be an integer number of seconds in [1, {MAX_INTERVAL_S}]"
            )
        changed = self._table.set_ping_interval(value)
        return [f"Ok. ping_interval is {value} s for {changed} destinations."]

    def _flush(self, params: Sequence[object]) -> list[RpcValue]:
        self._table.flush()
        return ["Ok. Destination list flushed."]

    def _lookup(self, uri: str, owner: str, fields: Sequence[str]) -> tuple[Any, ...]:
        """``fields`` of the destination (uri, owner), or the C module's fault."""
        try:
            slot = registry.find(self._table, uri, owner)
        except (InvalidUri, InvalidArgument):
            raise RpcFault(500, NOT_LISTED) from None
        rows = self._table.rows(fields, [slot]) if slot >= 0 else []
        if not rows:
            raise RpcFault(500, NOT_LISTED)
        return rows[0]


def _version(params: Sequence[object]) -> list[RpcValue]:
    """One line, as ``core.version`` prints Kamailio's; parameters are ignored, as there."""
    return [f"ka-kemi {__version__}"]


def _cluster_off(params: Sequence[object]) -> list[RpcValue]:
    raise RpcFault(500, "cluster mode is off (KA_CLUSTER)")


def _two_strings(params: Sequence[object]) -> tuple[str, str]:
    """C scans ``"SS"``: two strings, extra parameters ignored."""
    if len(params) < 2 or not all(isinstance(p, str) for p in params[:2]):
        raise RpcFault(500, WRONG_FORMAT)
    return str(params[0]), str(params[1])
