"""Write docs/benchmarks.md (the generated part) and docs/bench_scale.png from result JSONs.

    .venv/bin/python -m bench.report                  # newest full-mode result of each benchmark
    .venv/bin/python -m bench.report a.json b.json    # these files

Only the text between ``<!-- auto:start -->`` and ``<!-- auto:end -->`` is replaced; the rest
of the page (method, findings) is kept as written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, TypeAlias

from bench.stats import median

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "bench_scale.png"
START, END = "<!-- auto:start -->", "<!-- auto:end -->"
NAMES = ("routing_cost", "ping_scale", "moonshot", "churn", "detection", "rpc_scale")
TITLES = {
    "routing_cost": "1. Routing-path cost (`ka_is_alive` vs C `is_alive` in a KEMI Python route)",
    "ping_scale": "2. Pinging scale (N destinations, interval 5 s, half answering)",
    "moonshot": "3. The moonshot: 100,000 destinations at 30 s, 50,000 at 5 s (ka-kemi alone)",
    "churn": "4. Table churn: a million add/del cycles",
    "detection": "5. Detection latency (routing-path state, both sides, same peers)",
    "rpc_scale": "6. Management at scale (`keepalive.*` RPC)",
}
# A result file as json.loads returns it: its schema is the benchmark's (see each one's main).
ResultFile: TypeAlias = dict[str, Any]


def newest(name: str) -> Path | None:
    files = sorted(RESULTS.glob(f"{name}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files:
        if json.loads(path.read_text()).get("mode") == "full":
            return path
    return files[0] if files else None


def _medians(
    pts: list[tuple[int, float | None, float | None, bool]],
) -> list[tuple[int, float | None, float | None, bool]]:
    out = []
    for n in sorted({p[0] for p in pts}):
        same = [p for p in pts if p[0] == n]
        us = [p[1] for p in same if p[1] is not None]
        err = [p[2] for p in same if p[2] is not None]
        out.append((n, median(us) if us else None, median(err) if err else None,
                    any(p[3] for p in same)))  # fmt: skip
    return out


def plot(scale: ResultFile, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in scale["runs"] if "failed" not in r and "crashed" not in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    sides = (("ka", "ka-kemi", "o-"), ("c", "C keepalive", "s--"), ("ds", "dispatcher", "^:"))
    for side, label, style in sides:
        pts = sorted(
            (
                r["n"],
                r.get("us_per_ping"),
                (r.get("interval_err_ms") or {}).get("p99"),
                bool(r.get("shm_error_lines")),
            )
            for r in runs
            if r["side"] == side and r["n"]
        )
        pts = _medians(pts)  # one point per N: the median over repetitions
        ok = [p for p in pts if not p[3]]
        if ok:
            ax1.plot([p[0] for p in ok if p[1]], [p[1] for p in ok if p[1]], style, label=label)
            ax2.plot([p[0] for p in ok if p[2]], [p[2] for p in ok if p[2]], style, label=label)
        bad = [p for p in pts if p[3]]
        if bad:
            ax1.plot(
                [p[0] for p in bad if p[1]],
                [p[1] for p in bad if p[1]],
                "x",
                color="red",
                label=f"{label}: shm exhausted",
            )
    ax2.axhline(10, color="grey", linestyle=":", label="target ≤ 10 ms")
    plotted = {(r["side"], r["n"]) for r in runs if not r.get("shm_error_lines")}
    missing = [
        r["n"] for r in scale["runs"] if r["side"] == "c" and (r["side"], r["n"]) not in plotted
    ]
    if missing:
        fig.text(
            0.5,
            0.01,
            "C keepalive at N = "
            + ", ".join(f"{n:,}" for n in missing)
            + ": not plotted, it does not fit in -m 256 (shm exhausted)",
            ha="center",
            fontsize=8,
        )
    for ax, title, unit in (
        (ax1, "CPU per ping (all Kamailio processes)", "µs"),
        (ax2, "p99 error of each destination's ping interval", "ms"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("destinations N")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    date = scale["machine"]["date"]
    fig.suptitle(
        f"ka-kemi vs C keepalive and dispatcher, ping_interval 5 s, -x fm, -m 256 ({date})",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def misses(data: dict[str, ResultFile]) -> tuple[list[str], int]:
    out, met = [], 0
    for name in NAMES:
        table = (data.get(name) or {}).get("tables", {}).get("targets", "")
        for line in str(table).splitlines()[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if any("MISSED" in c for c in cells):
                out.append(f"- **{name}** — " + " · ".join(c for c in cells if c))
            elif any(c == "met" for c in cells):
                met += 1
    return out, met


def machine_table(m: dict[str, object]) -> str:
    keys = (
        "date",
        "cpu_model",
        "cpus",
        "mem_total_mb",
        "kernel",
        "os",
        "kamailio",
        "python_embedded",
        "sipp",
        "git_commit",
        "ka_core_kemi_dirty",
        "loadavg_start",
    )
    rows = "\n".join(f"| {k} | {m.get(k)} |" for k in keys)
    return "| fact | value |\n|---|---|\n" + rows


def code_line(data: dict[str, ResultFile]) -> str:
    """Which ka-kemi code each benchmark measured; warns when it changed during the run.

    Commits that differ only outside ``ka_core/``, ``kemi/`` and ``kamailio.cfg`` count as
    the same code; uncommitted changes there never do.
    """
    commits, dirty = set(), False
    for d in data.values():
        m = d["machine"]
        commits.add(str(m.get("git_commit")))
        commits.add(str(m.get("git_commit_end", m.get("git_commit"))))
        dirty |= bool(m.get("ka_core_kemi_dirty") or m.get("ka_core_kemi_dirty_end"))
    first, *rest = sorted(commits)
    same = all(
        subprocess.run(
            ["git", "-C", str(REPO), "diff", "--quiet", first, other, "--",
             "ka_core", "kemi", "kamailio.cfg"],
            capture_output=True, timeout=30,
        ).returncode == 0
        for other in rest
    )  # fmt: skip
    if same and not dirty:
        names = ", ".join(f"`{c}`" for c in sorted(commits))
        return (f"Code measured: the same ka_core/, kemi/ and kamailio.cfg for every benchmark "
                f"(commit {names}).")  # fmt: skip
    return ("**Warning: ka_core/, kemi/ or kamailio.cfg changed during this run "
            f"(commits {sorted(commits)}, uncommitted changes: {dirty}); re-run before "
            "trusting the ratios.**")  # fmt: skip


def generated(paths: dict[str, str], total_s: float | None) -> str:
    data = {n: json.loads(Path(p).read_text()) for n, p in paths.items()}
    any_run = next(iter(data.values()))
    missed, met = misses(data)
    parts = [
        START,
        "<!-- generated by bench/report.py from the files listed below; do not edit by hand -->",
        "",
        f"Latest run: {any_run['machine']['date']}, commit `{any_run['machine']['git_commit']}`, "
        f"{'full' if all(d['mode'] == 'full' for d in data.values()) else 'MIXED/quick'} mode"
        + (f", {total_s / 60:.1f} min in all." if total_s else "."),
        "Result files: "
        + ", ".join(f"`{Path(p).relative_to(REPO)}`" for p in paths.values())
        + ".",
        "",
        code_line(data),
        "",
        "### Targets: where ka-kemi misses",
        "",
        f"{met} target checks met, {len(missed)} missed:"
        if missed
        else f"All {met} target checks met.",
        "",
        *missed,
        "",
    ]
    for name in NAMES:
        d = data.get(name)
        if d is None:
            parts += [f"## {TITLES[name]}", "", "_not run_", ""]
            continue
        t = d["tables"]
        if name in ("moonshot", "churn"):  # ka-kemi alone: no ratios
            parts += [f"## {TITLES[name]}", "", t.get("points") or t["result"], ""]
        else:
            versus = "C and dispatcher" if name == "ping_scale" else "C"
            parts += [f"## {TITLES[name]}", "", f"**ka-kemi vs {versus} (ratios):**", ""]
            parts += [t["ratios"], ""]
        if name == "routing_cost":
            parts += [
                "Per-request CPU of the route worker, µs, median [min–max] over reps:",
                "",
                t["absolute"],
                "",
            ]
        if name in ("ping_scale", "detection", "rpc_scale"):
            parts += ["Both sides:", "", t["sides"], ""]
        if name == "ping_scale":
            parts += ["![CPU per ping and p99 interval error against N](bench_scale.png)", ""]
        parts += ["Targets:", "", t["targets"], ""]
        p = d.get("params", {})
        parts += [f"<sub>parameters: `{json.dumps(p, ensure_ascii=False)}`</sub>", ""]
    parts += ["## Machine", "", machine_table(any_run["machine"]), "", END]
    return "\n".join(parts)


def write(paths: dict[str, str], total_s: float | None = None) -> None:
    text = generated(paths, total_s)
    if "ping_scale" in paths:
        plot(json.loads(Path(paths["ping_scale"]).read_text()), PLOT)
    page = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in page and END in page:
        head, rest = page.split(START, 1)
        tail = rest.split(END, 1)[1]
        page = head + text + tail
    else:
        page = page + "\n" + text + "\n"
    DOC.write_text(page)
    print(f"wrote {DOC.relative_to(REPO)} and {PLOT.relative_to(REPO)}")


def main() -> None:
    if len(sys.argv) > 1:
        paths = {}
        for arg in sys.argv[1:]:
            name = json.loads(Path(arg).read_text())["benchmark"]
            paths[name] = arg
    else:
        paths = {n: str(p) for n in NAMES if (p := newest(n)) is not None}
    write(paths)


if __name__ == "__main__":
    main()
