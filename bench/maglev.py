"""Benchmark the Maglev table: build time, and flows moved when a backend leaves.

For each backend count N it builds the table (M=65537 by default) several
times and reports the median build time; then it removes a few backends, one
at a time, and reports the share of slots (hence of flows) that changed owner
next to the ideal 1/N (only the leaving backend's flows move) and the ratio.
Naive ``hash mod N`` is shown as the anchor Maglev exists to beat.

Usage: .venv/bin/python bench/maglev.py [--backends 100 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from podnet.lb.maglev import DEFAULT_M, Backend, build_table, diff


def backends(n: int) -> list[Backend]:
    return [Backend(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:8080") for i in range(n)]


def build_ms(n: int, m: int, runs: int) -> float:
    pool = backends(n)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        build_table(pool, m)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def moved_share(n: int, m: int, removals: int) -> tuple[float, float]:
    """Mean share of slots moved when one backend leaves, and its worst case."""
    pool = backends(n)
    full = build_table(pool, m)
    step = max(1, n // removals)
    shares = []
    for gone in pool[::step][:removals]:
        rest = build_table([b for b in pool if b != gone], m)
        shares.append(diff(full, rest) / m)
    return statistics.mean(shares), max(shares)


def mod_n_share(n: int, m: int) -> float:
    """Share of slots moved by ``slot -> backend slot mod N`` when the last backend leaves."""
    return sum(j % n != j % (n - 1) for j in range(m)) / m


def measure(n: int, m: int, runs: int, removals: int) -> dict[str, Any]:
    moved, worst = moved_share(n, m, removals)
    ideal = 1 / n
    return {
        "backends": n,
        "m": m,
        "build_ms_median": round(build_ms(n, m, runs), 1),
        "moved_pct": round(100 * moved, 3),
        "moved_worst_pct": round(100 * worst, 3),
        "ideal_pct": round(100 * ideal, 3),
        "ratio": round(moved / ideal, 2),
        "mod_n_moved_pct": round(100 * mod_n_share(n, m), 1),
    }


def render(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'backends':>8} {'M':>7} {'build ms':>9} {'moved %':>8} {'worst %':>8} "
        f"{'ideal %':>8} {'ratio':>6} {'mod-N %':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['backends']:>8} {r['m']:>7} {r['build_ms_median']:>9.1f} "
            f"{r['moved_pct']:>8.3f} {r['moved_worst_pct']:>8.3f} {r['ideal_pct']:>8.3f} "
            f"{r['ratio']:>6.2f} {r['mod_n_moved_pct']:>8.1f}"
        )
    lines.append(
        "moved: mean share of flows that change backend when one backend leaves "
        "(worst: the largest); ideal: 1/N; ratio: moved/ideal; mod-N: naive hash mod N"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("-m", type=int, default=DEFAULT_M, help="table size (prime)")
    parser.add_argument("--runs", type=int, default=5, help="builds per size (median)")
    parser.add_argument("--removals", type=int, default=5, help="backends removed, one at a time")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = [measure(n, args.m, args.runs, args.removals) for n in args.backends]
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
