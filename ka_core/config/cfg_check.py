"""What a kamailio.cfg and the Python script it loads lack for ka-kemi (``kemi.check``).

The same things Kamailio's start-up refuses (``kemi.startup``) and the ones only run time
shows (the reply hook), read from the text before Kamailio runs it:

* the cfg (``ka_core.config.cfg_text``): app_python3 and the script it loads; corex, jsonrpcs and
  rtimer loaded (rtimer before app_python3), dmq with ``KA_CLUSTER``, dispatcher with
  ``KA_DISPATCHER_BRIDGE``; an rtimer timer with
  ``mode=1`` whose exec runs the pinger (KEMI: the method ``ksr_ka_pinger``; native cfg: a
  ``route`` that calls ``python_exec``); native cfg: a ``reply_route`` that calls
  ``python_exec`` (the reply hook);
* the script (Python ``ast``, never run): ``mod_init`` calls ``setup()`` and returns a
  ``KeepaliveHandler`` subclass whose own ``ksr_reply_route`` and ``child_init``, if any,
  hand over to the base class.

Each problem is one line: what is missing, then how to fix it.
"""

from __future__ import annotations

import ast
import re

from ka_core.config.cfg_text import Cfg

PINGER_METHOD = "ksr_ka_pinger"
BASE_CLASS = "KeepaliveHandler"
NEEDED_MODULES = {
    "corex": "pings leave through corex.sendx",
    "jsonrpcs": "the pinger reads Kamailio's listeners with corex.list_sockets",
    "rtimer": "the pinger is an rtimer process",
}
RTIMER_EXAMPLE = (
    'modparam("rtimer", "timer", "name=ka;interval=100000u;mode=1;") and '
    'modparam("rtimer", "exec", "timer=ka;route={route}")'
)


def _fields(value: str) -> dict[str, str]:
    """rtimer's ``name=ka;interval=1;mode=1;`` as a dict."""
    pairs = (item.partition("=") for item in value.split(";") if "=" in item)
    return {k.strip(): v.strip() for k, _, v in pairs}


def script_path(cfg: Cfg) -> str | None:
    """The Python script app_python3 loads (``load`` or ``script_name``), as written."""
    paths = cfg.params("app_python3", "load") + cfg.params("app_python3", "script_name")
    return paths[-1] if paths else None


def check_cfg(cfg: Cfg) -> list[str]:
    """The cfg's problems (empty: nothing missing)."""
    if "app_python3" not in cfg.modules:
        return ['app_python3 is not loaded: ka-kemi runs in it (loadmodule "app_python3.so")']
    problems = []
    if script_path(cfg) is None:
        problems.append(
            'app_python3 loads no script: add modparam("app_python3", "load", "/path/script.py")'
        )
    needed = dict(NEEDED_MODULES)
    if "KA_CLUSTER" in cfg.defines:
        needed["dmq"] = "KA_CLUSTER shares destinations over dmq"
    if cfg.defines.get("KA_DISPATCHER_BRIDGE", "0") != "0":
        needed["dispatcher"] = "KA_DISPATCHER_BRIDGE keeps dispatcher's states"
    for module, why in needed.items():
        if module not in cfg.modules:
            problems.append(f'{module} is not loaded ({why}): add loadmodule "{module}.so"')
    if "rtimer" in cfg.modules and cfg.modules.index("rtimer") > cfg.modules.index("app_python3"):
        problems.append(
            "rtimer is loaded after app_python3: load it before, so the pinger process exists "
            "when the main process checks it"
        )
    problems += _pinger_problems(cfg)
    if cfg.engine == "native":
        problems += _native_reply_problems(cfg)
    return problems


def _pinger_problems(cfg: Cfg) -> list[str]:
    kemi = cfg.engine != "native"
    timers = {f.get("name", ""): f for f in map(_fields, cfg.params("rtimer", "timer"))}
    runs_pinger = []
    for fields in map(_fields, cfg.params("rtimer", "exec")):
        route = fields.get("route", "")
        if (kemi and route == PINGER_METHOD) or (
            not kemi and "python_exec" in cfg.routes.get(f"route[{route}]", "")
        ):
            runs_pinger.append(fields)
    if not runs_pinger:
        route = PINGER_METHOD if kemi else "KA_PINGER (a route that calls python_exec)"
        return [
            "no rtimer exec runs the pinger (every destination would stay UNKNOWN): add "
            + RTIMER_EXAMPLE.format(route=route)
        ]
    problems = []
    for fields in runs_pinger:
        name = fields.get("timer", "")
        timer = timers.get(name)
        if timer is None:
            problems.append(f'rtimer exec runs the pinger on timer "{name}", which no rtimer '
                            'timer modparam defines')  # fmt: skip
        elif timer.get("mode", "0") in ("", "0"):
            problems.append(f'rtimer timer "{name}" needs mode=1: the pinger never returns and '
                            "must have a process of its own")  # fmt: skip
    return problems


def _native_reply_problems(cfg: Cfg) -> list[str]:
    hooks = [body for key, body in cfg.routes.items() if key in ("reply_route", "onreply_route")]
    if any("python_exec" in body for body in hooks):
        return []
    return [
        "no reply_route calls python_exec: replies to the pings never reach ka-kemi (every "
        "destination DOWN although it answers): run the reply hook there, docs/native.md"
    ]


def _names(node: ast.AST) -> set[str]:
    """Every name and attribute name used under ``node``."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def _returned_class(fn: ast.FunctionDef) -> str | None:
    for sub in ast.walk(fn):
        if isinstance(sub, ast.Return) and isinstance(sub.value, ast.Call):
            func = sub.value.func
            if isinstance(func, ast.Name):
                return func.id
    return None


def _is_handler(name: str, classes: dict[str, ast.ClassDef], seen: set[str]) -> bool:
    cls = classes.get(name)
    if cls is None or name in seen:
        return False
    seen.add(name)
    for base in cls.bases:
        base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
        if base_name == BASE_CLASS or _is_handler(base_name, classes, seen):
            return True
    return False


def check_script(source: str, path: str = "script") -> list[str]:
    """The Python script's problems (``source`` is parsed, never run)."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        return [f"{path}: cannot be parsed: {exc.msg} (line {exc.lineno})"]
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    imported = {
        alias.asname or alias.name
        for n in tree.body
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("kemi")
        for alias in n.names
    }
    if "mod_init" in imported:
        return []  # ka-kemi's own mod_init (native cfg glue)
    mod_init = functions.get("mod_init")
    if mod_init is None:
        return [f"{path}: no mod_init(): app_python3 calls it to get the handler"]
    problems = []
    if "setup" not in _names(mod_init):
        problems.append(f"{path}: mod_init() does not call setup(): call kemi.handler.setup()")
    handler = _returned_class(mod_init)
    if handler is None or handler not in classes:
        return problems
    if not _is_handler(handler, classes, set()):
        problems.append(
            f"{path}: {handler} does not subclass KeepaliveHandler: no pinger route, no reply "
            "hook; subclass kemi.handler.KeepaliveHandler"
        )
        return problems
    methods = {n.name: n for n in classes[handler].body if isinstance(n, ast.FunctionDef)}
    reply = methods.get("ksr_reply_route")
    if reply is not None and not {"ksr_reply_route", "on_reply"} & _super_calls(reply):
        problems.append(
            f"{path}: {handler}.ksr_reply_route does not hand replies to ka-kemi (every "
            "destination DOWN although it answers): return super().ksr_reply_route(msg) for "
            "the replies it does not handle itself"
        )
    init = methods.get("child_init")
    if init is not None and "child_init" not in _super_calls(init):
        problems.append(
            f"{path}: {handler}.child_init does not call super().child_init(rank): it makes "
            "Kamailio refuse to start when ka-kemi cannot run"
        )
    return problems


def _super_calls(fn: ast.FunctionDef) -> set[str]:
    """Methods called on ``super()`` in ``fn``, and ``on_reply`` (``kemi.pinger``)."""
    called = set()
    for sub in ast.walk(fn):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Call):
            if isinstance(sub.value.func, ast.Name) and sub.value.func.id == "super":
                called.add(sub.attr)
        elif isinstance(sub, ast.Name | ast.Attribute) and "on_reply" in ast.dump(sub):
            called.add("on_reply")
    return called


def define_arguments(items: list[str]) -> dict[str, str]:
    """``-A NAME`` / ``-A NAME=value`` of Kamailio's command line, as defines."""
    found = {}
    for item in items:
        name, _, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"bad define {item!r}: NAME or NAME=value")
        found[name] = value
    return found
