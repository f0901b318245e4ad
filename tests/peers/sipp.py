"""sipp as a SIP peer: a UAS answering OPTIONS, and a UAC sending N OPTIONS.

The UAS is a plain child process (no ``-bg``, which would detach it and hide its PID), so
teardown stops exactly the process it started: SIGTERM, wait, SIGKILL on timeout.  Answers
are counted from sipp's message trace (``-trace_msg``), which sipp writes as it goes;
the periodic ``-trace_stat`` file lags by up to a second and is only the fallback.
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SIPP = "/usr/bin/sipp"
SCENARIOS = Path(__file__).with_name("scenarios")
SCENARIO = SCENARIOS / "uas_options.xml"
UAC_SCENARIO = SCENARIOS / "uac_options.xml"
TRANSPORTS = {"udp": "u1", "tcp": "t1", "u1": "u1", "t1": "t1", "un": "un", "tn": "tn"}
SENT = re.compile(r"^\w+ message sent \(\d+ bytes\):\n\n(SIP/2\.0 (\d{3})|\w+ )", re.M)
RECEIVED = re.compile(r"^\w+ message received \[\d+\] bytes :\n\n(\w+) ", re.M)

Runner = Callable[..., "subprocess.Popen[bytes]"]
"""Starts argv like ``subprocess.Popen``; ``Host.run`` starts it in a network namespace."""


def _proc_net_key(host: str, port: int) -> str:
    """``/proc/net/{udp,tcp}[6]`` spelling of a local address (native-endian hex words)."""
    if ":" in host:
        words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, host))
        return "".join(f"{w:08X}" for w in words) + f":{port:04X}"
    return f"{struct.unpack('=I', socket.inet_aton(host))[0]:08X}:{port:04X}"


def is_bound(pid: int, host: str, port: int, tcp: bool) -> bool:
    """Whether ``host:port`` is bound (UDP) or listening (TCP) in ``pid``'s network namespace."""
    table = ("tcp" if tcp else "udp") + ("6" if ":" in host else "")
    key, state = _proc_net_key(host, port), "0A" if tcp else "07"
    try:
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f[1] == key and f[3] == state for f in (line.split() for line in lines))


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """SIGTERM, wait, SIGKILL on timeout; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


@dataclass
class SippUAS:
    """``sipp -sf uas_options.xml`` on ``host:port``, answering every OPTIONS with 200."""

    host: str
    port: int
    workdir: Path
    transport: str = "u1"
    """sipp's ``-t``: ``u1``/``udp`` or ``t1``/``tcp``."""
    runner: Runner | None = field(default=None, repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def messages(self) -> Path:
        return self.workdir / "messages.log"

    @property
    def output(self) -> Path:
        return self.workdir / "sipp.out"

    def start(self, timeout: float = 5.0) -> SippUAS:
        """Start sipp and wait until its port is bound; RuntimeError with its output if not."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [SIPP, "-sf", str(SCENARIO), "-i", self.host, "-p", str(self.port),
                "-t", TRANSPORTS[self.transport], "-nostdin",
                "-trace_msg", "-message_file", str(self.messages),
                "-trace_stat", "-fd", "1", "-stf", str(self.workdir / "stat.csv"),
                "-trace_err", "-error_file", str(self.workdir / "errors.log")]  # fmt: skip
        with self.output.open("wb") as out:
            run = self.runner or subprocess.Popen
            self.proc = run(argv, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, cwd=self.workdir)  # fmt: skip
        tcp = TRANSPORTS[self.transport].startswith("t")
        deadline = time.monotonic() + timeout
        while not is_bound(self.proc.pid, self.host, self.port, tcp):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sipp did not come up: {self.output.read_text()[-2000:]}")
            time.sleep(0.02)
        return self

    def _trace(self) -> str:
        try:
            return self.messages.read_text(errors="replace")
        except OSError:
            return ""

    def answered(self, code: int = 200) -> int:
        """Replies with ``code`` sent so far (from the message trace, else the statistics)."""
        trace = self._trace()
        if trace:
            return sum(1 for m in SENT.finditer(trace) if m.group(2) == str(code))
        return self._stat("SuccessfulCall(C)") if code == 200 else 0

    def received(self, method: str = "OPTIONS") -> int:
        """Requests of ``method`` received so far (retransmissions included)."""
        return sum(1 for m in RECEIVED.finditer(self._trace()) if m.group(1) == method)

    def wait_answered(self, n: int, timeout: float) -> int:
        """Wait until ``n`` replies went out; TimeoutError with the count if not."""
        deadline = time.monotonic() + timeout
        while (got := self.answered()) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sipp answered {got} of {n} in {timeout} s")
            time.sleep(0.05)
        return got

    def _stat(self, column: str) -> int:
        try:
            lines = (self.workdir / "stat.csv").read_text().splitlines()
        except OSError:
            return 0
        if len(lines) < 2:
            return 0
        header, last = lines[0].split(";"), lines[-1].split(";")
        return int(last[header.index(column)]) if len(last) == len(header) else 0

    def stop(self) -> int | None:
        """Stop sipp by PID; returns its exit code (None if never started)."""
        return None if self.proc is None else stop_process(self.proc)

    def __enter__(self) -> SippUAS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sipp_options(
    target: str,
    port: int,
    count: int = 1,
    *,
    local_ip: str = "127.0.0.1",
    transport: str = "u1",
    rate: int = 10,
    user: str = "ping",
    timeout: float = 10.0,
    workdir: Path | None = None,
    runner: Runner | None = None,
) -> int:
    """Send ``count`` OPTIONS to ``target:port`` with sipp, each expecting a 200.

    Returns sipp's exit code: 0 all answered, 1 some failed, others are sipp errors (-1 and
    -2 show as 255 and 254).  With ``workdir`` the message trace and output stay there.
    """
    with tempfile.TemporaryDirectory(prefix="sipp-uac-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        remote = f"[{target}]:{port}" if ":" in target else f"{target}:{port}"
        argv = [SIPP, remote, "-sf", str(UAC_SCENARIO), "-s", user, "-i", local_ip,
                "-t", TRANSPORTS[transport], "-m", str(count), "-r", str(rate), "-nostdin",
                "-recv_timeout", "3000", "-timeout", f"{int(timeout)}s", "-timeout_error",
                "-trace_msg", "-message_file", str(work / "uac_messages.log")]  # fmt: skip
        with (work / "uac.out").open("wb") as out:
            proc = (runner or subprocess.Popen)(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=work
            )
            try:
                return proc.wait(timeout=timeout + 5)
            finally:
                stop_process(proc)
