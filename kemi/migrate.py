"""``python3 -m kemi.migrate kamailio.cfg > new.cfg``: a native cfg that used the C keepalive
module, rewritten for ka-kemi (``ka_core.config.migrate``); what changed goes to stderr.

The new cfg loads this package's ``kemi/native.py`` (the path printed in it is where this
command ran from: the checkout or the installed package).  Exit status: 0 migrated, 1 the
file cannot be read, 2 the cfg cannot be migrated (nothing written to stdout).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from ka_core.config.migrate import migrate
from ka_core.errors import InvalidArgument

NATIVE_SCRIPT = Path(__file__).resolve().with_name("native.py")


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m kemi.migrate",
        description="Rewrite a kamailio.cfg from the C keepalive module to ka-kemi (native cfg).",
    )
    parser.add_argument("cfg", help="the kamailio.cfg to migrate")
    parser.add_argument(
        "--script", default=str(NATIVE_SCRIPT),
        help=f"path app_python3 loads (default: {NATIVE_SCRIPT})",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        text = Path(args.cfg).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        err.write(f"kemi.migrate: cannot read {args.cfg}: {exc}\n")
        return 1
    try:
        result = migrate(text, native_script=args.script)
    except InvalidArgument as exc:
        err.write(f"kemi.migrate: {args.cfg}: cannot migrate: {exc}\n")
        return 2
    out.write(result.text)
    for line in result.changes:
        err.write(f"kemi.migrate: {line}\n")
    for line in result.warnings:
        err.write(f"kemi.migrate: warning: {line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
