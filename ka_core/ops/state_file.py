"""The state file (``KA_STATE_FILE``): the destination table as versioned JSON, so runtime
destinations and every destination's last state survive a restart.

Pure: ``encode`` turns rows into bytes and ``decode`` bytes into rows, refusing anything it
does not fully understand with a ``StateFileError`` that names the problem (a half-trusted
file must never half-restore).  Reading, writing and deciding what to restore are the glue's
(``kemi.persistence``); ``from_rows`` shapes the table's rows (``SharedTable.rows``).

One destination per line: each is encoded by its own small ``json.dumps`` call, so the
pinger's core thread gets the GIL between them (one call for 10,000 holds it ~50 ms), and an
operator can read and diff the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ka_core.errors import KaError
from ka_core.settings import public_settings
from ka_core.state import State
from ka_core.store.layout import FLAG_OWN_INTERVAL, FLAG_PAUSED, FLAG_TARGET

FORMAT = "ka-kemi-state"
VERSION = 1
MAX_INTERVAL_MS = 86_400_000


WRITER_SHARE = 5
"""After a round of the writer thread that took T seconds, it waits at least
``(WRITER_SHARE - 1) * T``: it holds the GIL the pinger's core thread needs for at most a
fifth of the time (a snapshot of 100,000 destinations takes ~1.6 s, of 1,000,000 ~17 s;
written back to back, as the first round's state changes made them, they halved the core
thread)."""


def next_round_s(spent_s: float, period_s: float) -> float:
    """How long the writer thread waits after a round that took ``spent_s``."""
    return max(period_s, (WRITER_SHARE - 1) * spent_s)


class StateFileError(KaError):
    """The file is not a state file this version can restore from (says why)."""


class Saved(NamedTuple):
    """One destination as the state file keeps it (field names are the JSON keys); a
    NamedTuple, since a restore builds one per destination (a frozen dataclass cost 3 µs)."""

    uri: str
    owner: str
    settings: str
    """Canonical settings text (``ka_core.settings``)."""
    interval_ms: int
    own_interval: bool
    """``layout.FLAG_OWN_INTERVAL``: not following ``ping_interval``."""
    paused: bool
    state: State
    last_checked: float
    last_up: float
    last_down: float
    state_cb: str
    response_cb: str
    user: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    written: float
    """Wall-clock time of the write."""
    destinations: tuple[Saved, ...]


ROW_FIELDS = (
    "uri", "owner", "settings", "interval_ms", "flags", "state", "last_checked", "last_up",
    "last_down", "state_cb", "response_cb", "user",
)  # fmt: skip
"""What the state file asks the table for (``SharedTable.rows``)."""


def from_rows(rows: Iterable[Sequence[Any]]) -> list[Saved]:
    """Table rows of ``ROW_FIELDS`` as the file keeps them, but the targets ``KA_DNS``
    resolved (resolved again at start-up) and passwords (``auth_password``: such a
    destination is not restored, and the log says so)."""
    return [
        Saved(uri, owner, public_settings(settings), interval_ms, bool(flags & FLAG_OWN_INTERVAL),
              bool(flags & FLAG_PAUSED), State(state), checked, up, down, state_cb,
              response_cb, user)
        for (uri, owner, settings, interval_ms, flags, state, checked, up, down, state_cb,
             response_cb, user) in rows
        if not flags & FLAG_TARGET
    ]  # fmt: skip


_KEYS = Saved._fields
_STRINGS = ("uri", "owner", "settings", "state_cb", "response_cb", "user")
_FLAGS = ("own_interval", "paused")
_TIMES = ("last_checked", "last_up", "last_down")
_TOP = ("format", "version", "written", "destinations")


def _row(dest: Saved) -> str:
    values = dict(zip(_KEYS, dest, strict=True))
    values["state"] = int(dest.state)
    return json.dumps(values, allow_nan=False)


def encode(destinations: Iterable[Saved], written: float) -> bytes:
    """The file's bytes: a header, then one destination per line (ASCII JSON)."""
    head = json.dumps({"format": FORMAT, "version": VERSION, "written": written})[:-1]
    rows = ",\n".join(_row(d) for d in destinations)
    return f'{head}, "destinations": [\n{rows}\n]}}\n'.encode("ascii")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # built in C; a key given twice leaves fewer entries than pairs
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StateFileError(f"key {key!r} given twice")
            seen.add(key)
    return out


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


_KEY_SET = frozenset(_KEYS)
_STATES = {int(s): s for s in State}


def _destination(number: int, item: object) -> Saved:
    if isinstance(item, dict) and tuple(item) == _KEYS:  # as this module writes it
        uri, owner, settings, interval, own, paused, state, checked, up, down, s_cb, r_cb, user = (
            item.values()
        )
        if (
            type(uri) is str and type(owner) is str and type(settings) is str
            and type(s_cb) is str and type(r_cb) is str and type(user) is str
            and type(own) is bool and type(paused) is bool
            and type(interval) is int and 1 <= interval <= MAX_INTERVAL_MS
            and type(state) is int and state in _STATES
            and _number(checked) and _number(up) and _number(down)
        ):  # fmt: skip
            return Saved(uri, owner, settings, interval, own, paused, _STATES[state],
                         float(checked), float(up), float(down), s_cb, r_cb, user)  # fmt: skip
    return _checked(number, item)


def _checked(number: int, item: object) -> Saved:
    """The slow path: any order of keys, and the first problem named."""
    where = f"destination {number}"
    if not isinstance(item, dict):
        raise StateFileError(f"{where}: not an object")
    if item.keys() != _KEY_SET:
        missing = [k for k in _KEYS if k not in item]
        unknown = sorted(set(item) - _KEY_SET)
        raise StateFileError(f"{where}: missing {missing}, unknown {unknown}")
    for key in _STRINGS:
        if not isinstance(item[key], str):
            raise StateFileError(f"{where}: {key} is not a string")
    for key in _FLAGS:
        if not isinstance(item[key], bool):
            raise StateFileError(f"{where}: {key} is not true/false")
    for key in _TIMES:
        if not _number(item[key]):
            raise StateFileError(f"{where}: {key} is not a time (a number >= 0)")
    interval, state = item["interval_ms"], item["state"]
    if not _integer(interval) or not 1 <= interval <= MAX_INTERVAL_MS:
        raise StateFileError(f"{where}: interval_ms {interval!r} not in [1, {MAX_INTERVAL_MS}]")
    if not _integer(state) or state not in _STATES:
        raise StateFileError(f"{where}: state {state!r} is not 0-3")
    return Saved(
        item["uri"], item["owner"], item["settings"], interval, item["own_interval"],
        item["paused"], _STATES[state], float(item["last_checked"]), float(item["last_up"]),
        float(item["last_down"]), item["state_cb"], item["response_cb"], item["user"],
    )  # fmt: skip


def decode(data: bytes) -> Snapshot:
    """Parse and check a whole file; raises ``StateFileError`` on the first problem."""
    if not data.strip():
        raise StateFileError("empty file")
    try:
        top = json.loads(data.decode("utf-8"), object_pairs_hook=_unique)
    except UnicodeDecodeError:
        raise StateFileError("not UTF-8 text") from None
    except RecursionError:
        raise StateFileError("not a state file: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, too many digits
        raise StateFileError(f"not valid JSON ({exc})") from None
    if not isinstance(top, dict) or top.get("format") != FORMAT:
        raise StateFileError(f'not a state file (no "format": "{FORMAT}")')
    version = top.get("version")
    if not _integer(version) or version != VERSION:
        raise StateFileError(f"version {version!r} not supported (this ka-kemi reads {VERSION})")
    unknown = sorted(set(top) - set(_TOP))
    if unknown:
        raise StateFileError(f"unknown keys {unknown}")
    if not _number(top.get("written")):
        raise StateFileError("written is not a time (a number >= 0)")
    items = top.get("destinations")
    if not isinstance(items, list):
        raise StateFileError("destinations is not a list")
    dests = tuple(_destination(n, item) for n, item in enumerate(items, 1))
    return Snapshot(float(top["written"]), dests)
