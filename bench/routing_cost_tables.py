"""The routing-cost benchmark's summaries and tables: per-variant cost, per-rep ratios,
and ka-kemi's targets."""

from __future__ import annotations

from typing import TypedDict, cast

from bench.stats import md_table, median, verdict

TARGETS = {"ka/c": 1.10, "ka1000/c": 1.0}
LABELS = {
    "none": "Python route, no check",
    "c": "C KSR.keepalive.is_alive, 1 dest",
    "ka": "ka-kemi ka_is_alive, 1 dest",
    "ka1000": "ka-kemi ka_is_alive, 1,000 dests (checked added last)",
    "c1000": "C is_alive, 1,000 dests (checked scanned last)",
    "ds": "dispatcher ds_select_dst rr, 3 gateways",
    "sel": "ka-kemi ka_select rr, 3 gateways",
}


class Spread(TypedDict):
    median: float
    min: float
    max: float
    reps: list[float]


def summarise(
    runs: list[dict[str, dict[str, float]]],
) -> dict[str, Spread | dict[str, Spread]]:
    """Per-variant median [min-max] of µs/req, and per-rep ratios (under ``"ratios"``)."""
    out: dict[str, Spread | dict[str, Spread]] = {}
    for name in LABELS:
        vals = [r[name]["us_per_req"] for r in runs if name in r]
        out[name] = {"median": median(vals), "min": min(vals), "max": max(vals), "reps": vals}
    pairs = {
        "ka/c": ("ka", "c"),
        "ka1000/c": ("ka1000", "c"),
        "ka1000/c1000": ("ka1000", "c1000"),
        "c/none": ("c", "none"),
        "ka/none": ("ka", "none"),
        "c1000/c": ("c1000", "c"),
        "sel/ds": ("sel", "ds"),
    }
    ratios: dict[str, Spread] = {}
    for key, (a, b) in pairs.items():
        per_rep = [r[a]["us_per_req"] / r[b]["us_per_req"] for r in runs if a in r and b in r]
        ratios[key] = {
            "median": median(per_rep),
            "min": min(per_rep),
            "max": max(per_rep),
            "reps": per_rep,
        }
    out["ratios"] = ratios
    return out


def make_tables(
    d: dict[str, Spread | dict[str, Spread]],
    s: dict[str, Spread | dict[str, Spread]],
    drain_runs: list[dict[str, dict[str, float]]],
    sipp_runs: list[dict[str, dict[str, float]]],
) -> dict[str, str]:
    """Ratios, per-request CPU (absolute) and targets, from the drain summary ``d`` and the
    sipp summary ``s`` (``summarise``) and the reps they summarise."""
    dr, sr = cast("dict[str, Spread]", d["ratios"]), cast("dict[str, Spread]", s["ratios"])
    ratio_rows = []
    for key, label in (
        ("ka/c", "ka_is_alive 1 dest / C is_alive"),
        ("ka1000/c", "ka_is_alive 1,000 dests / C is_alive (1 dest)"),
        ("ka1000/c1000", "ka_is_alive 1,000 / C is_alive 1,000 (info)"),
        ("c/none", "C is_alive / no check (info)"),
        ("ka/none", "ka_is_alive / no check (info)"),
        ("sel/ds", "ka_select rr / dispatcher ds_select_dst rr, 3 gateways (info)"),
    ):
        target = TARGETS.get(key)
        ratio_rows.append(
            [
                label,
                f"{dr[key]['median']:.3f} [{dr[key]['min']:.2f}–{dr[key]['max']:.2f}]",
                f"{sr[key]['median']:.3f} [{sr[key]['min']:.2f}–{sr[key]['max']:.2f}]",
                f"≤ {target:.2f}" if target else "–",
                (
                    f"drain {verdict(dr[key]['median'], target, 'x')}; "
                    f"sipp {verdict(sr[key]['median'], target, 'x')}"
                )
                if target
                else "–",
            ]
        )
    ratio_table = md_table(
        ["ratio (per paired rep, median [min–max])", "drain", "sipp", "target", "verdict"],
        ratio_rows,
    )
    abs_rows = []
    for name, label in LABELS.items():
        dv, sv = cast(Spread, d[name]), cast(Spread, s[name])
        abs_rows.append(
            [
                label,
                f"{dv['median']:.1f} [{dv['min']:.1f}–{dv['max']:.1f}]",
                f"{sv['median']:.1f} [{sv['min']:.1f}–{sv['max']:.1f}]",
                f"{median([r[name]['wall_us_per_req'] for r in drain_runs]):.1f}",
                sum(int(r[name]["lost"]) + int(r[name]["kernel_drops"]) for r in drain_runs),
                sum(int(r[name]["failed"]) for r in sipp_runs),
                f"{median([r[name]['achieved_rate'] for r in sipp_runs]):.0f}",
            ]
        )
    abs_table = md_table(
        [
            "variant",
            "drain µs CPU/req",
            "sipp µs CPU/req",
            "drain wall µs/req",
            "drain lost+drops",
            "sipp failed",
            "sipp calls/s",
        ],
        abs_rows,
    )
    target_rows = []
    for key, label in (
        ("ka/c", "ka_is_alive, 1 dest ≤ 1.10× C is_alive"),
        ("ka1000/c", "ka_is_alive, 1,000 dests ≤ 1.0× C is_alive"),
    ):
        for regime, summ in (("drain", dr), ("sipp", sr)):
            target_rows.append(
                [
                    f"{label} ({regime})",
                    f"{summ[key]['median']:.3f}",
                    verdict(summ[key]["median"], TARGETS[key], "x"),
                ]
            )
    targets_table = md_table(
        ["target (median of per-rep ratios)", "measured", "verdict"], target_rows
    )
    return {"ratios": ratio_table, "absolute": abs_table, "targets": targets_table}
