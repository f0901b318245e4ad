"""The pinging-scale benchmark's command line, address plan and tables, on made-up runs: what
the lead reads in the console and on docs/benchmarks.md."""

from __future__ import annotations

import argparse
import re

import pytest

from bench.addresses import run_plan
from bench.cli import side_list, size_list
from bench.ping_scale_run import SIDES, Run
from bench.ping_scale_tables import make_tables


def run(side: str, n: int, cpu: float, rep: int = 0) -> Run:
    return {"side": side, "n": n, "rep": rep, "cpu_pct_raw": cpu, "us_per_ping": 40.0,
            "pings_per_expected": 1.0, "shm_kb_per_dest_steady": 3.0, "max_per_100ms": 10,
            "mean_per_100ms": 10.0,
            "interval_err_ms": {"p50": 1.0, "p99": 2.0, "max": 3.0, "intervals": 9}}  # fmt: skip


def target(tables: dict[str, str], n: str, what: str) -> list[str]:
    for line in tables["targets"].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == n and what in cells[1]:
            return cells
    raise AssertionError(f"no {what!r} row at N={n}:\n{tables['targets']}")


def test_the_targets_are_issue_31s_and_dispatcher_must_be_beaten_not_matched() -> None:
    runs = [run("none", 0, 0.1), run("ka", 0, 0.1)]
    for n, ka, c, ds in ((100, 0.3, 0.2, 0.2), (1000, 1.0, 1.0, 1.0), (10_000, 8.0, 10.0, 9.0)):
        runs += [run("ka", n, ka), run("c", n, c), run("ds", n, ds)]
    tables = make_tables(runs, [100, 1000, 10_000], SIDES)
    assert target(tables, "100", "1.3× C")[3].startswith("MISSED")  # 1.5x
    assert target(tables, "1,000", "0.8× C")[3].startswith("MISSED")
    assert target(tables, "1,000", "dispatcher")[2:] == ["1.00", "MISSED by 0.00x (0 % over)"]
    assert target(tables, "10,000", "0.6× C")[3].startswith("MISSED")  # 0.8x
    assert target(tables, "10,000", "dispatcher")[2:] == ["0.89", "met"]
    row = next(ln for ln in tables["ratios"].splitlines() if ln.startswith("| 10,000 "))
    assert "| 0.80 | 0.89 |" in row, "ka/C next to ka/ds, both from the same repetition"


def test_a_dispatcher_run_that_failed_is_no_ratio_and_says_why() -> None:
    runs = [run("none", 0, 0.1), run("ka", 1000, 1.0), run("c", 1000, 1.0)]
    runs.append({"side": "ds", "n": 1000, "rep": 0, "failed": "RuntimeError: no ping reached"})
    tables = make_tables(runs, [1000], SIDES)
    assert target(tables, "1,000", "dispatcher")[2:] == ["–", "not measured"]
    assert "dispatcher failed: RuntimeError: no ping reached" in tables["ratios"]
    assert "**failed: RuntimeError: no ping reached**" in tables["sides"]


def test_a_side_left_out_is_named_under_the_ratios() -> None:
    tables = make_tables([run("none", 0, 0.1), run("ka", 100, 0.3)], [100], ["ka"])
    assert "not run" in tables["ratios"]
    assert tables["ratios"].endswith("Not run (--sides): C, dispatcher.")


def test_sides_and_sizes_parse_and_refuse_bad_input() -> None:
    assert side_list(SIDES)("ds, ka") == ["ds", "ka"]
    assert size_list("100,1000") == [100, 1000]
    for bad in ("", "ka,x", "ka,ka"):
        with pytest.raises(argparse.ArgumentTypeError, match="distinct sides out of ka,c,ds"):
            side_list(SIDES)(bad)
    for bad in ("0", "100,x", "-5", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="positive numbers"):
            size_list(bad)


def test_the_address_plan_moves_only_to_a_valid_net_and_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run_plan() == ("127.99", 15300)
    monkeypatch.setenv("KA_BENCH_NET", "127.48")
    monkeypatch.setenv("KA_BENCH_PEER_PORT", "15348")
    assert run_plan() == ("127.48", 15348)
    monkeypatch.setenv("KA_BENCH_NET", "10.0")
    with pytest.raises(ValueError, match=re.escape("KA_BENCH_NET '10.0': expected 127.N")):
        run_plan()
    monkeypatch.setenv("KA_BENCH_NET", "127.48")
    monkeypatch.setenv("KA_BENCH_PEER_PORT", "80")
    with pytest.raises(ValueError, match="KA_BENCH_PEER_PORT '80'"):
        run_plan()
