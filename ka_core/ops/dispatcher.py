"""The dispatcher bridge: Kamailio dispatcher's destinations probed by ka-kemi, and
dispatcher's states kept in step with ka-kemi's, so a dispatcher cfg keeps its
``ds_select_dst`` routing and gains ka-kemi's health model.

The pinger reads ``dispatcher.list`` every ``KA_DISPATCHER_SYNC_S``: destinations new there
are added with owner ``dispatcher``, those gone from every group are deleted, and every
entry whose dispatcher state disagrees with ka-kemi's known state is set again (a
``dispatcher.reload`` makes every entry active).  Between syncs each state change is sent at
once.  dispatcher.set_state matches the URI string exactly as its list spells it, so commands
carry that spelling; ka-kemi matches by its canonical key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from ka_core.errors import InvalidArgument, InvalidUri
from ka_core.state import State
from ka_core.uri import lookup_key

OWNER = "dispatcher"
"""The owner of the destinations the bridge adds; it deletes no other owner's."""
DEFAULT_SYNC_S = 30
"""``KA_DISPATCHER_SYNC_S``'s default."""


@dataclass(frozen=True, slots=True)
class DsEntry:
    group: int
    uri: str
    """As dispatcher spells it (what ``dispatcher.set_state`` matches)."""
    key: str
    active: bool
    """dispatcher's flags start with ``A``."""
    probing: bool
    """dispatcher's own probing flag (``P``): its pings would fight ka-kemi's states."""


@dataclass(frozen=True, slots=True)
class SetState:
    letter: str
    """``a`` (active) or ``i`` (inactive)."""
    group: int
    uri: str

    def params(self) -> list[object]:
        return [self.letter, self.group, self.uri]


@dataclass(slots=True)
class SyncPlan:
    adds: list[str] = field(default_factory=list)
    dels: list[str] = field(default_factory=list)
    """Canonical keys of owner ``dispatcher``'s destinations to delete."""
    commands: list[SetState] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def letter_of(state: State) -> str | None:
    """dispatcher's state for ka-kemi's; None: nothing known yet, leave dispatcher's own."""
    if state in (State.UP, State.DEGRADED):
        return "a"
    if state == State.DOWN:
        return "i"
    return None


def parse_list(body: str) -> list[DsEntry]:
    """``dispatcher.list``'s JSON result (jsonrpcs).  Entries whose URI ka-kemi cannot probe
    are left out by ``sync`` with a warning; a body of another shape raises InvalidArgument."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise InvalidArgument(f"dispatcher.list: not JSON: {exc}") from None
    doc = doc.get("result", doc) if isinstance(doc, dict) else doc
    if not isinstance(doc, dict):
        raise InvalidArgument("dispatcher.list: the result is not an object")
    entries: list[DsEntry] = []
    for record in _items(doc.get("RECORDS", []), "RECORDS"):
        ds_set = record.get("SET") if isinstance(record, dict) else None
        if not isinstance(ds_set, dict) or not isinstance(ds_set.get("ID"), int):
            raise InvalidArgument("dispatcher.list: a record without SET.ID")
        for target in _items(ds_set.get("TARGETS", []), "TARGETS"):
            dest = target.get("DEST") if isinstance(target, dict) else None
            if not isinstance(dest, dict) or not isinstance(dest.get("URI"), str):
                raise InvalidArgument("dispatcher.list: a target without DEST.URI")
            flags = str(dest.get("FLAGS", ""))
            entries.append(
                DsEntry(ds_set["ID"], dest["URI"], "", flags[:1] == "A", "P" in flags[1:])
            )
    return entries


def _items(value: object, name: str) -> list[object]:
    """jsonrpcs renders a one-member array of structs as the struct itself."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    raise InvalidArgument(f"dispatcher.list: {name} is neither a list nor an object")


class Bridge:
    """What the bridge knows between syncs: dispatcher's entries by ka-kemi's key."""

    def __init__(self, sync_s: float = DEFAULT_SYNC_S) -> None:
        self.sync_s = sync_s
        self._entries: dict[str, list[DsEntry]] = {}
        self._next_sync = 0.0
        self._warned: set[str] = set()

    def due(self, now: float) -> bool:
        return now >= self._next_sync

    @property
    def next_sync(self) -> float:
        return self._next_sync

    def failed(self, now: float) -> None:
        """dispatcher.list could not be read: try again at the next period."""
        self._next_sync = now + self.sync_s

    def sync(
        self, now: float, listed: Iterable[DsEntry], rows: Iterable[tuple[str, str, int]]
    ) -> SyncPlan:
        """``rows``: (uri, owner, state) of the table's destinations (the store's rows)."""
        self._next_sync = now + self.sync_s
        ours = {lookup_key(uri): State(state) for uri, owner, state in rows if owner == OWNER}
        plan = SyncPlan()
        entries: dict[str, list[DsEntry]] = {}
        for entry in listed:
            try:
                key = lookup_key(entry.uri)
            except InvalidUri as exc:
                self._warn_once(plan, entry.uri, f"dispatcher {entry.uri}: not probed: {exc}")
                continue
            if entry.probing:
                self._warn_once(
                    plan,
                    "probing " + entry.uri,
                    f"dispatcher probes {entry.uri} itself (flag P): its pings override "
                    "ka-kemi's states; set ds_ping_interval 0 or drop flag 8",
                )
            entries.setdefault(key, []).append(
                DsEntry(entry.group, entry.uri, key, entry.active, entry.probing)
            )
        for key, group in entries.items():
            state = ours.get(key)
            if state is None:
                plan.adds.append(group[0].uri)
                continue
            letter = letter_of(state)
            plan.commands += [
                SetState(letter, e.group, e.uri)
                for e in group
                if letter is not None and (letter == "a") != e.active
            ]
        plan.dels = [key for key in ours if key not in entries]
        self._entries = entries
        return plan

    def on_change(self, uri: str, owner: str, new: State) -> list[SetState]:
        """The commands for one of ka-kemi's state changes: only the bridge's own destinations
        (another owner's destination with the same URI has settings of its own)."""
        letter = letter_of(new)
        if letter is None or owner != OWNER:
            return []
        return [SetState(letter, e.group, e.uri) for e in self._entries.get(lookup_key(uri), ())]

    def _warn_once(self, plan: SyncPlan, what: str, text: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            plan.warnings.append(text)
