"""Call sites of the C module's functions in a native cfg line, rewritten to ka-kemi's
``python_exec`` wrappers (``kemi/native.py``); part of ``ka_core.config.migrate``.

``ka_is_alive("x")`` becomes ``python_exec("ka_is_alive", "x")``: the wrapper returns the
C codes, so a statement or a truth test (``if (ka_is_alive("x"))``, ``!``) keeps its meaning.
A comparison (``ka_is_alive("x") == 1``) does not: a call inside a native expression is only
true or false, so C's ``== 1`` also held for DOWN and ``== 2`` never held.  On a line that
starts an ``if``, the call moves in front of it, its ``$rc`` is saved in ``$var(ka_rcN)`` and
the comparison reads that (now exact).  Anything else (``else if``, ``while``, the call as a
value in an assignment or arithmetic, an argument
that is not one string or pv, a value with white space) is left as it was, with a warning:
Kamailio then refuses to start on the unknown C function, so nothing goes by unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FUNCTIONS = {"ka_is_alive": 1, "ka_add_destination": 2, "ka_del_destination": 2}
"""C function -> number of arguments (the ``python_exec`` method has the same name)."""
_CALL = re.compile(r"\b(ka_is_alive|ka_add_destination|ka_del_destination)\s*\(")
_COMPARE_AFTER = re.compile(r"\s*(==|!=|<=|>=|<|>)\s*(-?\d+)")
_COMPARE_BEFORE = re.compile(r"(==|!=|<=|>=|<|>)\s*$")
_PV = re.compile(r"\$[A-Za-z_][\w.]*(\([^()\s]*\))?")
_IF_START = re.compile(r"\s*if\s*\(")
_VALUE_BEFORE = re.compile(r"(?:[-+*/%^]|(?<![&|])[&|]|(?<![=!<>])=)\s*$")
_VALUE_AFTER = re.compile(r"\s*(?:[-+*/%^]|[&|](?![&|]))")
"""An assignment or arithmetic around the call: it wants C's number, a wrapper gives a truth."""


@dataclass(slots=True)
class LineResult:
    code: str
    """The line's code part, rewritten."""
    before: list[str] = field(default_factory=list)
    """Statements to put in front of the line (the hoisted calls)."""
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def split_args(text: str, start: int) -> tuple[list[str], int] | None:
    """The raw arguments of a call whose ``(`` is just before ``start``, and the index after
    its ``)``; None when the parentheses do not close on this line."""
    args, current, depth, quote, i = [], "", 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            current += ch
            if ch == "\\" and i + 1 < len(text):
                current += text[i + 1]
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote, current = ch, current + ch
        elif ch == "(":
            depth, current = depth + 1, current + ch
        elif ch == ")" and depth:
            depth, current = depth - 1, current + ch
        elif ch == ")":
            args.append(current.strip())
            return ([] if args == [""] else args), i + 1
        elif ch == "," and not depth:
            args.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    return None


def arg_text(raw: str) -> str | None:
    """What goes into the ``python_exec`` string for one C argument: a quoted string's
    content or a bare pv; None for anything else (a define name, an expression)."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        inner = raw[1:-1]
        return None if ("\\" in inner or '"' in inner) else inner
    return raw if _PV.fullmatch(raw) else None


def wrapper_call(name: str, args: list[str]) -> str | None:
    """``python_exec("name", "a b")``, or None when the arguments cannot be carried over."""
    if len(args) != FUNCTIONS[name]:
        return None
    texts = [arg_text(a) for a in args]
    if any(t is None or not t.strip() or re.search(r"\s", t) for t in texts):
        return None
    return f'python_exec("{name}", "{" ".join(t for t in texts if t is not None)}")'


def rewrite_line(code: str, lineno: int, counter: list[int]) -> LineResult:
    """Rewrite every C call in ``code`` (one line, comments removed).  ``counter`` numbers the
    ``$var(ka_rcN)`` across the file."""
    result = LineResult(code)
    pos = 0
    while (m := _CALL.search(result.code, pos)) is not None:
        name, text = m.group(1), result.code
        parsed = split_args(text, m.end())
        call = None if parsed is None else wrapper_call(name, parsed[0])
        if parsed is None or call is None:
            result.warnings.append(
                f"line {lineno}: {name}(...) left as it was: its arguments are not "
                f"{FUNCTIONS[name]} string(s) or pv(s) without spaces; rewrite it by hand"
            )
            pos = m.end()
            continue
        end = parsed[1]
        after = _COMPARE_AFTER.match(text, end)
        compared = after is not None or _COMPARE_BEFORE.search(text[: m.start()]) is not None
        if not compared and (
            _VALUE_BEFORE.search(text[: m.start()]) is not None
            or _VALUE_AFTER.match(text, end) is not None
        ):
            result.warnings.append(
                f"line {lineno}: {name}(...) used as a value (assigned or in arithmetic): left "
                f"as it was; call {call} before it and use $rc (docs/native.md)"
            )
            pos = end
            continue
        if not compared:
            result.code = text[: m.start()] + call + text[end:]
            result.changes.append(f"line {lineno}: {name}(...) -> {call}")
            pos = m.start() + len(call)
            continue
        if after is None or not _IF_START.match(text):
            result.warnings.append(
                f"line {lineno}: {name}(...) compared outside a plain 'if (' line: left as it "
                f"was; call {call} before it and compare $rc (docs/native.md)"
            )
            pos = end
            continue
        counter[0] += 1
        var = f"$var(ka_rc{counter[0]})"
        result.before.append(f"{call}; {var} = $rc;")
        result.code = text[: m.start()] + var + text[end:]
        result.changes.append(
            f"line {lineno}: {name}(...) {after.group(1)} {after.group(2)} -> {call} before "
            f"the if, then {var} {after.group(1)} {after.group(2)} (now exact: in C the "
            "comparison saw only true/false)"
        )
        pos = m.start() + len(var)
    return result
