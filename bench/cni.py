"""Benchmark CNI ADD and DEL latency: podnet-cni against the reference bridge plugin.

Three plugins side by side in one run, each in its own fresh Lab (a throwaway
"host" netns with its own state and run directories), so each sees a node
with its own containers only, as a runtime's node would:

- ``podnet-cni``, fast path: the lab's agent is running and warm, so the
  plugin forwards the request over the agent's socket (``POST /v1/cni``);
- ``podnet-cni``, standalone path: no agent ever runs in that lab, so the
  plugin does the work itself, on the lab's state and run directories;
- the anchor: ``/usr/lib/cni/bridge`` with ``host-local`` IPAM, ``isGateway``
  and ``ipMasq``, its leases in the lab's temporary directory.

Both podnet configurations are the same inline bridge (``isGateway``,
``ipMasq``, ``subnet``) with ``stateDir``/``runDir`` set to their lab's
directories. Every plugin is exec'd as a runtime does it: inside its lab's
host netns, with a clean environment (CNI_COMMAND, CNI_CONTAINERID,
CNI_NETNS=/run/netns/NAME, CNI_IFNAME, CNI_PATH, PATH) and its configuration
on stdin; DEL gets the ADD's result as ``prevResult``, as libcni passes it.
Every network is a /16. Container netns are made by the bench before anything
is timed. Each timing is one plugin exec, from fork to exit.

Phases:

1. warm-up: a few containers ADDed and DELeted per plugin (the first ADD makes
   the bridge; the agent warms up); not counted;
2. latency: N containers per plugin; ADD container i of every plugin, the
   plugin order rotating with i, so machine noise hits all three alike; then
   DEL the same way. Median and p95 of each; every container is checked
   (eth0 up with the address its plugin returned) between the two;
3. back to back: per plugin, N containers ADDed one after the other (total
   time), then DELed (total time); the plugins take turns;
4. start-up floor: ``python -c pass``, ``podnet-cni`` VERSION and ``bridge``
   VERSION, interleaved: what process start-up alone costs.

Goal (from the issue): the fast path at most half the reference's latency.
Everything happens inside the labs; nothing is left behind, which the script
checks at the end. ratio = podnet time / reference time.

Usage: sudo .venv/bin/python bench/cni.py [--count 200] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podnet.errors import PodnetError
from podnet.kernel import netns
from podnet.kernel.netlink import Netlink
from podnet.lab import Lab
from podnet.lab import leftovers as lab_leftovers

CNI_PATH = Path("/usr/lib/cni")
REFERENCE = CNI_PATH / "bridge"
# What `podnet cni install` places: the native forwarder when `make deps` built it.
_BIN = Path(sys.executable).parent
PODNET_CNI = (
    _BIN / "podnet-cni-fast" if (_BIN / "podnet-cni-fast").exists() else _BIN / "podnet-cni"
)
CNI_VERSION = "1.0.0"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GOAL = "fast path at most half the reference's latency"
WARMUP = 5
PLUGIN_TIMEOUT = 60.0
SETTLE = 1.0  # let the kernel finish destroying namespaces between phases
OPS = ("ADD", "DEL")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def p95(samples: Sequence[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def rotated(items: Sequence[Any], i: int) -> list[Any]:
    k = i % len(items)
    return [*items[k:], *items[:k]]


# -- the three plugins ---------------------------------------------------------------


@dataclass(frozen=True)
class Plugin:
    """One plugin binary with one network configuration, in its own lab."""

    key: str  # "fast", "standalone", "reference"
    label: str
    binary: Path
    conf: dict[str, Any]
    bridge: str
    lab: Lab


def podnet_conf(name: str, bridge: str, subnet: str, lab: Lab) -> dict[str, Any]:
    """podnet-cni with an inline bridge in the reference's words, on the lab's node."""
    return {
        "cniVersion": CNI_VERSION,
        "name": name,
        "type": "podnet-cni",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "subnet": subnet,
        "stateDir": str(lab.settings.state_dir),
        "runDir": str(lab.settings.run_dir),
    }


def reference_conf(bridge: str, subnet: str, data_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": CNI_VERSION,
        "name": "bench-reference",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "subnet": subnet,
            "dataDir": str(data_dir),
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }


def plugins(fast: Lab, solo: Lab, ref: Lab) -> list[Plugin]:
    return [
        Plugin(
            "fast",
            "podnet-cni fast path (agent)",
            PODNET_CNI,
            podnet_conf("bench-fast", "pnfast", "10.91.0.0/16", fast),
            "pnfast",
            fast,
        ),
        Plugin(
            "standalone",
            "podnet-cni standalone",
            PODNET_CNI,
            podnet_conf("bench-solo", "pnsolo", "10.92.0.0/16", solo),
            "pnsolo",
            solo,
        ),
        Plugin(
            "reference",
            "reference bridge+host-local",
            REFERENCE,
            reference_conf("cnref", "10.93.0.0/16", ref.tmp / "host-local"),
            "cnref",
            ref,
        ),
    ]


# -- driving plugins like a runtime ------------------------------------------------------


@dataclass
class Container:
    plugin: Plugin
    id: str
    netns: str
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.result["ips"][0]["address"])


def containers(plugin: Plugin, phase: str, count: int) -> list[Container]:
    """``count`` containers with runtime-like 64-hex ids; netns named under the lab's id."""
    lab = plugin.lab
    out = []
    for i in range(count):
        cid = hashlib.sha256(f"{lab.id}/{phase}/{i}".encode()).hexdigest()
        out.append(Container(plugin, cid, f"{lab.id}-c{phase}{i}"))
    return out


def make_netns(batch: Iterable[Container]) -> None:
    for c in batch:
        netns.create(c.netns)


def drop_netns(batch: Iterable[Container]) -> None:
    for c in batch:
        netns.delete(c.netns)
    time.sleep(SETTLE)


def cni_env(command: str, c: Container | None) -> dict[str, str]:
    """Exactly the variables a runtime sets; nothing of the bench's own environment."""
    env = {"CNI_COMMAND": command, "CNI_PATH": str(CNI_PATH), "PATH": CLEAN_PATH}
    if c is not None:
        env.update(CNI_CONTAINERID=c.id, CNI_NETNS=netns.path(c.netns), CNI_IFNAME="eth0")
    return env


def exec_in(lab: Lab, argv: list[str], env: dict[str, str], stdin: bytes) -> tuple[float, bytes]:
    """Run one process in the lab's host netns: (seconds from fork to exit, stdout)."""

    def run() -> tuple[float, subprocess.CompletedProcess[bytes]]:
        start = time.perf_counter()
        done = subprocess.run(
            argv, input=stdin, env=env, capture_output=True, timeout=PLUGIN_TIMEOUT, check=False
        )
        return time.perf_counter() - start, done

    seconds, done = netns.run_in(lab.host, run)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} {env.get('CNI_COMMAND')}: {done.stdout!r} {done.stderr!r}")
    return seconds, done.stdout


def cni(command: str, c: Container) -> float:
    """One plugin call; ADD keeps the result, DEL passes it back as prevResult."""
    p = c.plugin
    conf = p.conf if command == "ADD" else {**p.conf, "prevResult": c.result}
    stdin = json.dumps(conf).encode()
    seconds, out = exec_in(p.lab, [str(p.binary)], cni_env(command, c), stdin)
    if command == "ADD":
        c.result = json.loads(out)
    return seconds


# -- checks ------------------------------------------------------------------------------


def bridge_ports(plugin: Plugin) -> int:
    with Netlink(plugin.lab.host) as nl:
        links = nl.links()
    index = next((ln.index for ln in links if ln.name == plugin.bridge), None)
    return sum(1 for ln in links if index is not None and ln.master == index)


def eth0_ok(c: Container) -> bool:
    try:
        with Netlink(c.netns) as nl:
            link = nl.link("eth0")
            have = {a.interface for a in nl.addresses("eth0")} if link else set()
    except PodnetError:
        return False
    return link is not None and link.up and c.address in have


def check_added(batch: list[Container], deep: bool) -> None:
    """Distinct addresses, one bridge port each; with ``deep``, eth0 up with its address."""
    plugin = batch[0].plugin
    if len({c.address for c in batch}) != len(batch):
        raise RuntimeError(f"{plugin.label} handed out an address twice")
    if (ports := bridge_ports(plugin)) != len(batch):
        raise RuntimeError(f"{plugin.bridge} has {ports} ports, not {len(batch)}")
    if deep and not all(eth0_ok(c) for c in batch):
        raise RuntimeError(f"a container of {plugin.label} has no working eth0")


def check_deleted(plugin: Plugin) -> None:
    if ports := bridge_ports(plugin):
        raise RuntimeError(f"{plugin.bridge} still has {ports} ports after DEL")


def check_paths(fast: Lab, solo: Lab) -> str:
    """The fast path never fell back to standalone work; the standalone path did the work."""
    if (fast.settings.state_dir / "cni.lock").exists():
        raise RuntimeError("podnet-cni fell back to its standalone path next to the agent")
    if not (solo.settings.state_dir / "cni.lock").exists():
        raise RuntimeError("the standalone podnet-cni never ran standalone")
    if solo.agent_pid() is not None or solo.settings.socket_path.exists():
        raise RuntimeError("an agent ran in the standalone path's lab")
    return "fast path always served by the agent, standalone path always in-process"


# -- phases --------------------------------------------------------------------------------


Samples = dict[str, dict[str, list[float]]]  # plugin key -> op -> seconds


def warm_up(ps: list[Plugin]) -> None:
    batches = [containers(p, "w", WARMUP) for p in ps]
    for batch in batches:
        make_netns(batch)
    for op in OPS:
        for group in zip(*batches, strict=True):
            for c in group:
                cni(op, c)
    drop_netns(c for batch in batches for c in batch)


def latency(ps: list[Plugin], count: int) -> Samples:
    """Per-op samples; container i of each plugin in turn, the order rotating with i."""
    batches = {p.key: containers(p, "l", count) for p in ps}
    samples: Samples = {p.key: {op: [] for op in OPS} for p in ps}
    for batch in batches.values():
        make_netns(batch)
    for op in OPS:
        for i in range(count):
            for p in rotated(ps, i):
                samples[p.key][op].append(cni(op, batches[p.key][i]))
        log(f"latency: {count} x {op} of each plugin done")
        if op == "ADD":
            for batch in batches.values():
                check_added(batch, deep=True)
    for p in ps:
        check_deleted(p)
    drop_netns(c for batch in batches.values() for c in batch)
    return samples


def back_to_back(ps: list[Plugin], count: int) -> dict[str, dict[str, float]]:
    """Per plugin: seconds to ADD ``count`` containers one after the other, then to DEL them."""
    totals: dict[str, dict[str, float]] = {}
    for turn, p in enumerate(rotated(ps, 1)):
        batch = containers(p, "b", count)
        make_netns(batch)
        add = timed_all(lambda c: cni("ADD", c), batch)
        check_added(batch, deep=False)
        delete = timed_all(lambda c: cni("DEL", c), batch)
        check_deleted(p)
        drop_netns(batch)
        totals[p.key] = {"ADD": add, "DEL": delete}
        log(f"back to back [{turn + 1}/{len(ps)}] {p.label}: ADD {add:.2f}s, DEL {delete:.2f}s")
    return totals


def timed_all(fn: Callable[[Container], float], batch: list[Container]) -> float:
    start = time.perf_counter()
    for c in batch:
        fn(c)
    return time.perf_counter() - start


def floor(lab: Lab, count: int) -> dict[str, list[float]]:
    """Process start-up alone: an empty Python, and each plugin answering VERSION."""
    version = json.dumps({"cniVersion": CNI_VERSION}).encode()
    runs: dict[str, tuple[list[str], dict[str, str], bytes]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], {"PATH": CLEAN_PATH}, b""),
        "podnet-cni VERSION": ([str(PODNET_CNI)], cni_env("VERSION", None), version),
        "bridge VERSION": ([str(REFERENCE)], cni_env("VERSION", None), version),
    }
    out: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(count):
        for name in rotated(list(runs), i):
            out[name].append(exec_in(lab, *runs[name])[0])
    return out


# -- one run -----------------------------------------------------------------------------


@dataclass
class Measured:
    """Raw seconds of one run, by plugin key."""

    labels: dict[str, str]
    samples: Samples
    totals: dict[str, dict[str, float]]
    start_up: dict[str, list[float]]
    checked: str


def measure(count: int, lab_ids: list[str]) -> Measured:
    with contextlib.ExitStack() as stack:
        labs: list[Lab] = []
        for _ in range(3):  # one per plugin: each node holds only its own containers
            labs.append(stack.enter_context(Lab()))
            lab_ids.append(labs[-1].id)
        fast, solo, ref = labs
        fast.podnet("network", "ls")  # starts the fast lab's agent before anything is timed
        ps = plugins(fast, solo, ref)
        log(f"labs {', '.join(lab_ids)}: agent up in {fast.id}; warming up {WARMUP} per plugin")
        warm_up(ps)
        samples = latency(ps, count)
        totals = back_to_back(ps, count)
        start_up = floor(ref, count)
        return Measured(
            labels={p.key: p.label for p in ps},
            samples=samples,
            totals=totals,
            start_up=start_up,
            checked=check_paths(fast, solo),
        )


# -- report ------------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def stats(samples: Sequence[float]) -> dict[str, float]:
    return {"median_ms": ms(statistics.median(samples)), "p95_ms": ms(p95(samples))}


def ratios(m: Measured, key: str) -> dict[str, float]:
    """This plugin's times over the reference's: median, p95 and back to back, per op."""
    mine, ref = m.samples[key], m.samples["reference"]
    out: dict[str, float] = {}
    for op in OPS:
        out[f"{op}_median"] = statistics.median(mine[op]) / statistics.median(ref[op])
        out[f"{op}_p95"] = p95(mine[op]) / p95(ref[op])
        out[f"{op}_back_to_back"] = m.totals[key][op] / m.totals["reference"][op]
    return out


def by_size(samples: dict[str, list[float]]) -> dict[str, float]:
    """Medians over the first and the last tenth of the ops: the network nearly
    empty or nearly full (ADDs fill it from 0, DELs empty it from N)."""
    tenth = max(1, len(samples["ADD"]) // 10)
    return {
        "ADD_nearly_empty": ms(statistics.median(samples["ADD"][:tenth])),
        "ADD_nearly_full": ms(statistics.median(samples["ADD"][-tenth:])),
        "DEL_nearly_full": ms(statistics.median(samples["DEL"][:tenth])),
        "DEL_nearly_empty": ms(statistics.median(samples["DEL"][-tenth:])),
    }


def summarize(count: int, m: Measured) -> dict[str, Any]:
    plugins_out = {
        key: {
            "label": label,
            **{op: stats(m.samples[key][op]) for op in OPS},
            "by_network_size_ms": by_size(m.samples[key]),
            "back_to_back_s": {op: round(m.totals[key][op], 4) for op in OPS},
            "samples_ms": {op: [ms(s) for s in m.samples[key][op]] for op in OPS},
        }
        for key, label in m.labels.items()
    }
    fast = ratios(m, "fast")
    return {
        "count": count,
        "warmup": WARMUP,
        "plugins": plugins_out,
        "ratios": {k: {r: round(v, 2) for r, v in ratios(m, k).items()} for k in m.labels},
        "start_up_ms": {name: stats(s) for name, s in m.start_up.items()},
        "goal": {
            "text": GOAL,
            "met": {
                "ADD": fast["ADD_median"] <= 0.5,
                "DEL": fast["DEL_median"] <= 0.5,
                "ADD_back_to_back": fast["ADD_back_to_back"] <= 0.5,
            },
        },
        "checks": m.checked,
    }


def render(s: dict[str, Any]) -> str:
    n, ps = s["count"], s["plugins"]
    lines = [
        f"CNI latency: podnet-cni against the reference bridge plugin, {n} ADDs and {n} DELs "
        "per plugin, interleaved, one lab (host netns) per plugin",
        "Every plugin exec'd in its lab's host netns with a clean environment and its config on "
        "stdin, as a runtime does; container netns made beforehand; all networks /16.",
        f"fast path: the lab's agent running and warm ({s['warmup']} warm-up ADD/DEL per plugin); "
        "standalone: no agent on its runDir; reference: bridge + host-local, isGateway, ipMasq.",
        "ratio = podnet / reference (below 1: podnet is faster).",
        "",
    ]
    head = f"{'op':<4} {'path':<30} {'median ms':>10} {'p95 ms':>9} {'ratio':>6} {'p95 ratio':>10}"
    lines += [head, "-" * len(head)]
    for op in OPS:
        for key, p in ps.items():
            r = s["ratios"][key]
            lines.append(
                f"{op:<4} {p['label']:<30} {p[op]['median_ms']:>10.1f} {p[op]['p95_ms']:>9.1f} "
                f"{r[f'{op}_median']:>6.2f} {r[f'{op}_p95']:>10.2f}"
            )
    head = (
        f"{f'{n} containers back to back':<35} {'ADD s':>8} {'ratio':>6} {'DEL s':>8} {'ratio':>6}"
    )
    lines += ["", head, "-" * len(head)]
    for key, p in ps.items():
        t, r = p["back_to_back_s"], s["ratios"][key]
        lines.append(
            f"{p['label']:<35} {t['ADD']:>8.2f} {r['ADD_back_to_back']:>6.2f} "
            f"{t['DEL']:>8.2f} {r['DEL_back_to_back']:>6.2f}"
        )
    lines += ["", *size_lines(s)]
    floors = ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in s["start_up_ms"].items())
    lines += ["", f"process start-up alone (median of {n} execs each): {floors}", ""]
    lines += goal_lines(s)
    lines += ["", f"checks: {s['checks']}; every container had eth0 up with its address"]
    problems = s["leftovers"]
    lines.append("left behind: " + ("; ".join(problems) if problems else "nothing (checked)"))
    return "\n".join(lines)


def size_lines(s: dict[str, Any]) -> list[str]:
    """Medians of the first and last tenth: does a call cost more on a fuller network?"""
    n, tenth = s["count"], max(1, s["count"] // 10)
    cols = [
        ("ADD_nearly_empty", f"ADD {0}-{tenth - 1}"),
        ("ADD_nearly_full", f"ADD {n - tenth}-{n - 1}"),
        ("DEL_nearly_full", f"DEL {n}-{n - tenth + 1}"),
        ("DEL_nearly_empty", f"DEL {tenth}-1"),
    ]
    head = f"{'median ms, by containers on the network':<40}" + "".join(
        f"{title:>13}" for _, title in cols
    )
    lines = [head, "-" * len(head)]
    for p in s["plugins"].values():
        sizes = p["by_network_size_ms"]
        lines.append(f"{p['label']:<40}" + "".join(f"{sizes[k]:>13.1f}" for k, _ in cols))
    return lines


def goal_lines(s: dict[str, Any]) -> list[str]:
    fast, ref = s["plugins"]["fast"], s["plugins"]["reference"]
    lines = [f"Goal (from the issue): {GOAL}."]
    rows = [(f"{op} median", fast[op]["median_ms"], ref[op]["median_ms"], "ms") for op in OPS]
    rows.append(
        ("ADD back to back", fast["back_to_back_s"]["ADD"], ref["back_to_back_s"]["ADD"], "s")
    )
    for what, mine, theirs, unit in rows:
        verdict = "met" if mine <= theirs / 2 else f"NOT met, {mine / (theirs / 2):.1f}x too slow"
        lines.append(
            f"  {what:<17} fast path {mine:8.2f} {unit:<2}  goal <= {theirs / 2:8.2f} {unit:<2}"
            f"  ({mine / theirs:.2f}x the reference): {verdict}"
        )
    return lines


# -- leftovers ---------------------------------------------------------------------------

#: Where a CNI plugin or podnet would keep state by default: none may appear.
DEFAULT_DIRS = tuple(map(Path, ("/var/lib/cni", "/run/cni", "/var/lib/podnet", "/run/podnet")))


def default_dirs() -> set[str]:
    return {str(p) for p in DEFAULT_DIRS if p.exists()}


def leftovers(lab_ids: list[str], dirs_before: set[str]) -> list[str]:
    """Anything the benchmark made that is still there (should be nothing)."""
    found = lab_leftovers(lab_ids)
    return found + [f"{d} appeared" for d in sorted(default_dirs() - dirs_before)]


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--count", type=int, default=200, help="ADDs and DELs per plugin and phase (default 200)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if not 2 <= args.count <= 1000:
        parser.error("--count must be 2-1000")
    return args


def preflight() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/cni.py needs root: it creates throwaway network namespaces")
    for binary in (REFERENCE, CNI_PATH / "host-local"):
        if not binary.exists():
            sys.exit(f"{binary} is missing: apt-get install containernetworking-plugins")
    if not PODNET_CNI.exists():
        sys.exit(f"{PODNET_CNI} is missing: run with the virtualenv's python (make deps)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preflight()
    dirs_before = default_dirs()
    lab_ids: list[str] = []
    try:
        summary = summarize(args.count, measure(args.count, lab_ids))
    finally:
        problems = leftovers(lab_ids, dirs_before)
        for p in problems:
            log(f"WARNING: {p}")
    summary["leftovers"] = problems
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
