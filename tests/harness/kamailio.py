"""Start a real Kamailio with the repository's kamailio.cfg, for integration tests.

Each instance gets its own 127.x.y.z address, port, work directory, ctl socket and
ka-kemi RPC socket, so two test runs can share the machine.  The cfg written to the work dir
is the repository's kamailio.cfg preceded by ``#!define`` lines (the same defaults an operator
overrides with ``-A``).  Stop is by PID; the log is kept in the work dir and shown on failure.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import rpc_client

REPO = Path(__file__).resolve().parents[2]
KAMAILIO = "/usr/sbin/kamailio"
KAMAILIO_ROOT = os.environ.get("KA_KAMAILIO_ROOT", "")
"""A Debian root with another Kamailio (the version matrix, tests/matrix/run.sh): Kamailio
runs there through chroot, same PID, with the paths the cfg names bind-mounted."""
VERSION = re.compile(r"^kamailio \d+\.\d+\.\d+ ")


def kamailio_command() -> list[str]:
    return ["chroot", KAMAILIO_ROOT, KAMAILIO] if KAMAILIO_ROOT else [KAMAILIO]


READY_TIMEOUT_S = 20.0
CRASH_PATTERNS = re.compile(
    r"exited by a signal|Segmentation fault|core dumped|BUG:|Traceback|pinger core error",
)


def _bindable(ip: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((ip, port))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((ip, port))
    except OSError:
        return False
    return True


def free_address() -> tuple[str, int]:
    """A random loopback address and a port free there for both UDP and TCP."""
    for _ in range(200):
        ip = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        port = random.randint(20000, 60000)
        if _bindable(ip, port):
            return ip, port
    raise RuntimeError("no free loopback address/port found")


def free_udp_tcp_port(ip: str) -> int:
    """A port free for both UDP and TCP on ``ip``."""
    for _ in range(200):
        port = random.randint(20000, 60000)
        if _bindable(ip, port):
            return port
    raise RuntimeError(f"no free UDP+TCP port on {ip}")


def free_port(ip: str) -> int:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for _ in range(200):
        port = random.randint(20000, 60000)
        with socket.socket(family, socket.SOCK_STREAM) as t:
            try:
                t.bind((ip, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port on {ip}")


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for TLS tests (openssl CLI)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=ka-kemi-test", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    return cert, key


@dataclass
class Kamailio:
    workdir: Path
    defines: dict[str, str | int] = field(default_factory=dict)
    script: Path = REPO / "tests" / "integration" / "scripts" / "ka_routes.py"
    cfg_file: Path = REPO / "kamailio.cfg"
    """The cfg the #!define header goes in front of (kamailio-native.cfg for native tests)."""
    children: int = 2
    shm_mb: int = 64
    extra_args: list[str] = field(default_factory=list)
    ip: str = ""
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    tls: bool = False
    tls_port: int = 0
    cfg_edit: Callable[[str], str] | None = None
    """Changes to the repository's kamailio.cfg text (a misconfiguration under test)."""

    def __post_init__(self) -> None:
        if not self.ip:
            self.ip, self.port = free_address()
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def _path_define(self, name: str, default: str) -> Path:
        return Path(str(self.defines.get(name, default)).strip('"'))

    @property
    def ctl_socket(self) -> Path:
        return self._path_define("KA_CTL_SOCKET", str(self.workdir / "ctl.sock"))

    @property
    def rpc_socket(self) -> Path:
        return self._path_define("KA_RPC_SOCKET", str(self.workdir / "ka.sock"))

    @property
    def jsonrpc_socket(self) -> Path:
        """ka-kemi's datagram socket for kamcli."""
        return self._path_define("KA_JSONRPC_SOCKET", str(self.workdir / "jsonrpc.sock"))

    @property
    def jsonrpcs_socket(self) -> Path:
        """Kamailio's own jsonrpcs datagram socket."""
        return self._path_define("KA_JSONRPCS_SOCKET", str(self.workdir / "jsonrpcs.sock"))

    def cfg_text(self) -> str:
        values: dict[str, str | int] = {
            "LISTEN_UDP": f"udp:{self.ip}:{self.port}",
            "LISTEN_TCP": f"tcp:{self.ip}:{self.port}",
            "KA_SCRIPT": f'"{self.script}"',
            "KA_CTL_SOCKET": f'"{self.ctl_socket}"',
            "KA_CTL_FORWARD": f'"{self.ctl_socket}"',
            "KA_RPC_SOCKET": f'"{self.rpc_socket}"',
            "KA_JSONRPC_SOCKET": f'"{self.jsonrpc_socket}"',
            "KA_JSONRPCS_SOCKET": f'"{self.jsonrpcs_socket}"',
            "KA_JSONRPC_FORWARD": f'"{self.jsonrpcs_socket}"',
            "KA_PING_INTERVAL": 1,
            "KA_PING_TIMEOUT_MS": 1000,
            "KA_DESTINATION": '""',
        }
        if self.tls:
            values.update(self._tls_defines())
        values.update(self.defines)
        header = "".join(f"#!define {k} {v}\n" for k, v in values.items())
        body = self.cfg_file.read_text()
        if self.cfg_edit is not None:
            body = self.cfg_edit(body)
        body = body.replace("children=2\n", f"children={self.children}\n", 1)
        return "#!KAMAILIO\n" + header + body

    def _tls_defines(self) -> dict[str, str | int]:
        """Self-signed certificate, TLS listener on a free port, no peer verification."""
        cert, key = make_certificate(self.workdir)
        self.tls_port = free_port(self.ip)
        tls_cfg = self.workdir / "tls.cfg"
        tls_cfg.write_text(
            f"[server:default]\nmethod = TLSv1.2+\ncertificate = {cert}\nprivate_key = {key}\n"
            "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
            "require_certificate = no\n"
        )
        return {
            "WITH_TLS": 1,
            "LISTEN_TLS": f"tls:{self.ip}:{self.tls_port}",
            "KA_TLS_CONFIG": f'"{tls_cfg}"',
        }

    def start(self, wait: bool = True) -> Kamailio:
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(self.cfg_text())
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*kamailio_command(), "-f", str(cfg), "-DD", "-E", "-w", str(self.workdir), "-x", "fm",
             "-m", str(self.shm_mb), "-M", "16", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )  # fmt: skip
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited at start:\n{self.log()}")
            if "pinger started" in self.log() and self.ctl_socket.exists() and self._all_forked():
                return
            time.sleep(0.05)
        raise TimeoutError(f"kamailio not ready after {READY_TIMEOUT_S} s:\n{self.log()}")

    def _all_forked(self) -> bool:
        """The main process forks the TCP processes after ``child_init(0)``, where it waits
        for the pinger: only once the TCP main process exists is the start-up over (a
        SIGTERM during those forks leaves a TCP worker behind, a Kamailio race)."""
        return "tcp main process" in self.ctl("core.psx")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> str:
        """Wait until ``pattern`` (regex) matched ``count`` times; returns the last match line."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            lines = [ln for ln in self.log().splitlines() if rx.search(ln)]
            if len(lines) >= count:
                return lines[count - 1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} not seen {count}x in {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def kamcmd(self, *args: str, socket_path: Path | None = None, timeout: float = 10) -> str:
        """Run the stock kamcmd against the ka-kemi socket (default) and return stdout+stderr."""
        path = socket_path or self.rpc_socket
        _rc, out, err, _secs = rpc_client.kamcmd(path, *args, timeout=timeout)
        return out + err

    def ctl(self, *args: str) -> str:
        """kamcmd against Kamailio's own ctl socket."""
        return self.kamcmd(*args, socket_path=self.ctl_socket)

    def pids(self) -> list[int]:
        text = self.ctl("core.psx")
        return [int(p) for p in re.findall(r"PID:\s*(\d+)", text)]

    def stop(self) -> int:
        """SIGTERM by PID, then KILL after 10 s; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
                raise RuntimeError(f"kamailio did not stop on SIGTERM:\n{self.log()}") from None
        return self.proc.returncode

    def crash_lines(self) -> list[str]:
        return [ln for ln in self.log().splitlines() if CRASH_PATTERNS.search(ln)]
