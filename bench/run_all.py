"""Run every benchmark, one after the other, each bounded in time; print the ratio tables.

    .venv/bin/python -m bench.run_all            # full set (< 20 min), then docs/benchmarks.md
    .venv/bin/python -m bench.run_all --quick    # smoke mode (< 3 min), docs untouched

Each benchmark also runs alone (``python -m bench.routing_cost [--quick]`` ...) and writes
``bench/results/<name>-<date>.json``.  A benchmark that fails or runs out of time is reported
and the others still run; the exit code is non-zero only when a benchmark could not run at
all (timing never fails a run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ("routing_cost", "ping_scale", "moonshot", "churn", "detection", "rpc_scale")
# wall-clock bounds (s): far above the usual run time, so only a hung run hits them
LIMITS = {
    "quick": {"routing_cost": 150, "ping_scale": 300, "moonshot": 240, "churn": 60,
              "detection": 120, "rpc_scale": 120},
    "full": {"routing_cost": 600, "ping_scale": 2700, "moonshot": 600, "churn": 240,
             "detection": 240, "rpc_scale": 360},
}  # fmt: skip


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children first found through /proc/*/stat ppid)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        out += kids
        frontier += kids
    return out


def run(
    name: str, quick: bool, no_json: bool, sizes: list[int] | None = None
) -> tuple[int, str | None, float]:
    argv = [sys.executable, "-m", f"bench.{name}"]
    if quick:
        argv.append("--quick")
    if no_json:
        argv.append("--no-json")
    if sizes and name == "ping_scale":
        argv += ["--sizes", *map(str, sizes)]
    limit = LIMITS["quick" if quick else "full"][name]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    written: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith("wrote "):
                written.append(line.split(" ", 1)[1].strip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        print(f"!! {name}: over its {limit} s bound, stopped", flush=True)
        proc.send_signal(signal.SIGTERM)  # the benchmark stops its own processes
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for pid in [*descendants(proc.pid), proc.pid]:  # what it started, one by one
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=10)
    reader.join(timeout=10)
    return proc.returncode, (written[-1] if written else None), time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", choices=BENCHMARKS, default=list(BENCHMARKS))
    ap.add_argument(
        "--report",
        action="store_true",
        help="write docs/benchmarks.md and docs/bench_scale.png from this run",
    )
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="+", help="ping_scale's numbers of destinations")
    ap.add_argument(
        "--version-section",
        metavar="LABEL",
        help="with --report: write the page's section for this Kamailio version (e.g. 6.0)",
    )
    args = ap.parse_args()
    t0 = time.monotonic()
    outcome: dict[str, dict[str, object]] = {}
    for name in args.only:
        rc, path, secs = run(name, args.quick, args.no_json, args.sizes)
        outcome[name] = {"rc": rc, "json": path, "seconds": round(secs, 1)}
    total = time.monotonic() - t0
    print("\n=== ka-kemi vs C: ratios ===")
    for name, o in outcome.items():
        if o["json"]:
            tables = json.loads(Path(str(o["json"])).read_text()).get("tables", {})
            print(f"\n{name}:\n{tables.get('ratios') or tables.get('points') or ''}")
            if tables.get("targets"):
                print(tables["targets"])
        else:
            print(f"\n{name}: no result (exit code {o['rc']})")
    print("\n" + ", ".join(f"{n} {o['seconds']} s (rc {o['rc']})" for n, o in outcome.items()))
    print(f"total {total:.0f} s ({'quick' if args.quick else 'full'} mode)")
    if args.report and not args.no_json:
        written = {n: str(o["json"]) for n, o in outcome.items() if o["json"]}
        if args.version_section:
            from bench import report_version

            report_version.write(args.version_section, written)
        else:
            from bench import report

            report.write(written, total)
    sys.exit(0 if all(o["json"] or args.no_json for o in outcome.values()) else 1)


if __name__ == "__main__":
    main()
