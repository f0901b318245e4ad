"""A benchmark's command line and console header."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence


def side_list(known: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: ``ka,c,ds`` -> ``["ka", "c", "ds"]``, each one of ``known``, once."""

    def parse(text: str) -> list[str]:
        sides = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [s for s in sides if s not in known]
        if not sides or unknown or len(set(sides)) != len(sides):
            raise argparse.ArgumentTypeError(
                f"{text!r}: a comma-separated list of distinct sides out of {','.join(known)}"
            )
        return sides

    return parse


def size_list(text: str) -> list[int]:
    """An argparse type: ``100,1000`` (or ``100``) -> ``[100, 1000]``, each a positive int."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: positive numbers, comma-separated")
    return sizes


def bench_args(
    description: str, sizes: bool = False, reps: int = 0, sides: Sequence[str] = ()
) -> argparse.Namespace:
    """``reps``: offer ``--reps`` with this default; ``sides``: offer ``--sides`` (all by
    default)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="short mode (CI smoke, < 1 min each)")
    ap.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    if sizes:
        ap.add_argument(
            "--sizes", type=size_list, nargs="+",
            help="numbers of destinations to run (100 1000 or 100,1000)",
        )  # fmt: skip
    if reps:
        ap.add_argument("--reps", type=int, default=reps, help="interleaved repetitions")
    if sides:
        ap.add_argument(
            "--sides", type=side_list(sides), default=list(sides),
            help=f"sides to run, comma-separated (default {','.join(sides)})",
        )  # fmt: skip
    args = ap.parse_args()
    if sizes and args.sizes:
        args.sizes = [n for group in args.sizes for n in group]
    return args


def header(title: str, quick: bool) -> None:
    print(f"\n=== {title} ({'quick' if quick else 'full'} mode) ===", flush=True)
