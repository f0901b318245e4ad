"""Benchmark Kamailio instances: the C keepalive module, Kamailio dispatcher and ka-kemi with
the same globals, modules and timers (ping interval 5 s, tm ``fr_timer`` 2000 ms)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, cast

from bench.paths import C_CFG, ROUTE_C, ROUTE_KA
from bench.probes import cpu_ns, kamailio_pids
from bench.procs import track
from ka_core.ops import binrpc
from tests.harness.kamailio import Kamailio as HarnessKamailio
from tests.harness.rpc_client import BinrpcClient

PING_INTERVAL_S = 5
FR_TIMER_MS = 2000


class InstanceArgs(TypedDict):
    """Where an instance listens, its work directory and size: what every benchmark sets."""

    workdir: Path
    ip: str
    port: int
    children: int
    shm_mb: int


@dataclass(kw_only=True)
class BenchKamailio(HarnessKamailio):
    """The harness launcher (``-x fm``, ``-m``, ``-M 16``, stop by PID) with bench defaults."""

    side: str = "ka"
    started_at: float = 0.0
    ready_at: float = 0.0
    cfg_extra: str = ""
    """Lines appended before ``cfgengine`` (e.g. ``mhomed=1``)."""
    route_ip: str = ""
    """The address of a second listener (``LISTEN_EXTRA``) a benchmark sends requests to."""

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

    def ctl_call(self, method: str, *params: binrpc.Value) -> list[binrpc.Value]:
        with BinrpcClient(self.ctl_socket) as c:
            fault, values, _ = c.call(method, *params)
        if fault:
            raise RuntimeError(f"{method}: {values}")
        return values

    def shm(self) -> dict[str, int]:
        (value,) = self.ctl_call("core.shmmem")
        return {k: int(cast(int, v)) for k, v in cast(binrpc.Struct, value).members}

    def processes(self) -> list[tuple[int, str]]:
        """(pid, description) of every process, from ``core.psx``."""
        out: list[tuple[int, str]] = []
        for item in self.ctl_call("core.psx"):
            members = dict(cast(binrpc.Struct, item).members)
            out.append((int(cast(int, members["PID"])), str(members.get("DSC", ""))))
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
                raise RuntimeError(f"{self.side} kamailio exited at start:\n{self.log()[-3000:]}")
            if self.ctl_socket.exists():
                try:
                    self.ctl_call("core.version")
                    return
                except (OSError, RuntimeError, binrpc.BinrpcError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.side} kamailio not ready after 60 s:\n{self.log()[-3000:]}")


def dispatcher_cfg(list_file: Path, uris: Sequence[str], ping_interval_s: int = 0) -> str:
    """Write ``uris`` as dispatcher set 1 into ``list_file``; return the lines that load
    dispatcher.so with it (a ``CKeepalive``'s ``cfg_extra``).

    ``ping_interval_s`` > 0: dispatcher probes every destination of the set itself
    (``ds_probing_mode 1``), OPTIONS through tm from c_keepalive.cfg's ``KA_PING_FROM``, as
    the C keepalive module does; 0: no probing (selection only)."""
    list_file.write_text("".join(f"1 {uri}\n" for uri in uris))
    lines = ['loadmodule "dispatcher.so"', f'modparam("dispatcher", "list_file", "{list_file}")']
    if ping_interval_s:
        lines += [
            f'modparam("dispatcher", "ds_ping_interval", {ping_interval_s})',
            'modparam("dispatcher", "ds_probing_mode", 1)',
            'modparam("dispatcher", "ds_ping_from", KA_PING_FROM)',
            # dispatcher.add 1 s apart (add -> first ping): the default refuses one within 5 s
            'modparam("dispatcher", "reload_delta", 0)',
        ]
    return "\n".join(lines)


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
