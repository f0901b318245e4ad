"""Rewrite a native kamailio.cfg that uses the C ``keepalive`` module into one that uses
ka-kemi from the native language (``kemi/native.py``); ``python3 -m kemi.migrate`` is the CLI.

Theory of operation.  One scan collects what the rewrite needs (loaded modules, the
keepalive and tm ``fr_timer`` modparams, ctl's socket, the reply route, ``#!define`` values,
the ``#!ifdef`` nesting around ``loadmodule "keepalive.so"``); one pass then rewrites, line by
line, only what belongs to the C module: its ``loadmodule`` becomes the modules ka-kemi needs,
its modparams become ``KA_*`` defines, its function calls become ``python_exec`` wrappers
(``ka_core.config.migrate_calls``), ctl's unix socket moves to ``<path>.core`` so ka-kemi can serve
``kamcmd keepalive.*`` on the old path and relay the rest, the reply route gets the hook for
ping replies, and the pinger's route is appended.  Every other line is kept byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ka_core.config.migrate_calls import rewrite_line
from ka_core.errors import InvalidArgument

TM_FR_TIMER_DEFAULT_MS = 30000
"""tm's ``fr_timer`` default: the C module's pings time out after it."""
CTL_DEFAULT = "/run/kamailio/kamailio_ctl"
"""ctl's default ``binrpc`` socket (Debian's Kamailio), what kamcmd talks to."""
PARAMS = {"ping_interval": "KA_PING_INTERVAL", "delete_counter": "KA_DELETE_COUNTER",
          "ping_from": "KA_PING_FROM", "destination": "KA_DESTINATION"}  # fmt: skip
INT_PARAMS = {"ping_interval", "delete_counter"}
NEEDED_MODULES = ("corex", "jsonrpcs", "pv", "rtimer", "evrexec", "app_python3")
PINGER_ROUTE = "KA_PINGER"
REPLY_HOOK = 'python_exec("ka_reply");  # ka-kemi: replies to its pings end here (0: dropped)'

_LOADMODULE = re.compile(r'^\s*loadmodule\s*\(?\s*"(?:[^"]*/)?([\w-]+?)(?:\.so)?"\s*\)?\s*;?\s*$')
_MODPARAM = re.compile(r'^\s*modparam\s*\(\s*"([\w-]+)"\s*,\s*"(\w+)"\s*,\s*(.*?)\s*\)\s*;?\s*$')
_DEFINE = re.compile(r"^#!(?:define|trydef)\s+(\w+)(?:\s+(.*?))?\s*$")
_CFGENGINE = re.compile(r'^\s*cfgengine\s+"?(\w+)"?')
_REPLY_ROUTE = re.compile(r"^\s*(?:reply_route|onreply_route)\s*(?:\{|$)")
_KA_EVENT_ROUTE = re.compile(r"^\s*event_route\s*\[\s*keepalive:")
_C_EVENT_PVS = re.compile(r"\$(ru|du|rs|rr|rU|rd)\b")


@dataclass(frozen=True, slots=True)
class Migration:
    text: str
    changes: tuple[str, ...]
    """One line per change, for stderr."""
    warnings: tuple[str, ...]
    """What was left for the operator (also for stderr)."""


@dataclass(slots=True)
class _Scan:
    modules: set[str] = field(default_factory=set)
    keepalive_line: int = -1
    guard: list[str] = field(default_factory=list)
    """``#!ifdef``/``#!ifndef`` lines (inverted for an ``#!else``) around keepalive.so."""
    defines: dict[str, str] = field(default_factory=dict)
    fr_timer: str | None = None
    ctl_binrpc: list[tuple[int, str]] = field(default_factory=list)
    reply_route: int = -1


def strip_comment(line: str, in_block: bool) -> tuple[str, str, bool]:
    """(code, the rest, still inside ``/* */``) for one line; ``#!`` directives are code."""
    if in_block:
        end = line.find("*/")
        if end < 0:
            return "", line, True
        return "", line, False  # code after a closing */ is left alone (rare)
    if line.lstrip().startswith("#!"):
        return line, "", False
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote and line[i - 1] != "\\" else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" or line.startswith("//", i):
            return line[:i], line[i:], False
        elif line.startswith("/*", i):
            return line[:i], line[i:], "*/" not in line[i + 2 :]
    return line, "", False


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _resolve(value: str, defines: dict[str, str]) -> str:
    """A value that is a define name of this file, replaced by the define's value."""
    for _ in range(5):
        if value in defines:
            value = defines[value]
    return value


def _scan(lines: list[str]) -> _Scan:
    scan, stack, in_block = _Scan(), list[list[str]](), False
    for i, line in enumerate(lines):
        code, _, in_block = strip_comment(line, in_block)
        text = code.strip()
        if text.startswith(("#!ifdef", "#!ifndef")):
            stack.append([text])
        elif text.startswith("#!else") and stack:
            word, _, name = stack[-1][0].partition(" ")
            stack[-1] = [("#!ifndef " if word == "#!ifdef" else "#!ifdef ") + name.strip()]
        elif text.startswith("#!endif") and stack:
            stack.pop()
        elif (d := _DEFINE.match(text)) is not None:
            scan.defines[d.group(1)] = (d.group(2) or "").strip()
        elif (engine := _CFGENGINE.match(code)) is not None and engine.group(1) != "native":
            raise InvalidArgument(
                f"line {i + 1}: cfgengine {engine.group(1)!r}: a KEMI config; use kemi.handler "
                "in the script instead (README)"
            )
        elif (lm := _LOADMODULE.match(code)) is not None:
            scan.modules.add(lm.group(1))
            if lm.group(1) == "keepalive":
                scan.keepalive_line, scan.guard = i, [entry[0] for entry in stack]
        elif (mp := _MODPARAM.match(code)) is not None:
            _scan_modparam(scan, i, mp.group(1), mp.group(2), mp.group(3))
        elif _REPLY_ROUTE.match(code) and scan.reply_route < 0:
            scan.reply_route = i
        elif re.match(rf"^\s*route\s*\[\s*{PINGER_ROUTE}\s*\]", code):
            raise InvalidArgument(f"line {i + 1}: route[{PINGER_ROUTE}] exists already")
    if scan.keepalive_line < 0:
        raise InvalidArgument('no loadmodule "keepalive.so": nothing to migrate')
    return scan


def _scan_modparam(scan: _Scan, i: int, module: str, name: str, value: str) -> None:
    if module == "tm" and name == "fr_timer":
        scan.fr_timer = value
    elif module == "ctl" and name == "binrpc":
        scan.ctl_binrpc.append((i, value))
    elif module == "app_python3" and name in ("load", "script_name"):
        if value.strip("\"' ").endswith("native.py"):
            raise InvalidArgument(
                f"line {i + 1}: app_python3 loads {value} already: this cfg is migrated; "
                "nothing to do"
            )
        raise InvalidArgument(
            f"line {i + 1}: app_python3 already loads {value}: app_python3 takes one script; "
            "merge kemi/native.py's NativeHandler into yours by hand (docs/native.md)"
        )
    elif module == "rtimer" and re.search(r"name=ka_pinger\b", value):
        raise InvalidArgument(f"line {i + 1}: an rtimer timer named ka_pinger exists already")


def migrate(text: str, *, native_script: str) -> Migration:
    """The migrated cfg.  ``native_script``: the path app_python3 loads (kemi/native.py).

    Raises InvalidArgument when the cfg cannot be migrated (no keepalive.so, a KEMI cfg,
    app_python3 busy with another script)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    scan = _scan(lines)
    out: list[str] = []
    changes: list[str] = []
    warnings: list[str] = []
    counter, destinations, in_block, event_depth, hook_pending = [0], [0], False, -1, False
    for i, line in enumerate(lines):
        code, rest, was_block = strip_comment(line, in_block)
        in_block = was_block
        if i == scan.keepalive_line:
            out += _modules_block(scan, native_script, changes, warnings)
            changes.append(f'line {i + 1}: loadmodule "keepalive.so" -> ka-kemi (native.py)')
            continue
        mp = _MODPARAM.match(code)
        if mp is not None and mp.group(1) == "keepalive":
            out.append(_param_define(mp.group(2), mp.group(3), i, scan, destinations,
                                     changes, warnings))  # fmt: skip
            continue
        if mp is not None and scan.ctl_binrpc and scan.ctl_binrpc[0][0] == i:
            out.append(_moved_ctl(line, mp.group(3), i, scan, changes))
            continue
        if _KA_EVENT_ROUTE.match(code):
            event_depth = 0
        if event_depth >= 0:
            event_depth = _warn_event_pvs(code, i, event_depth, warnings)
        result = rewrite_line(code, i + 1, counter)
        changes += result.changes
        warnings += result.warnings
        indent = re.match(r"\s*", line).group(0)  # type: ignore[union-attr]
        out += [indent + stmt + "\n" for stmt in result.before]
        new_line = line if result.code == code else result.code + rest
        if i == scan.reply_route or hook_pending:
            hooked = _hook_reply(new_line, scan.guard)
            hook_pending = hooked is None
            if hooked is not None:
                changes.append(f'line {i + 1}: reply route: python_exec("ka_reply") first')
            out += [new_line] if hooked is None else hooked
            continue
        out.append(new_line)
    if scan.reply_route < 0:
        out += _guarded(scan.guard, ["reply_route {\n", f"\t{REPLY_HOOK}\n", "}\n"], "\n")
        changes.append("end: reply_route added (replies to the pings end there)")
    pinger = [
        f"route[{PINGER_ROUTE}] {{\n",
        '\tpython_exec("ka_pinger");  # never returns\n',
        "}\n",
    ]
    out += _guarded(scan.guard, pinger, "\n")
    changes.append(f"end: route[{PINGER_ROUTE}] added (the pinger process, rtimer mode 1)")
    return Migration("".join(out), tuple(changes), tuple(warnings))


def _guarded(guard: list[str], body: list[str], lead: str = "") -> list[str]:
    """``body`` inside the same ``#!ifdef`` nesting as keepalive.so had."""
    return [lead, *[g + "\n" for g in guard], *body, *["#!endif\n" for _ in guard]]


def _modules_block(
    scan: _Scan, native_script: str, changes: list[str], warnings: list[str]
) -> list[str]:
    block = ["# ---- ka-kemi (python3 -m kemi.migrate): keepalive in Python, docs/native.md\n"]
    block += [f'loadmodule "{m}.so"\n' for m in NEEDED_MODULES if m not in scan.modules]
    block += [
        f'modparam("app_python3", "load", "{native_script}")\n',
        '# the pinger: a process of its own (route[KA_PINGER] never returns)\n',
        'modparam("rtimer", "timer", "name=ka_pinger;interval=100000u;mode=1;")\n',
        f'modparam("rtimer", "exec", "timer=ka_pinger;route={PINGER_ROUTE}")\n',
    ]  # fmt: skip
    if "jsonrpcs" not in scan.modules:  # for ka-kemi's own calls only: FIFO without a file
        block += [
            'modparam("jsonrpcs", "transport", 2)\n',
            'modparam("jsonrpcs", "fifo_name", "")\n',
        ]
    fr_timer = _unquote(_resolve(scan.fr_timer or str(TM_FR_TIMER_DEFAULT_MS), scan.defines))
    if not fr_timer.isdigit():
        warnings.append(f"tm fr_timer {scan.fr_timer!r}: not a number; set KA_PING_TIMEOUT_MS")
    where = "tm fr_timer" if scan.fr_timer else "tm's default fr_timer"
    changes.append(f"KA_PING_TIMEOUT_MS {fr_timer} ms ({where}: the C module's ping timeout)")
    block += _define("KA_PING_TIMEOUT_MS", fr_timer, f"{where}, as the C module's pings")
    block += _define("KA_EVENT_INITIAL", "1", "as C: the first state runs its event_route")
    block += _rpc_defines(scan, changes, warnings)
    return block


def _define(name: str, value: str, why: str = "") -> list[str]:
    note = [f"# {why}\n"] if why else []
    return [*note, f"#!ifndef {name}\n", f"#!define {name} {value}\n", "#!endif\n"]


def _rpc_defines(scan: _Scan, changes: list[str], warnings: list[str]) -> list[str]:
    """kamcmd keepalive.*: ka-kemi serves ctl's unix socket and relays the rest to ctl."""
    if "ctl" not in scan.modules:
        return []
    if not scan.ctl_binrpc:
        changes.append(f"ctl: kamcmd's {CTL_DEFAULT} served by ka-kemi, ctl moved to .core")
        return [
            f'modparam("ctl", "binrpc", "unix:{CTL_DEFAULT}.core")\n',
            *_define("KA_RPC_SOCKET", f'"{CTL_DEFAULT}"'),
            *_define("KA_CTL_FORWARD", f'"{CTL_DEFAULT}.core"'),
        ]
    path = _ctl_path(scan.ctl_binrpc[0][1], scan.defines)
    if path is None:
        warnings.append(
            f"ctl binrpc {scan.ctl_binrpc[0][1]}: not a unix socket; keepalive.* is served on "
            f"{CTL_DEFAULT}_ka (kamcmd -s unix:{CTL_DEFAULT}_ka keepalive.list)"
        )
        return _define("KA_RPC_SOCKET", f'"{CTL_DEFAULT}_ka"')
    return [*_define("KA_RPC_SOCKET", f'"{path}"'), *_define("KA_CTL_FORWARD", f'"{path}.core"')]


def _ctl_path(value: str, defines: dict[str, str]) -> str | None:
    raw = _unquote(_resolve(value, defines))
    if raw.startswith("unix:"):
        return raw[5:]
    return None if re.match(r"^(tcp|udp|unixs|unixd):", raw) or "/" not in raw else raw


def _moved_ctl(line: str, value: str, i: int, scan: _Scan, changes: list[str]) -> str:
    path = _ctl_path(value, scan.defines)
    if path is None:
        return line
    changes.append(f"line {i + 1}: ctl binrpc {path} -> {path}.core (ka-kemi serves {path})")
    return line.replace(value, f'"unix:{path}.core"', 1)


def _param_define(
    name: str, value: str, i: int, scan: _Scan, destinations: list[int],
    changes: list[str], warnings: list[str],
) -> str:  # fmt: skip
    if name not in PARAMS:
        warnings.append(f"line {i + 1}: keepalive parameter {name!r} unknown: commented out")
        return f'# kemi.migrate: not migrated: modparam("keepalive", "{name}", {value})\n'
    resolved = _resolve(value, scan.defines)
    if _unquote(resolved) == "":
        warnings.append(f"line {i + 1}: keepalive {name} is empty: left out (ka-kemi's default)")
        return f'# kemi.migrate: empty, left out: modparam("keepalive", "{name}", {value})\n'
    if not resolved.startswith('"') and not resolved.lstrip("-").isdigit():
        warnings.append(f"line {i + 1}: keepalive {name} {value}: not a literal; check it")
    define = PARAMS[name]
    if name == "destination":
        destinations[0] += 1
        define = f"KA_DESTINATION_{destinations[0]}"
    text = _unquote(resolved) if name in INT_PARAMS else f'"{_unquote(resolved)}"'
    changes.append(f"line {i + 1}: keepalive {name} -> #!define {define} {text}")
    return f"#!define {define} {text}\n"


def _hook_reply(line: str, guard: list[str]) -> list[str] | None:
    """The reply route's first statement, the ping reply hook, after its ``{``; None when
    the ``{`` is on a later line."""
    brace = line.find("{")
    if brace < 0:
        return None
    head, tail = line[: brace + 1] + "\n", line[brace + 1 :]
    return [head, *_guarded(guard, [f"\t{REPLY_HOOK}\n"])[1:], *([tail] if tail.strip() else [])]


def _warn_event_pvs(code: str, i: int, depth: int, warnings: list[str]) -> int:
    """Inside ``event_route[keepalive:...]``: the destination is ``$var(ka_uri)`` now."""
    for m in _C_EVENT_PVS.finditer(code):
        warnings.append(f"line {i + 1}: ${m.group(1)} in a keepalive event route: ka-kemi "
                        "gives the destination in $var(ka_uri) (docs/native.md)")  # fmt: skip
    depth += code.count("{") - code.count("}")
    return -1 if depth <= 0 and "}" in code else depth
