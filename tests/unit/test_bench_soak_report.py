"""The soak's growth verdict (bench/soak_report.py): a leak is called growth, a flat line, a
warm-up step and a few single pages are not, and a bad samples file is refused clearly."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import soak_report

MIB = 2**20


def samples(private_kb: list[float], every_s: float = 60.0) -> list[dict[str, Any]]:
    """One process whose Private_Dirty follows ``private_kb``, shm and pkg flat."""
    return [
        {
            "t_s": i * every_s,
            "shm": {"real_used": 2 * MIB},
            "processes": [
                {
                    "pid": 7,
                    "desc": "RTIMER EXEC child=0 timer=ka",
                    "pkg_real_used": 560_000,
                    "Private_Dirty": kb,
                    "VmRSS": 30_000,
                }
            ],
            "churn": {
                "added": 60,
                "deleted": 60,
                "lists": 60,
                "faults": 0,
                "listed": 1000,
                "list_ms_p50": 30.0,
                "list_ms_max": 60.0,
                "states": {"1": 500},
            },
        }
        for i, kb in enumerate(private_kb)
    ]


def verdict_of(data: list[dict[str, Any]], name: str, warmup_s: float = 600.0) -> str:
    analysis = soak_report.analyse(data, warmup_s)
    (judged,) = [j for j in analysis["series"] if j["name"] == name]
    return str(judged["verdict"])


PD = "RTIMER EXEC child=0 timer=ka | Private_Dirty"


def test_a_steady_leak_is_growth() -> None:
    # 10 MiB and 1 MiB/h (about 10 %/h) for two hours
    data = samples([10_240 + 1024 * i / 60 for i in range(121)])
    analysis = soak_report.analyse(data, 600.0)
    assert PD in analysis["growing"]
    (judged,) = [j for j in analysis["series"] if j["name"] == PD]
    assert judged["slope_per_h"] == pytest.approx(MIB, rel=0.01)


def test_flat_series_are_not_growth() -> None:
    data = samples([10_240.0] * 121)
    analysis = soak_report.analyse(data, 600.0)
    assert analysis["growing"] == []
    assert all(j["verdict"] == "no steady growth" for j in analysis["series"])


def test_a_step_that_stops_is_not_steady_growth() -> None:
    # 2 MiB more at minute 30, flat after: the full-window slope is over the limit, the
    # second half's is not
    data = samples([10_240.0 if i < 30 else 12_288.0 for i in range(121)])
    assert verdict_of(data, PD) == "no steady growth"


def test_single_pages_are_under_the_floor() -> None:
    # a 1 MiB process gaining one 4 KiB page at minutes 40, 70 and 100
    data = samples([1024.0 + 4 * sum(i >= m for m in (40, 70, 100)) for i in range(121)])
    assert verdict_of(data, PD) == "no steady growth"


def test_too_few_points_after_the_warm_up() -> None:
    data = samples([10_240.0] * 11)  # 10 minutes: nothing after a 10-minute warm-up but one
    assert verdict_of(data, PD) == "too short"


def test_vmrss_growth_is_shown_but_not_counted() -> None:
    data = samples([10_240.0] * 121)
    for i, s in enumerate(data):
        s["processes"][0]["VmRSS"] = 30_000 + 1024 * i / 60
    analysis = soak_report.analyse(data, 600.0)
    assert verdict_of(data, "RTIMER EXEC child=0 timer=ka | VmRSS").startswith("grows")
    assert analysis["growing"] == []


def test_report_from_a_samples_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples([10_240.0] * 30)))
    monkeypatch.setattr(sys, "argv", ["soak_report", str(path)])
    soak_report.main()
    out = capsys.readouterr().out
    assert "| RTIMER EXEC child=0 timer=ka | Private_Dirty | 10240 |" in out
    assert "steady growth in: none" in out


def test_an_empty_samples_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text("\n")
    monkeypatch.setattr(sys, "argv", ["soak_report", str(path)])
    with pytest.raises(SystemExit) as exc:
        soak_report.main()
    assert exc.value.code == 2
    assert "no samples" in capsys.readouterr().err
