"""A benchmark's command line and console header."""

from __future__ import annotations

import argparse


def bench_args(description: str, sizes: bool = False, reps: int = 0) -> argparse.Namespace:
    """``reps``: offer ``--reps`` with this default."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="short mode (CI smoke, < 1 min each)")
    ap.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    if sizes:
        ap.add_argument("--sizes", type=int, nargs="+", help="numbers of destinations to run")
    if reps:
        ap.add_argument("--reps", type=int, default=reps, help="interleaved repetitions")
    return ap.parse_args()


def header(title: str, quick: bool) -> None:
    print(f"\n=== {title} ({'quick' if quick else 'full'} mode) ===", flush=True)
