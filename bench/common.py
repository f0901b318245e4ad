"""Shared machinery of the benchmarks: Kamailio instances (C keepalive and ka-kemi, same
globals/modules/timers), the responder, CPU/shm/drop probes, BINRPC calls, tables and JSON.

Every process started here is remembered and stopped by PID (SIGTERM, then SIGKILL) when the
benchmark ends, whatever the outcome.  Nothing here asserts timing: benchmarks report.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ka_core import binrpc  # noqa: E402
from tests.harness.kamailio import KAMAILIO, KAMCMD  # noqa: E402
from tests.harness.kamailio import Kamailio as HarnessKamailio  # noqa: E402

BENCH = REPO / "bench"
RESULTS = BENCH / "results"
C_CFG = BENCH / "cfg" / "c_keepalive.cfg"
ROUTE_C = BENCH / "scripts" / "route_c.py"
ROUTE_KA = BENCH / "scripts" / "route_ka.py"
RESPONDER = BENCH / "responder.py"
PEER_PORT = 15300
PING_INTERVAL_S = 5
FR_TIMER_MS = 2000
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------------------
# process bookkeeping: stop what we started, by PID, on every exit path


_STARTED: list[subprocess.Popen] = []


def track(proc: subprocess.Popen) -> subprocess.Popen:
    _STARTED.append(proc)
    return proc


def stop_proc(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
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


atexit.register(lambda: _remove_workdirs())  # runs after stop_all (LIFO)
atexit.register(stop_all)
signal.signal(signal.SIGTERM, _on_signal)


# ---------------------------------------------------------------------------------------
# machine facts


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
        "kamailio": _run([KAMAILIO, "-v"]).splitlines()[0],
        "python_embedded": _embedded_python(),
        "sipp": _run(["sipp", "-v"]).splitlines()[0] if shutil.which("sipp") else "missing",
        "git_commit": commit,
        "ka_core_kemi_dirty": dirty,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "allocator": "-x fm",
    }


def _embedded_python() -> str:
    lib = "/usr/lib/x86_64-linux-gnu/kamailio/modules/app_python3.so"
    text = _run(["ldd", lib])
    found = re.search(r"libpython(\d+\.\d+)", text)
    return found.group(1) if found else "unknown"


# ---------------------------------------------------------------------------------------
# command line, results, tables


def bench_args(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="short mode (CI smoke, < 1 min each)")
    ap.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    return ap.parse_args()


def code_state() -> tuple[str, bool]:
    """(commit, whether ka_core/ or kemi/ differ from it): the code the benchmark measured."""
    dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "--", "ka_core", "kemi"])
    commit = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    return commit, bool(dirty and not dirty.startswith("unavailable"))


def write_result(name: str, data: dict[str, object]) -> Path:
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


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return "\n".join(lines)


def fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    return str(value)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or (isinstance(b, float) and math.isnan(b)):
        return None
    return a / b


def verdict(value: float | None, limit: float, unit: str = "") -> str:
    """``met`` or ``MISSED by x`` for an upper-bound target."""
    if value is None:
        return "not measured"
    if value <= limit:
        return "met"
    over = value - limit
    if unit == "x":
        return f"MISSED by {over:.2f}x ({value / limit * 100 - 100:.0f} % over)"
    return f"MISSED by {fmt(over)}{unit} ({value / limit * 100 - 100:.0f} % over)"


def median(values: Sequence[float]) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------
# addresses


def kam_address(bench: int, instance: int) -> str:
    """Kamailio listeners: 127.99.<bench>.<instance> (port 5060)."""
    return f"127.99.{bench}.{instance}"


def dest_addrs(n: int, first_octet3: int = 100) -> list[str]:
    """``127.0.X.Y`` for X from ``first_octet3``, Y 1..254: half of them (odd Y) answer."""
    out = []
    x, y = first_octet3, 1
    while len(out) < n:
        out.append(f"127.0.{x}.{y}")
        y += 1
        if y > 254:
            x, y = x + 1, 1
    if x > 200:
        raise ValueError("destination plan exceeds 127.0.100.0-127.0.200.255")
    return out


def answers(addr: str) -> bool:
    return int(addr.rsplit(".", 1)[1]) % 2 == 1


def ip_u32(addr: str) -> int:
    return int.from_bytes(socket.inet_aton(addr), "big")


def u32_ip(value: int) -> str:
    return socket.inet_ntoa(int(value).to_bytes(4, "big"))


# ---------------------------------------------------------------------------------------
# /proc probes


def kamailio_pids(main_pid: int) -> list[int]:
    """The main process and every process it forked (all Kamailio processes)."""
    pids = [main_pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == main_pid:
            pids.append(int(entry))
    return pids


def cpu_ns(pids: Iterable[int]) -> int:
    """CPU time (user+system, ns) of these processes, every thread included.

    ``/proc/<pid>/task/<tid>/schedstat`` (ns since the thread started) when available, else
    ``utime+stime`` from ``/proc/<pid>/stat`` (clock ticks).
    """
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            part = 0
            for tid in tasks:
                part += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            total += part
        except (OSError, ValueError, IndexError):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK
            except OSError:
                pass
    return total


def udp_socket_stats(ip: str, port: int) -> dict[str, int] | None:
    """``drops`` and queued bytes of the UDP socket bound to ip:port (``/proc/net/udp``)."""
    want = f"{socket.inet_aton(ip)[::-1].hex().upper()}:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == want:
            return {"drops": int(f[-1]), "rx_queue": int(f[4].split(":")[1], 16)}
    return None


# ---------------------------------------------------------------------------------------
# BINRPC client (ka_core.binrpc codec) for Kamailio's ctl and ka-kemi's socket


class BinrpcClient:
    def __init__(self, path: Path | str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.reader = binrpc.PacketReader(max_packet=256 << 20)
        self.cookie = random.randint(1, 1 << 30)

    def send(self, method: str, *params: object) -> None:
        self.cookie += 1
        self.sock.sendall(binrpc.encode_request(self.cookie, method, list(params)))  # type: ignore[arg-type]

    def receive(self) -> tuple[bool, list[object], int]:
        """(is_fault, values, reply bytes) of the next reply."""
        while (packet := self.reader.next_packet()) is None:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            self.reader.feed(data)
        fault, values = binrpc.decode_reply(packet)
        return fault, values, len(packet)

    def call(self, method: str, *params: object) -> tuple[bool, list[object], int]:
        self.send(method, *params)
        return self.receive()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BinrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kamcmd(socket_path: Path | str, *args: str, timeout: float = 20) -> tuple[int, str, str, float]:
    """Stock kamcmd: (exit code, stdout, stderr, seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [KAMCMD, "-s", f"unix:{socket_path}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.returncode, out.stdout, out.stderr, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------
# Kamailio instances


@dataclass(kw_only=True)
class BenchKamailio(HarnessKamailio):
    """The harness launcher (``-x fm``, ``-m``, ``-M 16``, stop by PID) with bench defaults."""

    side: str = "ka"
    started_at: float = 0.0
    ready_at: float = 0.0
    cfg_extra: str = ""
    """Lines appended before ``cfgengine`` (e.g. ``mhomed=1``)."""

    def start(self, wait: bool = True) -> BenchKamailio:
        self.started_at = time.time()
        super().start(wait=False)
        assert self.proc is not None
        track(self.proc)
        if wait:
            self.wait_ready()
            self.ready_at = time.time()
        return self

    def wait_ready(self) -> None:
        try:
            super().wait_ready()
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{self.side} kamailio did not start: {str(exc)[-3000:]}") from None

    def cfg_text(self) -> str:
        text = super().cfg_text()
        if self.cfg_extra:
            text = text.replace('cfgengine "python"', self.cfg_extra + '\ncfgengine "python"')
        return text

    def all_pids(self) -> list[int]:
        assert self.proc is not None
        return kamailio_pids(self.proc.pid)

    def cpu_ns(self) -> int:
        return cpu_ns(self.all_pids())

    def ctl_call(self, method: str, *params: object) -> list[object]:
        with BinrpcClient(self.ctl_socket) as c:
            fault, values, _ = c.call(method, *params)
        if fault:
            raise RuntimeError(f"{method}: {values}")
        return values

    def shm(self) -> dict[str, int]:
        (value,) = self.ctl_call("core.shmmem")
        return {k: int(v) for k, v in value.members}  # type: ignore[attr-defined]

    def processes(self) -> list[tuple[int, str]]:
        """(pid, description) of every process, from ``core.psx``."""
        out = []
        for item in self.ctl_call("core.psx"):
            members = dict(item.members)  # type: ignore[attr-defined]
            out.append((int(members["PID"]), str(members.get("DSC", ""))))
        return out

    def worker_for(self, sock: str) -> int:
        """PID of the (first) UDP receiver of ``ip:port``."""
        for pid, dsc in self.processes():
            if "udp receiver" in dsc and sock in dsc:
                return pid
        raise RuntimeError(f"no udp receiver for {sock}: {self.processes()}")

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            for pid in self.all_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        try:
            return super().stop()
        except RuntimeError:
            return -9

    def log_errors(self, limit: int = 20) -> list[str]:
        rx = re.compile(r"ERROR|CRITICAL|BUG|Traceback|no more (shm|pkg)|out of memory", re.I)
        return [ln for ln in self.log().splitlines() if rx.search(ln)][:limit]


@dataclass(kw_only=True)
class KaKemi(BenchKamailio):
    """ka-kemi: the repository's kamailio.cfg with a bench route script."""

    side: str = "ka"
    script: Path = ROUTE_KA


@dataclass(kw_only=True)
class CKeepalive(BenchKamailio):
    """The C keepalive module: bench/cfg/c_keepalive.cfg, destinations as modparams."""

    side: str = "c"
    script: Path = ROUTE_C
    destinations: list[str] = field(default_factory=list)

    def cfg_text(self) -> str:
        values: dict[str, str | int] = {
            "LISTEN_UDP": f"udp:{self.ip}:{self.port}",
            "LISTEN_TCP": f"tcp:{self.ip}:{self.port}",
            "KA_SCRIPT": f'"{self.script}"',
            "KA_CTL_FORWARD": f'"{self.ctl_socket}"',
            "KA_PING_INTERVAL": PING_INTERVAL_S,
            "KA_PING_TIMEOUT_MS": FR_TIMER_MS,
        }
        values.update({k: v for k, v in self.defines.items() if not k.startswith("KA_DEST")})
        header = "".join(f"#!define {k} {v}\n" for k, v in values.items())
        body = C_CFG.read_text()
        body = body.replace("children=2\n", f"children={self.children}\n", 1)
        dests = "".join(f'modparam("keepalive", "destination", "{d}")\n' for d in self.destinations)
        body = body.replace("# @DESTINATIONS@\n", dests, 1)
        if self.cfg_extra:
            body = body.replace('cfgengine "python"', self.cfg_extra + '\ncfgengine "python"')
        return "#!KAMAILIO\n" + header + body

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"c kamailio exited at start:\n{self.log()[-3000:]}")
            if self.ctl_socket.exists():
                try:
                    self.ctl_call("core.version")
                    return
                except (OSError, RuntimeError, binrpc.BinrpcError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"c kamailio not ready after 60 s:\n{self.log()[-3000:]}")


def ka_defines(
    destinations: Sequence[str] = (), *, max_destinations: int = 100, **extra: object
) -> dict[str, str | int]:
    """ka-kemi defines matching the C side: interval 5 s, timeout = fr_timer 2000 ms."""
    defines: dict[str, str | int] = {
        "KA_PING_INTERVAL": PING_INTERVAL_S,
        "KA_PING_TIMEOUT_MS": FR_TIMER_MS,
        "KA_DELETE_COUNTER": 0,
        "KA_MAX_DESTINATIONS": max(max_destinations, len(destinations), 1),
        "KA_DESTINATION": '"' + " ".join(destinations) + '"',
    }
    defines.update({k: v if isinstance(v, int) else str(v) for k, v in extra.items()})
    return defines


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


def sip_uri(addr: str, port: int = PEER_PORT) -> str:
    return f"sip:{addr}:{port}"


# ---------------------------------------------------------------------------------------
# responder


@dataclass
class Responder:
    """``bench/responder.py`` as its own process; events are read back with ``events()``."""

    out: Path
    args: list[str] = field(default_factory=lambda: ["--wild", "--answer", "odd"])
    prefix: list[str] = field(default_factory=list)
    """e.g. ``["ip", "netns", "exec", name]`` to run it inside a network namespace."""
    proc: subprocess.Popen | None = None

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

    def events(self):  # -> numpy structured array
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


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def header(title: str, quick: bool) -> None:
    print(f"\n=== {title} ({'quick' if quick else 'full'} mode) ===", flush=True)
