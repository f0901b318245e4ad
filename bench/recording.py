"""What a benchmark run records: the machine and the code it measured, and its result file
``bench/results/<name>-<date>.json``."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from bench.paths import REPO, RESULTS
from tests.harness.kamailio import KAMAILIO_ROOT, kamailio_command


def _run(argv: list[str], timeout: float = 10) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"


def machine_facts() -> dict[str, object]:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mhz = re.search(r"cpu MHz\s*:\s*(.*)", cpuinfo)
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    osrel = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    commit, dirty = code_state()
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "cpu_mhz": float(mhz.group(1)) if mhz else None,
        "cpus": os.cpu_count(),
        "mem_total_mb": int(mem.group(1)) // 1024 if mem else None,
        "kernel": platform.release(),
        "os": osrel.get("PRETTY_NAME", "").strip('"'),
        "kamailio": _run([*kamailio_command(), "-v"]).splitlines()[0],
        "kamailio_root": KAMAILIO_ROOT,
        "python_embedded": _embedded_python(),
        "sipp": _run(["sipp", "-v"]).splitlines()[0] if shutil.which("sipp") else "missing",
        "git_commit": commit,
        "ka_core_kemi_dirty": dirty,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "allocator": "-x fm",
    }


def _embedded_python() -> str:
    lib = "/usr/lib/x86_64-linux-gnu/kamailio/modules/app_python3.so"
    text = _run(["chroot", KAMAILIO_ROOT, "ldd", lib] if KAMAILIO_ROOT else ["ldd", lib])
    found = re.search(r"libpython(\d+\.\d+)", text)
    return found.group(1) if found else "unknown"


def code_state() -> tuple[str, bool]:
    """(commit, whether ka_core/ or kemi/ differ from it): the code the benchmark measured."""
    dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "--", "ka_core", "kemi"])
    commit = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    return commit, bool(dirty and not dirty.startswith("unavailable"))


def write_result(name: str, data: Mapping[str, object]) -> Path:
    """``bench/results/<name>-<date>.json``; notes the code state at the end of the run."""
    machine = data.get("machine")
    if isinstance(machine, dict):
        machine["git_commit_end"], machine["ka_core_kemi_dirty_end"] = code_state()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=1, default=_json_default) + "\n")
    return path


def _json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
