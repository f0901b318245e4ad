"""``python3 -m kemi.check kamailio.cfg [-A NAME[=value]]... [--script PATH]``: what the cfg
(native or KEMI) and the Python script it loads lack for ka-kemi.

Reads the files and prints; the checks are ``ka_core.config.cfg_check``.  Relative include and
script paths are tried against the current directory, then the cfg's directory (Kamailio's
``-w``: give ``--workdir``).  Exit status 0: nothing missing; 1: problems (one line each);
2: the cfg cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ka_core.config import cfg_text
from ka_core.config.cfg_check import check_cfg, check_script, define_arguments, script_path

PREFIX = "ka-kemi check: "


def _reader(bases: list[Path]) -> Callable[[str], str | None]:
    def read(name: str) -> str | None:
        path = find(name, bases)
        return None if path is None else path.read_text(errors="replace")

    return read


def find(name: str, bases: list[Path]) -> Path | None:
    candidates = [Path(name)] if Path(name).is_absolute() else [b / name for b in bases]
    return next((p for p in candidates if p.is_file()), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m kemi.check", description=__doc__)
    parser.add_argument("cfg", type=Path)
    parser.add_argument("-A", dest="defines", action="append", default=[], metavar="NAME=value")
    parser.add_argument("--script", type=Path, help="the Python script (default: the cfg's)")
    parser.add_argument("--workdir", type=Path, help="Kamailio's -w directory")
    args = parser.parse_args(argv)
    try:
        text = args.cfg.read_text(errors="replace")
        defines = define_arguments(args.defines)
    except (OSError, ValueError) as exc:
        print(f"{PREFIX}{exc}", file=sys.stderr)
        return 2
    bases = [b for b in (args.workdir, Path.cwd(), args.cfg.resolve().parent) if b]
    body, defined = cfg_text.preprocess(text, defines, _reader(bases))
    cfg = cfg_text.parse(body, defined)
    problems = check_cfg(cfg)
    script = args.script or (find(name, bases) if (name := script_path(cfg)) else None)
    if script is not None:
        problems += check_script(script.read_text(errors="replace"), str(script))
    elif script_path(cfg):
        problems.append(f"cannot find the script {script_path(cfg)}: give --script or --workdir")
    for problem in problems:
        print(f"{PREFIX}{problem}")
    if not problems:
        kind = "KEMI" if cfg.engine != "native" else "native cfg"
        print(f"{PREFIX}{args.cfg}: nothing missing ({kind}, script {script})")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
