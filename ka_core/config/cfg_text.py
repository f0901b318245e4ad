"""Just enough of Kamailio's cfg language to see what a kamailio.cfg asks for.

Theory of operation.  ``preprocess`` runs the preprocessor the way Kamailio does before
parsing: ``#!define``/``#!trydef``/``#!redefine``, ``#!ifdef``/``#!ifndef``/``#!else``/
``#!endif``, ``include_file``/``import_file`` (through the caller's ``read``: no I/O here), and
drops comments; define names are replaced by their values.  ``parse`` then reads the
result: loaded modules in order, every ``modparam``, the ``cfgengine``, and the body of each
route block.  Anything else in the language is ignored: ``ka_core.config.cfg_check`` asks nothing
more of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

MAX_INCLUDE_DEPTH = 10
_DIRECTIVE = re.compile(r"^\s*#!(\w+)\s*(.*?)\s*$")
_INCLUDE = re.compile(r'^\s*#?!?(?:include_file|import_file)\s+"([^"]+)"')
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|(#|//).*$', re.M)
_LOADMODULE = re.compile(r'^\s*loadmodule\s+"?([^"\s]+)"?', re.M)
_MODPARAM = re.compile(
    r'modparam\(\s*"([^"]+)"\s*,\s*"([^"]+)"\s*,\s*("(?:[^"\\]|\\.)*"|[^)]*?)\s*\)'
)
_ENGINE = re.compile(r'^\s*cfgengine\s+"?(\w+)"?', re.M)
_ROUTE = re.compile(
    r"\b(route|request_route|reply_route|onreply_route|failure_route|branch_route|"
    r"onsend_route|event_route)\s*(?:\[\s*\"?([^\]\"]*)\"?\s*\])?\s*\{"
)


@dataclass(frozen=True, slots=True)
class Cfg:
    modules: list[str]
    """Loaded modules in load order, as ``corex`` (no directory, no ``.so``)."""
    modparams: list[tuple[str, str, str]]
    """(module, parameter, value without quotes), in cfg order."""
    engine: str
    """``native`` or the KEMI engine (``python``)."""
    routes: dict[str, str] = field(default_factory=dict)
    """``route[NAME]``, ``reply_route``, ``event_route[NAME]``... -> the block's text."""
    defines: dict[str, str] = field(default_factory=dict)
    """Every define after preprocessing (``-A`` ones included)."""

    def params(self, module: str, name: str) -> list[str]:
        return [v for m, p, v in self.modparams if m == module and p == name]


def _strip_comments(line: str) -> str:
    def keep(match: re.Match[str]) -> str:
        return "" if match.group(1) else match.group(0)

    return _STRING_OR_COMMENT.sub(keep, line)


def preprocess(
    text: str, defines: Mapping[str, str], read: Callable[[str], str | None], depth: int = 0
) -> tuple[str, dict[str, str]]:
    """The cfg as Kamailio's parser sees it, and the defines in force at its end.

    ``read(path)`` returns an included file's text, or None when it cannot be read (the
    include is then skipped).
    """
    values = dict(defines)
    out: list[str] = []
    active: list[bool] = []
    for raw in _BLOCK_COMMENT.sub("", text).splitlines():
        directive = _DIRECTIVE.match(raw)
        on = all(active)
        if directive and directive.group(1) in ("ifdef", "ifndef", "else", "endif"):
            word, arg = directive.group(1), directive.group(2).split()
            if word in ("ifdef", "ifndef"):
                present = bool(arg) and arg[0] in values
                active.append(present if word == "ifdef" else not present)
            elif word == "else" and active:
                active[-1] = not active[-1]
            elif active:
                active.pop()
            continue
        if not on:
            continue
        if directive and directive.group(1) in ("define", "trydef", "redefine", "trydefine"):
            name, _, value = directive.group(2).partition(" ")
            if directive.group(1) not in ("trydef", "trydefine") or name not in values:
                values[name] = _substitute(value.strip(), values)
            continue
        if directive and directive.group(1) == "KAMAILIO":
            continue
        include = _INCLUDE.match(raw)
        if include:
            included = read(include.group(1)) if depth < MAX_INCLUDE_DEPTH else None
            if included is not None:
                body, values = preprocess(included, values, read, depth + 1)
                out.append(body)
            continue
        line = _strip_comments(raw)
        if line.strip():
            out.append(_substitute(line, values))
    return "\n".join(out), values


def _substitute(line: str, values: Mapping[str, str]) -> str:
    names = [n for n, v in values.items() if v and n in line]
    for name in sorted(names, key=len, reverse=True):
        line = re.sub(rf"(?<![\w$(]){re.escape(name)}(?!\w)", values[name], line)
    return line


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _blocks(text: str) -> dict[str, str]:
    routes: dict[str, str] = {}
    for match in _ROUTE.finditer(text):
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        kind, name = match.group(1), (match.group(2) or "").strip()
        key = f"{kind}[{name}]" if name else kind
        routes[key] = routes.get(key, "") + text[match.end() : end - 1]
    return routes


def parse(text: str, defines: Mapping[str, str] | None = None) -> Cfg:
    """A preprocessed cfg (``preprocess``) as a ``Cfg``."""
    modules = []
    for name in _LOADMODULE.findall(text):
        module = name.rsplit("/", 1)[-1]
        modules.append(module[:-3] if module.endswith(".so") else module)
    params = [(m, p, _unquote(v)) for m, p, v in _MODPARAM.findall(text)]
    engine = _ENGINE.search(text)
    return Cfg(
        modules=modules,
        modparams=params,
        engine=engine.group(1) if engine else "native",
        routes=_blocks(text),
        defines=dict(defines or {}),
    )
