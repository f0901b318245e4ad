"""Processes and work directories a benchmark starts, and their cleanup on every exit path.

Every process started through ``track`` is remembered and stopped by PID (SIGTERM, then
SIGKILL) when the benchmark ends, whatever the outcome; work directories are removed after
that (unless ``KA_BENCH_KEEP=1``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias, TypeVar

AnyPopen: TypeAlias = subprocess.Popen[bytes] | subprocess.Popen[str]
_P = TypeVar("_P", subprocess.Popen[bytes], subprocess.Popen[str])

_STARTED: list[AnyPopen] = []


def track(proc: _P) -> _P:
    _STARTED.append(proc)
    return proc


def stop_proc(proc: AnyPopen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)  # a drain may have left a child stopped: not ours
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def stop_all() -> None:
    while _STARTED:
        stop_proc(_STARTED.pop())


def _on_signal(signum: int, _frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


_WORKDIRS: list[Path] = []


def workdir(prefix: str) -> Path:
    """A temporary directory for logs, captures and cfgs; removed when the benchmark exits
    unless ``KA_BENCH_KEEP=1`` (then its path is printed)."""
    path = Path(tempfile.mkdtemp(prefix=f"ka-bench-{prefix}-"))
    _WORKDIRS.append(path)
    return path


def _remove_workdirs() -> None:
    for path in _WORKDIRS:
        if os.environ.get("KA_BENCH_KEEP"):
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


atexit.register(_remove_workdirs)  # runs after stop_all (LIFO)
atexit.register(stop_all)
signal.signal(signal.SIGTERM, _on_signal)


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
