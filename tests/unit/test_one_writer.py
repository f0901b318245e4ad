"""One writer of state (issue 27): exactly one function stores a destination's state in the
table, and the state diagram in docs/health.md is ``ka_core.state.TRANSITIONS``.

A state write is an assignment to a slot field whose index or offset is named after the
state (``f[_STATE] = ...``, ``buf[off + _STATE_AT] = ...``), or a pack of the state field
(``...pack_into(..., state=...)`` through a layout struct).  Each rule also runs on a
planted second writer, so it cannot pass empty."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ka_core.events import StateChanged
from ka_core.state import TRANSITIONS, Outcome, State
from ka_core.store.table import SharedTable
from ka_core.uri import parse_uri
from tests.unit.test_table import make_table

ROOT = Path(__file__).resolve().parents[2]
STATE_NAME = re.compile(r"^_?(I_)?STATE(_AT)?$")
OUTCOME_WORDS = {"alive": Outcome.OK, "slow": Outcome.SLOW, "failed": Outcome.FAIL}


def _names_state(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and STATE_NAME.match(n.id) for n in ast.walk(node))


def _writes_state(node: ast.AST) -> bool:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
    return any(isinstance(t, ast.Subscript) and _names_state(t.slice) for t in flat)


def state_writers(sources: dict[str, str]) -> set[str]:
    """``module:function`` of every function that writes the state field."""
    found: set[str] = set()
    for module, text in sources.items():
        for fn in ast.walk(ast.parse(text)):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                _writes_state(n) for n in ast.walk(fn)
            ):
                found.add(f"{module}:{fn.name}")
    return found


def product_sources() -> dict[str, str]:
    return {
        str(p.relative_to(ROOT)): p.read_text()
        for top in ("ka_core", "kemi")
        for p in sorted((ROOT / top).rglob("*.py"))
    }


def test_exactly_one_function_writes_a_destinations_state() -> None:
    assert state_writers(product_sources()) == {"ka_core/store/slot_writes.py:store_state"}


def test_a_planted_second_writer_is_found() -> None:
    planted = dict(product_sources())
    planted["kemi/planted.py"] = (
        "def sneaky(buf, off, f):\n    f[_STATE], f[1] = 2, 0\n"
        "def raw(buf, off):\n    buf[off + _STATE_AT] = 1\n"
        "def reads_only(f):\n    return f[_STATE]\n"
    )
    assert state_writers(planted) - state_writers(product_sources()) == {
        "kemi/planted.py:sneaky",
        "kemi/planted.py:raw",
    }


def test_every_state_setter_of_the_table_goes_through_the_one_writer() -> None:
    """set_state, restore_state and record_result keep their names for their callers but
    hold no write of their own (the AST rule above), and reach ``write_state``."""
    calls = {
        name
        for name in ("set_state", "restore_state", "record_result")
        if "write_state" in ast.unparse(ast.parse(_method_source(name)))
    }
    assert calls == {"set_state", "restore_state", "record_result"}


def _method_source(name: str) -> str:
    import inspect
    import textwrap

    return textwrap.dedent(inspect.getsource(getattr(SharedTable, name)))


def docs_diagram() -> dict[tuple[State, Outcome, bool], State]:
    text = (ROOT / "docs" / "health.md").read_text()
    rows = re.findall(r"^\| (\w+) \| (alive|slow|failed) \| (yes|no) \| (\w+) \|$", text, re.M)
    return {
        (State[old], OUTCOME_WORDS[outcome], met == "yes"): State[new]
        for old, outcome, met, new in rows
    }


def test_the_state_diagram_in_the_docs_is_the_transition_table() -> None:
    documented = docs_diagram()
    assert len(documented) == len(State) * len(Outcome) * 2
    assert documented == TRANSITIONS


def _table_with_one() -> tuple[SharedTable, int, int]:
    t = make_table()
    slot, gen = t.insert(
        parse_uri("sip:10.0.0.1"), "gw", interval_ms=30_000, wall=1.0, state_cb="m:cb", user="u"
    )
    return t, slot, gen


def _changes(t: SharedTable) -> int:
    return sum(m[-1] for (m,) in t.rows(["metrics"]))


def test_a_peer_or_derived_state_returns_the_same_event_as_a_probe_and_is_counted() -> None:
    t, slot, gen = _table_with_one()
    assert t.set_state(slot, gen, State.DOWN, 5.0) == StateChanged(
        "sip:10.0.0.1", "gw", State.UNKNOWN, State.DOWN, "m:cb", "u", 0, 0.0
    )
    assert t.set_state(slot, gen, State.DOWN, 6.0) is None, "no change, no event"
    assert _changes(t) == 1
    rec = t.read(slot)
    assert (rec.last_checked, rec.last_down, rec.last_up) == (6.0, 6.0, 0.0)
    probed = t.write_state(
        slot, gen, State.UP, 7.0, code=200, rtt_ms=4.0, probe=(0, 1, False, True, True)
    )
    assert probed == StateChanged("sip:10.0.0.1", "gw", State.DOWN, State.UP, "m:cb", "u", 200, 4.0)
    assert _changes(t) == 2
    assert t.set_state(slot, gen + 1, State.DOWN, 8.0) is None, "stale generation"
    assert t.state_at(slot) is State.UP


def test_a_restored_state_is_written_but_not_counted_as_a_change() -> None:
    t, slot, gen = _table_with_one()
    assert t.restore_state(slot, gen, State.DOWN, 10.0, 8.0, 10.0)
    rec = t.read(slot)
    assert (rec.state, rec.last_checked, rec.last_up, rec.last_down) == (
        State.DOWN,
        10.0,
        8.0,
        10.0,
    )
    assert _changes(t) == 0
    assert not t.restore_state(slot, gen + 1, State.UP, 1.0, 1.0, 1.0)
