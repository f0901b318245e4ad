"""The keepalive DMQ channel's messages: JSON bodies, built here and checked strictly here.

Three kinds, each a JSON object ``{"v": 1, "t": kind, "n": sender, ...}``:

* ``hb`` (heartbeat, broadcast every ``heartbeat_ms``): the sender's set digest, how many
  destinations it has and probes, its probing mode, and the nodes it counts live (``l``: a
  node learns from it whether the others count it in, ``ka_core.cluster.trust``);
* ``set``: destination entries (adds and deletes, each with its time and origin node, for
  the last-writer-wins merge of ``ka_core.cluster.replica``), optionally with the state the
  sender holds; a full dump to one node is a series of these;
* ``st``: states the sender measured (one message per step with changes, plus the periodic
  digest of what it probes), each with the time it was measured.

A body comes from the network, so ``decode`` trusts nothing: size, JSON shape, every type,
every URI (``ka_core.uri``), owner (``registry.check_owner``) and settings text
(``ka_core.settings``).  Anything wrong raises ``BadMessage`` and nothing is applied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ka_core.errors import InvalidArgument, InvalidUri, KaError
from ka_core.settings import parse_settings
from ka_core.state import State
from ka_core.store.registry import check_owner
from ka_core.uri import parse_uri

VERSION = 1
MAX_BODY_BYTES = 65536
MAX_ITEMS = 2000
MAX_LIVE_NODES = 256
CHUNK_BYTES = 16000
"""Messages are cut near this size: well under a UDP datagram, and cheap to parse."""
MAX_TS = 2.0**33
MAX_INTERVAL_MS = 86_400_000
MODES = ("distributed", "all")
_STATES = {int(s) for s in State}


class BadMessage(KaError):
    """A cluster message that is not what this module would have sent."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One destination in the replicated set: present (an add) or a tombstone (a delete)."""

    key: str
    uri: str
    owner: str
    present: bool
    ts: float
    """Wall time of the add or delete; the newer (``ts``, ``origin``) wins."""
    origin: str
    settings: str = ""
    interval_ms: int = 0
    """An interval of its own (API ``ping_interval``); 0 follows ``ping_interval``."""
    state: int = -1
    """The sender's state of it (-1: none sent), measured at ``state_ts``."""
    state_ts: float = 0.0


@dataclass(frozen=True, slots=True)
class StateItem:
    key: str
    uri: str
    owner: str
    state: int
    ts: float


@dataclass(frozen=True, slots=True)
class Heartbeat:
    node: str
    seq: int
    digest: str
    count: int
    probing: int
    mode: str
    live: tuple[str, ...] | None = None
    """The nodes the sender counts live (None: a node too old to say)."""


@dataclass(frozen=True, slots=True)
class SetMessage:
    node: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class StateMessage:
    node: str
    states: tuple[StateItem, ...]


Message = Heartbeat | SetMessage | StateMessage


def node_id(text: object) -> str:
    """The canonical ``host:port`` of a node (dmq's ``server_address`` without ``sip:``)."""
    try:
        uri = parse_uri(f"sip:{text}" if isinstance(text, str) and "sip:" not in text else text)
    except InvalidUri as exc:
        raise BadMessage(f"bad node {text!r}: {exc}") from None
    if uri.user or uri.transport or uri.scheme != "sip":
        raise BadMessage(f"bad node {text!r}: only sip:host:port")
    return f"{uri.host}:{uri.port}"


def node_host(node: str) -> str:
    """The address part of a node id, as ``$si`` shows it (no IPv6 brackets)."""
    return node.rpartition(":")[0].strip("[]")


# -- encoding ---------------------------------------------------------------------------------


def _dump(kind: str, node: str, **fields: object) -> bytes:
    body = {"v": VERSION, "t": kind, "n": node, **fields}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()


def encode_heartbeat(hb: Heartbeat) -> bytes:
    live = {} if hb.live is None else {"l": list(hb.live)}
    return _dump(
        "hb", hb.node, q=hb.seq, h=hb.digest, c=hb.count, p=hb.probing, m=hb.mode, **live
    )  # fmt: skip


def _entry_row(e: Entry) -> list[object]:
    row: list[object] = [e.uri, e.owner, int(e.present), e.ts, e.origin, e.settings, e.interval_ms]
    if e.state >= 0:
        row += [e.state, e.state_ts]
    return row


def _chunks(kind: str, field: str, node: str, rows: Iterator[list[object]]) -> Iterator[bytes]:
    batch: list[list[object]] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += len(json.dumps(row)) + 1
        if size >= CHUNK_BYTES or len(batch) >= MAX_ITEMS:
            yield _dump(kind, node, **{field: batch})
            batch, size = [], 0
    if batch:
        yield _dump(kind, node, **{field: batch})


def encode_entries(node: str, entries: Sequence[Entry]) -> list[bytes]:
    """``set`` messages holding ``entries``, each under ``CHUNK_BYTES`` or so."""
    return list(_chunks("set", "e", node, (_entry_row(e) for e in entries)))


def encode_states(node: str, states: Sequence[StateItem]) -> list[bytes]:
    rows = ([s.uri, s.owner, s.state, s.ts] for s in states)
    return list(_chunks("st", "s", node, rows))


# -- decoding ---------------------------------------------------------------------------------


def decode(body: bytes) -> Message:
    """Parse and check a body; raises ``BadMessage`` naming the first problem."""
    if len(body) > MAX_BODY_BYTES:
        raise BadMessage(f"body of {len(body)} bytes (at most {MAX_BODY_BYTES})")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadMessage("body is not UTF-8 JSON") from None
    if not isinstance(doc, dict):
        raise BadMessage("body is not a JSON object")
    if doc.get("v") != VERSION or type(doc.get("v")) is not int:
        raise BadMessage(f"unknown version {doc.get('v')!r}")
    kind, node = doc.get("t"), node_id(doc.get("n"))
    if kind == "hb":
        _only(doc, {"v", "t", "n", "q", "h", "c", "p", "m", "l"})
        digest = doc.get("h")
        if not isinstance(digest, str) or len(digest) != 16 or not _is_hex(digest):
            raise BadMessage("bad digest")
        mode = doc.get("m")
        if mode not in MODES:
            raise BadMessage(f"bad mode {mode!r}")
        return Heartbeat(
            node, _count(doc.get("q"), "seq"), digest, _count(doc.get("c"), "count"),
            _count(doc.get("p"), "probing"), str(mode), _live(doc.get("l")),
        )  # fmt: skip
    if kind == "set":
        _only(doc, {"v", "t", "n", "e"})
        return SetMessage(node, tuple(_entry(row) for row in _rows(doc.get("e"))))
    if kind == "st":
        _only(doc, {"v", "t", "n", "s"})
        return StateMessage(node, tuple(_state_item(row) for row in _rows(doc.get("s"))))
    raise BadMessage(f"unknown message type {kind!r}")


def _live(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_LIVE_NODES:
        raise BadMessage(f"live nodes must be a list of at most {MAX_LIVE_NODES}")
    return tuple(node_id(n) for n in value)


def _only(doc: dict[str, object], allowed: set[str]) -> None:
    extra = set(doc) - allowed
    if extra:
        raise BadMessage(f"unexpected fields {sorted(extra)!r}")


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _count(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise BadMessage(f"bad {what} {value!r}")
    return value


def _ts(value: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value < MAX_TS:  # type: ignore[operator, arg-type]
        raise BadMessage(f"bad time {value!r}")
    return float(value)  # type: ignore[arg-type]


def _rows(value: object) -> list[list[object]]:
    if not isinstance(value, list) or not value or len(value) > MAX_ITEMS:
        raise BadMessage(f"expected a list of 1 to {MAX_ITEMS} items")
    if not all(isinstance(row, list) for row in value):
        raise BadMessage("items must be lists")
    return value


def _destination(uri: object, owner: object) -> tuple[str, str, str]:
    try:
        parsed = parse_uri(uri)
        return parsed.key, parsed.display, check_owner(owner)
    except (InvalidUri, InvalidArgument) as exc:
        raise BadMessage(f"bad destination: {exc}") from None


def _state(value: object) -> int:
    if type(value) is not int or value not in _STATES:
        raise BadMessage(f"bad state {value!r}")
    return value


def _entry(row: list[object]) -> Entry:
    if len(row) not in (7, 9):
        raise BadMessage("an entry has 7 or 9 fields")
    uri, owner, present, ts, origin, settings, interval = row[:7]
    key, display, owner_text = _destination(uri, owner)
    if present not in (0, 1) or type(present) is not int:
        raise BadMessage(f"bad present flag {present!r}")
    if not isinstance(settings, str):
        raise BadMessage("settings must be a string")
    try:
        canonical = parse_settings(settings).text
    except InvalidArgument as exc:
        raise BadMessage(f"bad settings: {exc}") from None
    if type(interval) is not int or not (interval == 0 or 100 <= interval <= MAX_INTERVAL_MS):
        raise BadMessage(f"bad interval {interval!r}")
    state, state_ts = (_state(row[7]), _ts(row[8])) if len(row) == 9 else (-1, 0.0)
    return Entry(
        key, display, owner_text, bool(present), _ts(ts), node_id(origin), canonical,
        interval, state, state_ts,
    )  # fmt: skip


def _state_item(row: list[object]) -> StateItem:
    if len(row) != 4:
        raise BadMessage("a state item has 4 fields")
    key, display, owner_text = _destination(row[0], row[1])
    return StateItem(key, display, owner_text, _state(row[2]), _ts(row[3]))
