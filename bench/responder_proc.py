"""``bench/responder.py`` (the SIP OPTIONS peers) run as its own process, driven through its
stdin; its event log read back as a numpy array."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.paths import RESPONDER
from bench.procs import stop_proc, track

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass
class Responder:
    """``bench/responder.py`` as its own process; events are read back with ``events()``."""

    out: Path
    args: list[str] = field(default_factory=lambda: ["--wild", "--answer", "odd"])
    prefix: list[str] = field(default_factory=list)
    """e.g. ``["ip", "netns", "exec", name]`` to run it inside a network namespace."""
    proc: subprocess.Popen[str] | None = None

    def start(self) -> Responder:
        self.proc = track(
            subprocess.Popen(
                [*self.prefix, sys.executable, str(RESPONDER), "--out", str(self.out), *self.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if line.strip() != "ready":
            rest = self.proc.stdout.read() if self.proc.stdout else ""
            raise RuntimeError(f"responder did not start: {line}{rest}")
        return self

    def command(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer.startswith("ok"):
            raise RuntimeError(f"responder: {line!r} -> {answer!r}")

    def stop(self) -> None:
        stop_proc(self.proc)

    def events(self) -> npt.NDArray[np.void]:
        """The logged requests, one record each (numpy structured array)."""
        import numpy as np

        dtype = np.dtype(
            [
                ("ts", "<i8"),
                ("dst", "<u4"),
                ("src", "<u4"),
                ("sport", "<u2"),
                ("code", "<u2"),
                ("crc", "<u4"),
            ]
        )
        raw = self.out.read_bytes() if self.out.exists() else b""
        return np.frombuffer(raw[: len(raw) - len(raw) % dtype.itemsize], dtype=dtype)
