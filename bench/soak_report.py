"""The soak's verdict and plot (see ``bench.soak``): a least-squares slope per hour of each
memory series after the warm-up, and a 2×2 plot of shm and each process's memory.

"No steady growth" for a series: its slope after the warm-up is below the threshold, or the
slope of the second half of that window is (growth that has stopped, such as a cache filled
once, is not steady).  Threshold: 1 % of the series' median per hour, at least 16 KiB/h:
``VmRSS`` also counts shared pages a process touches (shm, ka-kemi's fixed-size table), so
its growth is shown but not counted: private memory is pkg and ``Private_Dirty``.
RSS and ``Private_Dirty`` move in 4 KiB pages, and one page appearing mid-way through a
110-minute fit is a slope of about 3 KiB/h, so a few single pages do not count as growth.

    .venv/bin/python -m bench.soak_report SAMPLES.jsonl [--plot F] [--warmup-s 600]

rebuilds the table (and plot) from a samples file, e.g. of a run cut off before its end.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import fmt, md_table, median

SHARE_PER_H = 0.01
FLOOR_PER_H = 16 * 1024
METRICS = (("pkg_real_used", 1, "pkg real_used"), ("Private_Dirty", 1024, "Private_Dirty"),
           ("VmRSS", 1024, "VmRSS"))  # fmt: skip
"""(field of a process sample, bytes per unit, label)."""

Series = dict[str, list[tuple[float, float]]]


def series(samples: Sequence[dict[str, Any]]) -> Series:
    """``<process> | <metric>``, ``all processes | shm real_used`` and ``all processes |
    Private_Dirty``: each a list of (minute, bytes).  A process is named by its
    ``pkg.stats`` description (the PID is added if two share one)."""
    out: Series = {}
    for s in samples:
        minute = float(s["t_s"]) / 60
        out.setdefault("all processes | shm real_used", []).append(
            (minute, float(s["shm"]["real_used"]))
        )
        seen: dict[str, int] = {}
        total_pd = 0.0
        for p in s["processes"]:
            name = str(p["desc"])
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name} (pid {p['pid']})"
            for key, unit, label in METRICS:
                if key in p:
                    out.setdefault(f"{name} | {label}", []).append((minute, float(p[key]) * unit))
            total_pd += float(p.get("Private_Dirty", 0)) * 1024
        out.setdefault("all processes | Private_Dirty", []).append((minute, total_pd))
    return out


def slope_per_h(points: Sequence[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    t = np.array([p[0] for p in points]) / 60
    v = np.array([p[1] for p in points])
    if float(t.max() - t.min()) <= 0:
        return None
    return float(np.polyfit(t, v, 1)[0])


def judge(name: str, points: list[tuple[float, float]], warmup_min: float) -> dict[str, Any]:
    after = [p for p in points if p[0] >= warmup_min]
    half = [p for p in after if p[0] >= (after[0][0] + after[-1][0]) / 2] if after else []
    slope, late = slope_per_h(after), slope_per_h(half)
    mid = median([p[1] for p in after]) if after else float("nan")
    limit = max(SHARE_PER_H * mid, FLOOR_PER_H) if after else float("nan")
    if slope is None or late is None:
        verdict = "too short"
    elif slope >= limit and late >= limit:
        verdict = "grows (shared pages included)" if name.endswith("VmRSS") else "GROWTH"
    else:
        verdict = "no steady growth"
    return {
        "name": name, "points": len(after), "first": after[0][1] if after else None,
        "last": after[-1][1] if after else None, "median": mid, "slope_per_h": slope,
        "slope_second_half_per_h": late, "limit_per_h": limit, "verdict": verdict,
        "start_to_end": points[-1][1] - points[0][1] if points else None,
    }  # fmt: skip


def analyse(samples: Sequence[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    judged = [judge(n, pts, warmup_s / 60) for n, pts in series(samples).items()]
    churn = [s["churn"] for s in samples[1:]]
    return {
        "warmup_s": warmup_s,
        "rule": f"slope after warm-up and slope of its second half both >= max({SHARE_PER_H:.0%}"
        f" of the median, {FLOOR_PER_H // 1024} KiB) per hour = steady growth",
        "samples": len(samples),
        "minutes": float(samples[-1]["t_s"]) / 60 if samples else 0.0,
        "series": judged,
        "growing": [j["name"] for j in judged if j["verdict"] == "GROWTH"],
        "churn": {
            "adds": sum(c["added"] for c in churn), "dels": sum(c["deleted"] for c in churn),
            "lists": sum(c["lists"] for c in churn), "faults": sum(c["faults"] for c in churn),
            "listed_min": min((c["listed"] for c in churn), default=None),
            "listed_max": max((c["listed"] for c in churn), default=None),
            "list_ms_p50": median([c["list_ms_p50"] for c in churn if c["list_ms_p50"]]),
            "list_ms_max": max((c["list_ms_max"] or 0 for c in churn), default=None),
            "states_last": churn[-1]["states"] if churn else {},
        },
    }  # fmt: skip


def kib(value: float | None) -> str:
    return "–" if value is None else fmt(value / 1024)


def table(analysis: dict[str, Any]) -> str:
    rows = [
        [*j["name"].split(" | ", 1), kib(j["median"]), kib(j["slope_per_h"]),
         kib(j["slope_second_half_per_h"]), kib(j["limit_per_h"]), kib(j["start_to_end"]),
         j["verdict"]]
        for j in analysis["series"]
    ]  # fmt: skip
    return md_table(
        ["process", "series", "median KiB", "slope KiB/h", "2nd half KiB/h", "limit KiB/h",
         "start→end KiB", "verdict"], rows,
    )  # fmt: skip


def text_report(analysis: dict[str, Any], ended: str) -> str:
    c = analysis["churn"]
    growing = ", ".join(analysis["growing"]) or "none"
    return (
        f"\n{analysis['samples']} samples over {analysis['minutes']:.1f} min (ended: {ended}); "
        f"churn: {c['adds']} adds, {c['dels']} dels, {c['lists']} lists, {c['faults']} faults, "
        f"listed {c['listed_min']}–{c['listed_max']}, list p50 {fmt(c['list_ms_p50'])} ms "
        f"max {fmt(c['list_ms_max'])} ms, states at the end {c['states_last']}\n\n"
        f"{table(analysis)}\n\nrule: {analysis['rule']}\nsteady growth in: {growing}"
    )


def plot(samples: Sequence[dict[str, Any]], analysis: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = series(samples)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    panels = (("shm real_used", "shm real_used (shared by all processes)", "MiB", 2**20),
              ("Private_Dirty", "Private_Dirty per process", "MiB", 2**20),
              ("pkg real_used", "pkg real_used per process", "KiB", 1024),
              ("VmRSS", "VmRSS per process", "MiB", 2**20))  # fmt: skip
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    for ax, (metric, title, unit, scale) in zip(axes.flat, panels, strict=True):
        ax.set_prop_cycle(color=colours)
        for name, pts in data.items():
            if not name.endswith(metric) or name == "all processes | Private_Dirty":
                continue
            label = name.split(" | ")[0][:38]
            ax.plot([p[0] for p in pts], [p[1] / scale for p in pts], ".-", ms=3, label=label)
        ax.axvspan(0, analysis["warmup_s"] / 60, color="grey", alpha=0.12, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[1][0].set_xlabel("minutes (grey: warm-up, not fitted)")
    axes[1][1].set_xlabel("minutes (grey: warm-up, not fitted)")
    handles, labels = axes[0][1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(
        f"ka-kemi churn soak: 1,000 destinations at 1 s, add+del+list every second, "
        f"{analysis['minutes']:.0f} min; series with steady growth: {len(analysis['growing'])}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description="rebuild the soak's table and plot from samples")
    ap.add_argument("samples", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--warmup-s", type=float, default=600.0)
    args = ap.parse_args()
    lines = args.samples.read_text().splitlines()
    samples = [json.loads(line) for line in lines if line.strip()]
    if not samples:
        ap.error(f"{args.samples}: no samples")
    analysis = analyse(samples, args.warmup_s)
    print(text_report(analysis, "rebuilt from the samples file"))
    if args.plot:
        plot(samples, analysis, args.plot)
        print(f"plot {args.plot}")


if __name__ == "__main__":
    main()
