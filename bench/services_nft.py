"""Benchmark the service load balancer's nft transactions, beside kube-proxy's figures.

Everything runs in one throwaway network namespace (``pnb-svc-<random>``),
deleted at the end; the machine's own ruleset is never touched. For each
service count N (E endpoints each, policy random, one VIP and port):

- render: Python time of ``render_full`` plus the script text (median);
- full sync: ``nft -f -`` of the ruleset, that script and the hook rules into
  an empty table (median over runs; the table is deleted between runs);
- one endpoint change with N loaded: ``render_changes`` and its apply, one
  endpoint of one service replaced, many times (median), and the same for
  adding one service and removing it again;
- restart with N loaded: a full sync over the loaded table, once with the
  inventory read from ``nft -j list table`` (leftovers deleted), once without.

Then a full sync of ``--maglev`` Maglev services. Anchors (kube-proxy's
nftables mode, end to end from the API server, other hardware): adding one
service with 10,000 loaded took 141 ms after its partial-sync work
(kubernetes/kubernetes PR #126013); a cold restart at 10,000 services took
over 3 minutes. Ratio = anchor / podnet (above 1: podnet is faster). Goals:
10,000 services synced in under 5 s, one endpoint change under 50 ms.

Usage: sudo .venv/bin/python bench/services_nft.py [--services 1000 10000]
       [--endpoints 10] [--runs 3] [--changes 20] [--maglev 1000] [--json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import resource
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from podnet.kernel import Nft, netns
from podnet.model.service import Endpoint, ServicePort, ServiceSpec
from podnet.rules.ruleset import render_ruleset
from podnet.rules.services import (
    Inventory,
    ServicesConfig,
    ServicesState,
    hook_rules,
    render_changes,
    render_full,
)
from podnet.rules.transaction import Transaction

T = TypeVar("T")
TABLE = "podnet"
CFG = ServicesConfig(TABLE)
V4 = ipaddress.IPv4Address
ANCHOR_ADD_MS = 141.0  # kube-proxy nftables, add 1 service at 10k (PR #126013)
ANCHOR_RESTART_MS = 180_000.0  # kube-proxy nftables, cold restart at 10k: "over 3 minutes"
GOAL_FULL_MS = 5000.0
GOAL_CHANGE_MS = 50.0


def make_state(n: int, e: int, lb: str = "random", first: int = 0) -> ServicesState:
    specs = [
        ServiceSpec(f"s{i}", (ServicePort(80, 8080),), lb=lb, vips=(V4(0xAC100000 + i),))
        for i in range(first, first + n)
    ]
    endpoints = {
        f"s{i}": tuple(Endpoint(V4(0x0A000000 + i * e + j)) for j in range(e))
        for i in range(first, first + n)
    }
    return ServicesState.of(specs, endpoints)


def full_script(state: ServicesState, existing: Inventory | None) -> Transaction:
    tx = render_ruleset(TABLE, [], [])
    services = render_full(CFG, state.services.values(), state.endpoints, existing=existing)
    tx.commands += services.commands
    tx.add_rules(hook_rules())
    return tx


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000, out


def cpu_timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall time and CPU time of the child processes ``fn`` ran, in ms.

    The CPU time (nft's user + system time, most of it in the kernel's
    transaction) does not grow when other work shares the machine.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(fn)[0]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu * 1000


def drop_table(nft: Nft) -> None:
    if nft.list_json("inet", TABLE) is not None:
        nft.apply(f"delete table inet {TABLE}\n")


def full_sync(nft: Nft, state: ServicesState, runs: int) -> dict[str, float]:
    renders, applies, cpus = [], [], []
    for _ in range(runs):
        drop_table(nft)
        ms, script = timed(lambda: full_script(state, Inventory()).render())
        renders.append(ms)
        wall, cpu = cpu_timed(partial(nft.apply, script))
        applies.append(wall)
        cpus.append(cpu)
    return {
        "render_ms": statistics.median(renders),
        "apply_ms": statistics.median(applies),
        "apply_nft_cpu_ms": statistics.median(cpus),
        "cold_start_ms": statistics.median(r + a for r, a in zip(renders, applies, strict=True)),
    }


def one_change(nft: Nft, old: ServicesState, new: ServicesState) -> tuple[float, float, float]:
    """Render time, apply wall time and nft's CPU time, in ms."""
    render_ms, script = timed(lambda: render_changes(CFG, old, new).render())
    return (render_ms, *cpu_timed(partial(nft.apply, script)))


def changes(nft: Nft, state: ServicesState, count: int, e: int) -> dict[str, float]:
    """Replace one endpoint of one service, ``count`` times, each from the last state."""
    n = len(state.services)
    renders, applies, cpus = [], [], []
    for k in range(count):
        name = f"s{(k * 7919) % n}"
        eps = state.endpoints[name]
        fresh = Endpoint(V4(0x0B000000 + k))
        new = replace(state, endpoints={**state.endpoints, name: (*eps[1:], fresh)})
        r, a, c = one_change(nft, state, new)
        renders.append(r)
        applies.append(a)
        cpus.append(c)
        state = new
    adds, removes = [], []
    for k in range(max(3, count // 4)):
        extra = make_state(1, e, first=n + 100 + k)
        grown = ServicesState(
            {**state.services, **extra.services}, {**state.endpoints, **extra.endpoints}
        )
        adds.append(sum(one_change(nft, state, grown)[:2]))
        removes.append(sum(one_change(nft, grown, state)[:2]))
    return {
        "change_render_ms": statistics.median(renders),
        "change_apply_ms": statistics.median(applies),
        "change_nft_cpu_ms": statistics.median(cpus),
        "change_ms": statistics.median(r + a for r, a in zip(renders, applies, strict=True)),
        "add_service_ms": statistics.median(adds),
        "remove_service_ms": statistics.median(removes),
    }


def restart(nft: Nft, state: ServicesState) -> dict[str, float]:
    def listed() -> None:
        existing = Inventory.from_nft_json(nft.list_json("inet", TABLE))
        nft.apply(full_script(state, existing).render())

    list_ms = timed(lambda: nft.list_json("inet", TABLE))[0]
    return {
        "restart_listed_ms": timed(listed)[0],
        "list_table_ms": list_ms,
        "restart_unlisted_ms": timed(lambda: nft.apply(full_script(state, None).render()))[0],
    }


def measure(nft: Nft, n: int, e: int, runs: int, count: int) -> dict[str, Any]:
    state = make_state(n, e)
    row: dict[str, Any] = {"services": n, "endpoints": e}
    row.update(full_sync(nft, state, runs))
    row.update(changes(nft, state, count, e))
    row.update(restart(nft, state))
    drop_table(nft)
    return row


def measure_maglev(nft: Nft, n: int, e: int, runs: int) -> dict[str, Any]:
    row: dict[str, Any] = {"services": n, "endpoints": e, "policy": "maglev"}
    row.update(full_sync(nft, make_state(n, e, "maglev"), runs))
    drop_table(nft)
    return row


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def render(rows: list[dict[str, Any]], maglev: dict[str, Any] | None) -> str:
    out = [f"{'case':<58} {'podnet':>10} {'kube-proxy':>11} {'ratio':>7}", "-" * 89]

    def line(case: str, ms: float, anchor: float | None = None, goal: float | None = None) -> None:
        ratio = f"{anchor / ms:>6.1f}x" if anchor else ""
        mark = "" if goal is None else ("  goal met" if ms < goal else f"  goal {_ms(goal)} MISSED")
        anchor_text = ("> " if anchor == ANCHOR_RESTART_MS else "") + _ms(anchor) if anchor else ""
        out.append(f"{case:<58} {_ms(ms):>10} {anchor_text:>11} {ratio:>7}{mark}")

    for r in rows:
        n, e = r["services"], r["endpoints"]
        big = n == 10_000
        line(f"render full sync, {n} x {e} (Python)", r["render_ms"])
        line(f"full sync into an empty table, {n} services (nft -f)", r["apply_ms"])
        line("  nft's CPU time", r["apply_nft_cpu_ms"], None, GOAL_FULL_MS if big else None)
        line(
            f"cold start at {n}: render + nft -f",
            r["cold_start_ms"],
            ANCHOR_RESTART_MS if big else None,
            GOAL_FULL_MS if big else None,
        )
        line(f"one endpoint change at {n}: render", r["change_render_ms"])
        line(f"one endpoint change at {n}: nft -f", r["change_apply_ms"])
        line("  nft's CPU time", r["change_nft_cpu_ms"], None, GOAL_CHANGE_MS if big else None)
        line(
            f"one endpoint change at {n}: render + nft -f",
            r["change_ms"],
            None,
            GOAL_CHANGE_MS if big else None,
        )
        line(f"add one service at {n}: render + nft -f", r["add_service_ms"],
             ANCHOR_ADD_MS if big else None)  # fmt: skip
        line(f"remove one service at {n}: render + nft -f", r["remove_service_ms"])
        line(f"restart at {n}, table loaded: list + render + nft -f", r["restart_listed_ms"])
        line("  of which nft -j list table", r["list_table_ms"])
        line(f"restart at {n}, table loaded: render + nft -f, no list", r["restart_unlisted_ms"])
    if maglev:
        n, e = maglev["services"], maglev["endpoints"]
        line(f"Maglev: render full sync, {n} x {e}", maglev["render_ms"])
        line(f"Maglev: full sync into an empty table, {n} services", maglev["apply_ms"])
        line("  nft's CPU time", maglev["apply_nft_cpu_ms"])
    out.append(
        "medians; wall times include waiting for a CPU when the machine is busy, nft's CPU "
        "time does not;\nkube-proxy: nftables mode, end to end from the API server, other "
        "hardware (add: PR #126013; cold restart: the issue's figure); ratio = kube-proxy / podnet"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="full syncs per size (median)")
    parser.add_argument("--changes", type=int, default=20, help="endpoint changes (median)")
    parser.add_argument("--maglev", type=int, default=1000, help="Maglev services (0: skip)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("nft") is None:
        print("needs root and nftables (it works in a throwaway netns)", file=sys.stderr)
        return 2
    name = f"pnb-svc-{secrets.token_hex(4)}"
    netns.create(name)
    try:
        nft = Nft(name, timeout=600)
        rows = [measure(nft, n, args.endpoints, args.runs, args.changes) for n in args.services]
        maglev = (
            measure_maglev(nft, args.maglev, args.endpoints, args.runs) if args.maglev else None
        )
    finally:
        netns.delete(name)
    if netns.exists(name):
        print(f"warning: netns {name} is still there", file=sys.stderr)
        return 1
    print(
        json.dumps({"rows": rows, "maglev": maglev}, indent=2)
        if args.json
        else render(rows, maglev)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
