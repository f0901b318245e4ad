"""Memory over time (issue 31 item 5): a bounded churn soak of one ka-kemi Kamailio.

    .venv/bin/python -m bench.soak [--minutes 120] [--quick] [--samples F] [--plot F]
                                   [--instance 1-3] [--address-pool N]

1,000 destinations at ``ping_interval`` 1 s (timeout 1000 ms) against ``bench/responder.py``,
half of them answering (odd last octet; the other half time out, so both the reply and the
timeout paths run).  They are added through ``keepalive.add`` at the start (owner ``soak``;
the config's own ``_params`` cannot be deleted), then every second one ``keepalive.add`` of a
new destination, one ``keepalive.del`` of the oldest and a whole ``keepalive.list`` (pages of
500), each through a fresh BINRPC connection to ka-kemi's socket, as an operator's tool does.

Every minute (``--quick``: 3 minutes, every 20 s): shm (``core.shmmem``), every process's pkg
(``pkg.stats``), ``VmRSS`` and ``Private_Dirty``/``Pss`` (``/proc/<pid>/smaps_rollup``) and
the churn's counters.  Each sample is appended to ``--samples`` (JSON lines) as it is taken,
so a cut-off run still leaves its data (``python -m bench.soak_report SAMPLES`` rebuilds the
table and plot from it).  The run stops by itself; Kamailio and the responder are stopped by
PID on every exit path (Ctrl-C and SIGTERM included, which still write the result).

``--address-pool N`` re-adds N addresses in turn instead of new ones (a control run: what
grows with the number of distinct addresses seen stops growing); ``--instance 2`` runs it
beside a first soak on other addresses.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.kamailio import KaKemi, ka_defines
from bench.procs import stop_all, workdir
from bench.recording import machine_facts, write_result
from bench.responder_proc import Responder
from bench.soak_report import analyse, plot, text_report
from bench.stats import median
from ka_core.ops import binrpc
from tests.harness.rpc_client import BinrpcClient

KEPT = 1000
"""Destinations kept throughout."""
LIST_PAGE = 500
"""``keepalive.list`` page size: 500 entries are about 88 KB, under kamcmd's 128 KB limit."""
PLOT = Path(__file__).resolve().parents[1] / "docs" / "bench_soak.png"


@dataclass(frozen=True)
class Plan:
    """Addresses of one soak: ``instance`` 1-3 (two can run side by side) and the pool of
    destination addresses (0: every add is an address never seen before; N > ``KEPT``: the
    adds cycle over N addresses, so per-address caches stop growing)."""

    instance: int = 1
    pool: int = 0

    @property
    def kamailio_ip(self) -> str:
        return f"127.49.0.{self.instance}"

    @property
    def peer_port(self) -> int:
        return 15348 + self.instance

    def dest_uri(self, index: int) -> str:
        """The ``index``-th destination added: ``127.49.X.Y``, X from 10 (instance 1), 70 or
        130, Y 1..254 (odd Y answer)."""
        i = index % self.pool if self.pool else index
        return (
            f"sip:127.49.{10 + 60 * (self.instance - 1) + i // 254}.{i % 254 + 1}:{self.peer_port}"
        )

    def problem(self, seconds: float) -> str:
        """Why this plan cannot run for ``seconds`` ("" if it can)."""
        if self.instance not in (1, 2, 3):
            return "--instance must be 1, 2 or 3"
        if self.pool and self.pool <= KEPT:
            return f"--address-pool must be 0 or more than {KEPT}"
        if (self.pool or KEPT + seconds) // 254 >= 60:
            return "too many addresses for the instance's range: use --address-pool"
        return ""


def smaps_rollup(pid: int) -> dict[str, int]:
    """kB fields of ``/proc/<pid>/smaps_rollup`` and ``VmRSS`` of ``/proc/<pid>/status``."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Dirty"):
                out[name] = int(rest.split()[0])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["VmRSS"] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def members(value: binrpc.Value) -> dict[str, Any]:
    return dict(cast(binrpc.Struct, value).members)


@dataclass
class Churn:
    """The add/del/list traffic between two samples: counts, failures, list times."""

    added: int = 0
    deleted: int = 0
    listed: int = 0
    faults: list[str] = field(default_factory=list)
    list_ms: list[float] = field(default_factory=list)
    last_listed: int = 0
    states: dict[str, int] = field(default_factory=dict)

    def take(self) -> dict[str, object]:
        """This interval's figures, and a fresh count for the next one."""
        out = {
            "added": self.added, "deleted": self.deleted, "lists": self.listed,
            "faults": len(self.faults), "fault_examples": self.faults[:3],
            "list_ms_p50": median(self.list_ms) if self.list_ms else None,
            "list_ms_max": max(self.list_ms) if self.list_ms else None,
            "listed": self.last_listed, "states": dict(self.states),
        }  # fmt: skip
        self.added = self.deleted = self.listed = 0
        self.faults, self.list_ms = [], []
        return out


class Soak:
    """One Kamailio, the responder, the churn's window of destinations and the sampler."""

    def __init__(self, wd: Path, samples: Path, plan: Plan) -> None:
        self.wd, self.samples_path, self.plan = wd, samples, plan
        port = ["--wild", "--port", str(plan.peer_port)]
        self.responder = Responder(Path("/dev/null"), port)
        defines = ka_defines(
            (), max_destinations=KEPT + 100, BENCH_CHECK="none",
            KA_PING_INTERVAL=1, KA_PING_TIMEOUT_MS=1000,
        )  # fmt: skip
        self.kam = KaKemi(
            defines=defines, workdir=wd / "kamailio", ip=plan.kamailio_ip, port=5060,
            children=2, shm_mb=64,
        )  # fmt: skip
        self.oldest = self.next = 0
        self.churn = Churn()
        self.t0 = 0.0

    def call(self, client: BinrpcClient, method: str, *params: binrpc.Value) -> bool:
        fault, values, _ = client.call(method, *params)
        if fault:
            self.churn.faults.append(f"{method} {params[:1]}: {values}"[:200])
        return not fault

    def fill(self) -> None:
        """Add the first ``KEPT`` destinations; one retried after 0.2 s if the add rate
        limit (``KA_RPC_ADD_RATE``, left at its default) refuses it."""
        with BinrpcClient(self.kam.rpc_socket) as client:
            while self.next < KEPT:
                for _attempt in range(50):
                    fault, values, _ = client.call(
                        "keepalive.add", self.plan.dest_uri(self.next), "soak"
                    )
                    if not fault:
                        break
                    time.sleep(0.2)
                else:
                    raise RuntimeError(f"keepalive.add {self.plan.dest_uri(self.next)}: {values}")
                self.next += 1

    def tick(self) -> None:
        """One second's traffic: add the next destination, delete the oldest, list all (in
        pages: a whole list of 1,000 is over kamcmd's reply limit and is refused)."""
        listed: list[binrpc.Value] = []
        with BinrpcClient(self.kam.rpc_socket) as client:
            if self.call(client, "keepalive.add", self.plan.dest_uri(self.next), "soak"):
                self.churn.added += 1
            self.next += 1
            if self.call(client, "keepalive.del", self.plan.dest_uri(self.oldest), "soak"):
                self.churn.deleted += 1
            self.oldest += 1
            started = time.perf_counter()
            while True:
                fault, values, _ = client.call("keepalive.list", len(listed), LIST_PAGE)
                if fault:
                    self.churn.faults.append(f"keepalive.list {len(listed)}: {values}"[:200])
                    return
                listed += values
                if len(values) < LIST_PAGE:
                    break
        self.churn.list_ms.append((time.perf_counter() - started) * 1000)
        self.churn.listed += 1
        self.churn.last_listed = len(listed)
        states: dict[str, int] = {}
        for entry in listed:
            state = str(members(entry).get("state"))
            states[state] = states.get(state, 0) + 1
        self.churn.states = states

    def sample(self) -> dict[str, object]:
        """shm, every process's pkg and private memory, the churn since the last sample;
        appended to the samples file at once."""
        (shm,) = self.kam.ctl_call("core.shmmem")
        processes = []
        for item in self.kam.ctl_call("pkg.stats"):
            pkg = members(item)
            pid = int(pkg["pid"])
            processes.append(
                {"pid": pid, "desc": str(pkg["desc"]), "rank": pkg["rank"],
                 "pkg_used": pkg["used"], "pkg_real_used": pkg["real_used"],
                 "pkg_frags": pkg["total_frags"], **smaps_rollup(pid)}
            )  # fmt: skip
        record = {
            "t_s": round(time.time() - self.t0, 1), "wall": time.time(),
            "shm": {k: int(v) for k, v in members(shm).items()},
            "processes": processes, "churn": self.churn.take(),
            "destinations_added_total": self.next,
        }  # fmt: skip
        with self.samples_path.open("a") as out:
            out.write(json.dumps(record) + "\n")
        return record

    def run(self, seconds: float, every_s: float) -> tuple[list[dict[str, object]], str]:
        """Samples, and why the run ended (``done``, ``interrupted``, ``kamailio exited``
        or an error)."""
        self.responder.start()
        self.kam.start()
        self.fill()
        self.t0 = time.time()
        samples = [self.sample()]
        end = self.t0 + seconds
        next_tick, next_sample = self.t0 + 1.0, self.t0 + every_s
        why = "done"
        try:
            while time.time() < end:
                assert self.kam.proc is not None
                if self.kam.proc.poll() is not None:
                    why = f"kamailio exited ({self.kam.proc.returncode})"
                    break
                time.sleep(max(0.0, min(next_tick, next_sample) - time.time()))
                now = time.time()
                if now >= next_tick:
                    self.tick()
                    next_tick = max(next_tick + 1.0, now + 0.5)
                if now >= next_sample:
                    samples.append(self.sample())
                    print(progress(samples[-1]), flush=True)
                    next_sample += every_s
        except (KeyboardInterrupt, SystemExit):
            why = "interrupted"
        except (OSError, RuntimeError, binrpc.BinrpcError) as exc:
            why = f"{type(exc).__name__}: {exc}"[:300]
        if why in ("done", "interrupted") and self.kam.proc and self.kam.proc.poll() is None:
            samples.append(self.sample())
        return samples, why

    def stop(self) -> None:
        self.kam.stop()
        self.responder.stop()


def progress(record: dict[str, Any]) -> str:
    pd = sum(p.get("Private_Dirty", 0) for p in record["processes"])
    churn = record["churn"]
    return (
        f"  t={record['t_s']:.0f}s shm real_used {record['shm']['real_used'] / 1024:.0f} KB, "
        f"Private_Dirty (all) {pd} kB, listed {churn['listed']}, adds {churn['added']}, "
        f"dels {churn['deleted']}, faults {churn['faults']}, list p50 {churn['list_ms_p50']} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=120.0, help="length of the churn (120)")
    ap.add_argument("--quick", action="store_true", help="3 minutes, a sample every 20 s")
    ap.add_argument("--samples", type=Path, help="JSON-lines file the samples go to")
    ap.add_argument("--plot", type=Path, help="PNG (default docs/bench_soak.png, full mode)")
    ap.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    ap.add_argument("--instance", type=int, default=1, help="1-3: addresses of a second soak")
    ap.add_argument("--address-pool", type=int, default=0, help="reuse N addresses (0: new)")
    args = ap.parse_args()
    minutes, every_s, warmup_s = (3.0, 20.0, 60.0) if args.quick else (args.minutes, 60.0, 600.0)
    if minutes <= 0 or minutes * 60 <= warmup_s:
        ap.error(f"--minutes must be longer than the {warmup_s / 60:.0f}-minute warm-up")
    plan = Plan(args.instance, args.address_pool)
    if problem := plan.problem(minutes * 60):
        ap.error(problem)
    wd = workdir("soak")
    samples_path = args.samples or wd / "samples.jsonl"
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    samples_path.write_text("")
    print(
        f"=== soak: {KEPT} destinations, {minutes:g} min, {plan}, samples -> {samples_path}",
        flush=True,
    )
    facts = machine_facts()
    soak = Soak(wd, samples_path, plan)
    try:
        samples, why = soak.run(minutes * 60, every_s)
        errors = soak.kam.log_errors()
    finally:
        soak.stop()
        stop_all()
    analysis = analyse(samples, warmup_s)
    print(text_report(analysis, why))
    plot_path = args.plot or (None if args.quick else PLOT)
    if plot_path is not None and len(samples) > 1:
        plot(samples, analysis, plot_path)
        print(f"plot {plot_path}")
    result = {
        "benchmark": "soak", "mode": "quick" if args.quick else "full", "machine": facts,
        "params": {"kept": KEPT, "minutes": minutes, "sample_every_s": every_s,
                   "warmup_s": warmup_s, "ping_interval_s": 1, "answering": "odd half",
                   "instance": plan.instance, "address_pool": plan.pool},
        "ended": why, "log_errors": errors, "analysis": analysis, "samples": samples,
    }  # fmt: skip
    if not args.no_json:
        print(f"wrote {write_result('soak', result)}")


if __name__ == "__main__":
    main()
