"""Benchmark podnet's single-host foundation against the CNI reference plugins.

Each round makes a fresh Lab (throwaway "host" and "external" network
namespaces with a private podnet agent) and measures, side by side:

- ``podnet up -f FILE`` / ``podnet down -f FILE`` of N pods on one network,
  without a command and with ``sleep 3600`` (so N processes start and stop);
- the same N pods one API call at a time (``POST /v1/pods``, what ``podnet
  run`` sends; the agent's counterpart of a runtime calling CNI ADD per
  container);
- the anchor: N "containers" made by a runtime-like driver inside the lab's
  host netns: a named netns each, then ``/usr/lib/cni/bridge`` (isGateway,
  ipMasq, host-local IPAM, same subnet size) with CNI_COMMAND=ADD, and later
  DEL and the netns removed;
- agent restart after SIGKILL with N pods up: nothing to fix, and with some
  pod netns and podnet's nft table deleted (time until the kernel is whole).

The agent is already running before anything is timed, so the times are the
work, not Python start-up; ``podnet up``/``down`` rows still include the CLI
process, whose floor (a warm ``podnet network ls``) is printed beside them.
Everything happens inside the lab; nothing is left behind, which the script
checks at the end. Medians over rounds; ratio = podnet time / anchor time.

Usage: .venv/bin/python bench/pods.py [--pods 50] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from podnet.api.http import ApiClient
from podnet.errors import PodnetError
from podnet.kernel import netns
from podnet.kernel.netlink import Netlink
from podnet.kernel.nft import Nft
from podnet.lab import Lab
from podnet.lab import leftovers as lab_leftovers

T = TypeVar("T")

CNI_PATH = Path("/usr/lib/cni")
NETWORK = "front"
COMMAND = ["sleep", "3600"]
KILLED_NETNS = 10
CMD_TIMEOUT = 300.0
CONVERGE_TIMEOUT = 120.0
SETTLE = 0.5  # let the kernel finish destroying namespaces between phases
_CONVERGED = re.compile(r"converged in ([0-9.]+)s \((\d+) steps\)")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# -- sizes and files -----------------------------------------------------------


def prefix_len(pods: int) -> int:
    """A /24 as long as it holds the pods (+ network, gateway, broadcast), else larger."""
    return min(24, 32 - math.ceil(math.log2(pods + 3)))


def subnet(base: str, pods: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"{base}/{prefix_len(pods)}")


def topology_text(name: str, net: ipaddress.IPv4Network, pods: int, command: bool) -> str:
    lines = [
        f"name: {name}",
        "networks:",
        f"  {NETWORK}:",
        f"    subnet: {net}",
        "pods:",
        "  web:",
        f"    replicas: {pods}",
        f"    networks: [{NETWORK}]",
    ]
    if command:
        lines.append(f"    command: {json.dumps(COMMAND)}")
    return "\n".join(lines) + "\n"


# -- the agent -------------------------------------------------------------------


@dataclass
class Agents:
    """Agents this script started itself (for restarts), reaped at the end."""

    lab: Lab
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self) -> None:
        """Start ``podnet agent`` in the lab's host netns, logging as the CLI does."""
        argv = [sys.executable, "-m", "podnet", "agent"]
        self.lab.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lab.settings.state_dir / "agent.log", "ab") as out:
            self.procs.append(
                subprocess.Popen(
                    ["nsenter", f"--net={netns.path(self.lab.host)}", *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=self.lab.env(),
                )
            )

    def kill(self) -> None:
        """SIGKILL the lab's agent and reap it if it is one of ours."""
        self.lab.stop_agent(signal.SIGKILL)
        self.reap(timeout=5)

    def reap(self, timeout: float = 15) -> None:
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
            if proc.poll() is None:  # still running: it is our own child, stop it by pid
                proc.kill()
                proc.wait(timeout=5)
        self.procs = [p for p in self.procs if p.poll() is None]


def client(lab: Lab) -> ApiClient:
    return ApiClient(lab.settings.socket_path, timeout=CMD_TIMEOUT)


def api_answers(lab: Lab) -> bool:
    try:
        ApiClient(lab.settings.socket_path, timeout=2).get("/v1/info")
    except (OSError, PodnetError, ValueError):
        return False
    return True


def agent_log_offset(lab: Lab) -> int:
    try:
        return (lab.settings.state_dir / "agent.log").stat().st_size
    except FileNotFoundError:
        return 0


def converge_pass(lab: Lab, offset: int) -> tuple[float, int] | None:
    """The agent's own start-up reconcile (seconds, steps), logged after ``offset``."""
    with open(lab.settings.state_dir / "agent.log", "rb") as f:
        f.seek(offset)
        found = _CONVERGED.search(f.read().decode(errors="replace"))
    return (float(found.group(1)), int(found.group(2))) if found else None


def cli_floor(lab: Lab, runs: int = 3) -> float:
    """Seconds for a warm ``podnet network ls``: the CLI's own cost in every CLI row."""
    return statistics.median(timed(lambda: lab.podnet("network", "ls"))[0] for _ in range(runs))


# -- checking the kernel -----------------------------------------------------------


def expected_addresses(lab: Lab) -> dict[str, ipaddress.IPv4Interface]:
    """Pod netns -> eth0's IPv4 address, as the agent reports the pods."""
    out: dict[str, ipaddress.IPv4Interface] = {}
    for pod in client(lab).get("/v1/pods"):
        addrs = [ipaddress.ip_interface(a) for a in pod["interfaces"][0]["addresses"]]
        out[pod["netns"]] = next(a for a in addrs if isinstance(a, ipaddress.IPv4Interface))
    return out


def pod_ok(name: str, address: ipaddress.IPv4Interface) -> bool:
    try:
        with Netlink(name) as nl:
            link = nl.link("eth0")
            have = {a.interface for a in nl.addresses("eth0")} if link else set()
    except PodnetError:
        return False
    return link is not None and link.up and address in have


def nft_ok(lab: Lab, bridge: str) -> bool:
    """podnet's table has the network's masquerade rule and its bridge in the set."""
    table = Nft(lab.host).list_json("inet", lab.settings.nft_table)
    if table is None:
        return False
    masquerade = bridge_listed = False
    for item in table.get("nftables", []):
        rule, elements = item.get("rule"), item.get("set", {}).get("elem", [])
        if rule and rule.get("comment") == f"network:{NETWORK}":
            masquerade |= "masquerade" in json.dumps(rule.get("expr"))
        bridge_listed |= bridge in elements
    return masquerade and bridge_listed


@dataclass
class Convergence:
    """Polls the kernel until every pod and the nft table are as the agent wants."""

    lab: Lab
    want: Mapping[str, ipaddress.IPv4Interface]
    bridge: str
    done: set[str] = field(default_factory=set)
    nft: bool = False

    def check(self) -> bool:
        present = set(netns.list_names(self.lab.settings.netns_prefix))
        for name in sorted(set(self.want) - self.done):
            if name in present and pod_ok(name, self.want[name]):
                self.done.add(name)
        self.nft = self.nft or nft_ok(self.lab, self.bridge)
        return self.nft and self.done == set(self.want)

    def missing(self) -> str:
        pods = sorted(set(self.want) - self.done)
        return f"{len(pods)} pods not ready ({', '.join(pods[:3])}...), nft ok: {self.nft}"


def assert_converged(lab: Lab, bridge: str, pods: int) -> None:
    want = expected_addresses(lab)
    conv = Convergence(lab, want, bridge)
    if len(want) != pods or not conv.check():
        raise RuntimeError(f"podnet did not make {pods} working pods: {conv.missing()}")


def assert_no_pods(lab: Lab) -> None:
    left = lab.pod_namespaces()
    if left:
        raise RuntimeError(f"pod netns still there after down: {left[:3]}...")


def running_pods(lab: Lab) -> int:
    return sum(p["status"]["state"] == "running" for p in client(lab).get("/v1/pods"))


def bridge_of(lab: Lab) -> str:
    return str(client(lab).get(f"/v1/networks/{NETWORK}")["bridge"])


# -- podnet phases -------------------------------------------------------------------


def podnet_up_down(lab: Lab, pods: int, command: bool) -> dict[str, float]:
    """Time ``up -f`` and ``down -f`` of N pods; check they really work in between."""
    name = "bench-cmd" if command else "bench"
    path = lab.tmp / f"{name}.yaml"
    path.write_text(topology_text(name, subnet("10.89.0.0", pods), pods, command))
    up, _ = timed(lambda: lab.podnet("up", "-f", str(path), timeout=CMD_TIMEOUT))
    assert_converged(lab, bridge_of(lab), pods)
    if command and running_pods(lab) != pods:
        raise RuntimeError(f"only {running_pods(lab)} of {pods} pod processes run after up")
    with Netlink(lab.host) as host:
        if len(pod_veths(lab, host)) != pods:
            raise RuntimeError("podnet's host veths are not where the bench looks for them")
        start = time.perf_counter()
        lab.podnet("down", "-f", str(path), timeout=CMD_TIMEOUT)
        down = time.perf_counter() - start
        wait_until(lambda: not pod_veths(lab, host), CONVERGE_TIMEOUT, "veths still there")
        freed = time.perf_counter() - start
    assert_no_pods(lab)
    key = "cmd" if command else "nocmd"
    return {f"up_{key}": up, f"down_{key}": down, f"freed_{key}": freed}


def pod_veths(lab: Lab, host: Netlink) -> list[str]:
    """Host ends of podnet's pod veths: they go when the kernel has destroyed the pod netns."""
    tag = f"podnet:{lab.settings.nft_table}:pod:"
    return [ln.name for ln in host.links() if ln.alias and ln.alias.startswith(tag)]


def pod_body(name: str) -> dict[str, Any]:
    return {"name": name, "attachments": [{"network": "solo", "ifname": "eth0", "ips": []}]}


def podnet_per_pod(lab: Lab, pods: int) -> dict[str, float]:
    """N x ``POST /v1/pods`` then N x ``DELETE``, as a runtime adds containers one by one."""
    api = client(lab)
    net = {"name": "solo", "subnets": [str(subnet("10.89.128.0", pods))]}
    api.post("/v1/networks", net)
    names = [f"one-{i}" for i in range(1, pods + 1)]
    adds = [timed(partial(api.post, "/v1/pods", pod_body(n)))[0] for n in names]
    if len(lab.pod_namespaces()) != pods:
        raise RuntimeError("per-pod API calls did not make every pod netns")
    dels = [timed(partial(api.delete, f"/v1/pods/{n}?force=true"))[0] for n in names]
    api.delete("/v1/networks/solo")
    assert_no_pods(lab)
    return {
        "api_add": sum(adds),
        "api_del": sum(dels),
        "api_add_first": adds[0],
        "api_add_last": adds[-1],
        "api_del_first": dels[0],
        "api_del_last": dels[-1],
    }


# -- the anchor: CNI bridge + host-local, driven like a runtime ----------------------


def cni_conf(bridge: str, net: ipaddress.IPv4Network, data_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": f"bench-{bridge}",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "subnet": str(net),
            "dataDir": str(data_dir),
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }


def cni_exec(command: str, conf: dict[str, Any], container: str, ns: str) -> dict[str, Any]:
    """One plugin call, exactly as a runtime makes it: env, conf on stdin, JSON out."""
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": netns.path(ns),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(CNI_PATH),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    done = subprocess.run(
        [str(CNI_PATH / conf["type"])],
        input=json.dumps(conf).encode(),
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"CNI {command} {container}: {done.stdout!r} {done.stderr!r}")
    return json.loads(done.stdout) if done.stdout.strip() else {}


def cni_driver(params: dict[str, Any]) -> dict[str, Any]:
    """Runs inside the lab's host netns: N x (netns + ADD), check, N x (DEL + netns del)."""
    conf, names = params["conf"], params["netns"]
    results: list[dict[str, Any]] = []
    plugin_add = plugin_del = 0.0
    start = time.perf_counter()
    for i, ns in enumerate(names):
        netns.create(ns)
        seconds, result = timed(partial(cni_exec, "ADD", conf, f"bench{i}", ns))
        plugin_add += seconds
        results.append(result)
    add = time.perf_counter() - start
    checked = cni_check(names, results)
    start = time.perf_counter()
    for i, (ns, result) in enumerate(zip(names, results, strict=True)):
        prev = {**conf, "prevResult": result}  # as libcni passes it on DEL
        plugin_del += timed(partial(cni_exec, "DEL", prev, f"bench{i}", ns))[0]
        netns.delete(ns)
    delete = time.perf_counter() - start
    return {
        "cni_add": add,
        "cni_del": delete,
        "cni_plugin_add": plugin_add,
        "cni_plugin_del": plugin_del,
        "checked": checked,
    }


def cni_check(names: list[str], results: list[dict[str, Any]]) -> str:
    """Every container has eth0 up with the address the plugin returned, all distinct."""
    addrs = [ipaddress.IPv4Interface(r["ips"][0]["address"]) for r in results]
    if len(set(addrs)) != len(addrs):
        raise RuntimeError("the CNI plugin handed out an address twice")
    for ns, addr in zip(names, addrs, strict=True):
        if not pod_ok(ns, addr):
            raise RuntimeError(f"CNI container {ns} has no working eth0 with {addr}")
    return f"{len(names)} containers with eth0 up, e.g. {names[0]} has {addrs[0]}"


def cni_anchor(lab: Lab, pods: int) -> dict[str, Any]:
    """Run the driver in the lab's host netns; host-local keeps its leases in the lab."""
    data_dir = lab.tmp / "cni-ipam"
    bridge = "cnb" + lab.id[-6:]
    params = {
        "conf": cni_conf(bridge, subnet("10.90.0.0", pods), data_dir),
        "netns": [f"{lab.id}-cni-{i}" for i in range(1, pods + 1)],
    }
    argv = [sys.executable, str(Path(__file__).resolve()), "--cni-driver", json.dumps(params)]
    done = lab.run(argv, timeout=CMD_TIMEOUT)
    return dict(json.loads(done.stdout))


# -- restart after SIGKILL -----------------------------------------------------------


def wait_until(ready: Callable[[], bool], timeout: float, what: str, step: float = 0.01) -> float:
    """Seconds until ``ready()`` (polled every ``step``); raises after ``timeout``."""
    start = time.perf_counter()
    while not ready():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{what} after {timeout:g}s")
        time.sleep(step)
    return time.perf_counter() - start


def restart_plain(lab: Lab, agents: Agents) -> dict[str, float]:
    """SIGKILL with N pods up, start again: time until the API answers."""
    agents.kill()
    offset = agent_log_offset(lab)
    start = time.perf_counter()
    agents.spawn()
    wait_until(lambda: api_answers(lab), CONVERGE_TIMEOUT, "agent did not answer")
    answered = time.perf_counter() - start
    passed = converge_pass(lab, offset)
    return {"restart_api": answered, "restart_pass": passed[0] if passed else math.nan}


def break_kernel(lab: Lab, count: int) -> list[str]:
    """Delete ``count`` pod netns and the nft table: only this lab's podnet objects."""
    prefix = lab.settings.netns_prefix
    victims = lab.pod_namespaces()[:: max(1, len(lab.pod_namespaces()) // count)][:count]
    for name in victims:
        assert name.startswith(prefix) and name.startswith(lab.id + "-")
        netns.delete(name)
    nft = Nft(lab.host)
    nft.apply(f"delete table inet {lab.settings.nft_table}\n")
    if nft.list_json("inet", lab.settings.nft_table) is not None or any(
        netns.exists(v) for v in victims
    ):
        raise RuntimeError("could not delete the kernel state to heal")
    return victims


def restart_heal(lab: Lab, agents: Agents) -> dict[str, float]:
    """SIGKILL, delete kernel state, start again: time until the kernel is whole."""
    want, bridge = expected_addresses(lab), bridge_of(lab)
    agents.kill()
    victims = break_kernel(lab, KILLED_NETNS)
    offset = agent_log_offset(lab)
    conv = Convergence(lab, want, bridge)
    start = time.perf_counter()
    agents.spawn()
    answered = kernel = math.nan
    while math.isnan(answered) or math.isnan(kernel):
        now = time.perf_counter() - start
        if now > CONVERGE_TIMEOUT:
            raise TimeoutError(f"no convergence after restart: {conv.missing()}")
        if math.isnan(kernel) and conv.check():
            kernel = time.perf_counter() - start
        if math.isnan(answered) and api_answers(lab):
            answered = time.perf_counter() - start
        time.sleep(0.01)
    passed = converge_pass(lab, offset)
    return {
        "heal_kernel": kernel,
        "heal_api": answered,
        "heal_pass": passed[0] if passed else math.nan,
        "heal_steps": passed[1] if passed else math.nan,
        "heal_deleted": float(len(victims)),
    }


def restart_phases(lab: Lab, agents: Agents, pods: int) -> dict[str, float]:
    path = lab.tmp / "restart.yaml"
    path.write_text(topology_text("restart", subnet("10.89.0.0", pods), pods, command=False))
    lab.podnet("up", "-f", str(path), timeout=CMD_TIMEOUT)
    plain = restart_plain(lab, agents)
    heal = restart_heal(lab, agents)
    assert_converged(lab, bridge_of(lab), pods)
    lab.podnet("down", "-f", str(path), timeout=CMD_TIMEOUT)
    return {**plain, **heal}


# -- one round -------------------------------------------------------------------------


def settle() -> None:
    time.sleep(SETTLE)


def one_round(
    pods: int, index: int, rounds: int, lab_ids: list[str], notes: dict[str, str]
) -> dict[str, float]:
    """A fresh lab; the phases in an order that rotates from round to round."""
    out: dict[str, float] = {}
    tag = f"[round {index + 1}/{rounds}]"
    with Lab() as lab, agent_scope(lab) as agents:
        lab_ids.append(lab.id)
        lab.podnet("network", "ls")  # starts the agent: nothing below times Python start-up
        out["cli_floor"] = cli_floor(lab)
        log(f"{tag} lab {lab.id}: agent up, CLI floor {out['cli_floor']:.3f}s")
        phases = list(build_phases(lab, pods).items())
        k = index % len(phases)
        for name, phase in phases[k:] + phases[:k]:
            result = phase()
            log(f"{tag} {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in numeric(result).items()))
            out.update(numeric(result))
            notes.update({k: v for k, v in result.items() if isinstance(v, str)})
            settle()
        result = restart_phases(lab, agents, pods)
        log(f"{tag} restart after SIGKILL: " + ", ".join(f"{k}={v:.3f}" for k, v in result.items()))
        out.update(result)
    return out


@contextlib.contextmanager
def agent_scope(lab: Lab) -> Iterator[Agents]:
    agents = Agents(lab)
    try:
        yield agents
    finally:
        lab.close()  # idempotent; the lab's own exit runs it again harmlessly
        agents.reap()


def build_phases(lab: Lab, pods: int) -> dict[str, Callable[[], dict[str, Any]]]:
    return {
        "podnet up/down -f, no command": lambda: podnet_up_down(lab, pods, command=False),
        "podnet up/down -f, sleep 3600": lambda: podnet_up_down(lab, pods, command=True),
        "podnet one API call per pod": lambda: podnet_per_pod(lab, pods),
        "CNI bridge + host-local": lambda: cni_anchor(lab, pods),
    }


def numeric(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if isinstance(v, int | float)}


# -- report ----------------------------------------------------------------------------

#: (label, podnet metric, anchor metric or None)
ROWS: list[tuple[str, str, str | None]] = [
    ("create: podnet up -f, no command", "up_nocmd", "cni_add"),
    ("remove: podnet down -f, no command", "down_nocmd", "cni_del"),
    ("  ... until the kernel freed the veths", "freed_nocmd", "cni_del"),
    ("create: podnet up -f, sleep 3600 in each", "up_cmd", "cni_add"),
    ("remove: podnet down -f, sleep 3600 in each", "down_cmd", "cni_del"),
    ("  ... until the kernel freed the veths", "freed_cmd", "cni_del"),
    ("create: one POST /v1/pods per pod", "api_add", "cni_add"),
    ("remove: one DELETE /v1/pods per pod", "api_del", "cni_del"),
    ("agent restart, nothing to fix: API answers", "restart_api", None),
    ("agent restart, heal: kernel whole again", "heal_kernel", None),
    ("agent restart, heal: API answers", "heal_api", None),
]


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for r in rounds for k in r})
    return {k: statistics.median(r[k] for r in rounds if k in r) for k in keys}


def summarize(pods: int, rounds: list[dict[str, float]]) -> dict[str, Any]:
    med = medians(rounds)
    ratios = {
        metric: round(med[metric] / med[anchor], 2)
        for _, metric, anchor in ROWS
        if anchor and med.get(anchor) and metric in med
    }
    return {
        "pods": pods,
        "rounds": len(rounds),
        "subnet_prefix": prefix_len(pods),
        "medians_s": {k: round(v, 4) for k, v in med.items()},
        "ratios_podnet_over_anchor": ratios,
        "per_round_s": [{k: round(v, 4) for k, v in r.items()} for r in rounds],
    }


def render(summary: dict[str, Any]) -> str:
    med, ratios, n = summary["medians_s"], summary["ratios_podnet_over_anchor"], summary["pods"]
    rounds = summary["rounds"]
    head = f"{f'{n} pods, one network':<44} {'podnet s':>9} {'anchor s':>9} {'ratio':>6}"
    lines = [
        f"podnet single-host bench: {n} pods on one /{summary['subnet_prefix']} network, "
        f"median of {rounds} round{'s' * (rounds != 1)} (a fresh lab each)",
        "The agent was already running: times are the work, not Python start-up.",
        "`podnet up`/`down` rows include the CLI process "
        f"(a warm `podnet network ls` takes {med['cli_floor']:.3f}s).",
        "Anchor: CNI bridge + host-local (isGateway, ipMasq, same subnet size), driven like a "
        "runtime: netns + ADD per container, then DEL + netns delete per container.",
        "ratio = podnet / anchor (below 1: podnet is faster).",
        "",
        head,
        "-" * len(head),
    ]
    for label, metric, anchor in ROWS:
        a = f"{med[anchor]:>9.3f}" if anchor else f"{'-':>9}"
        r = f"{ratios[metric]:>6.2f}" if metric in ratios else f"{'-':>6}"
        lines.append(f"{label:<44} {med.get(metric, math.nan):>9.3f} {a} {r}")
    lines += ["", *details(med, n), f"anchor check: {summary['anchor_check']}"]
    problems = summary["leftovers"]
    lines.append("left behind: " + ("; ".join(problems) if problems else "nothing (checked)"))
    return "\n".join(lines)


def details(med: Mapping[str, float], n: int) -> list[str]:
    ms = {k: v * 1000 for k, v in med.items()}
    return [
        f"per container/pod: podnet up {ms['up_nocmd'] / n:.1f} ms, CNI ADD "
        f"{ms['cni_add'] / n:.1f} ms (plugin exec alone {ms['cni_plugin_add'] / n:.1f} ms); "
        f"podnet down {ms['down_nocmd'] / n:.1f} ms, CNI DEL {ms['cni_del'] / n:.1f} ms "
        f"(plugin exec alone {ms['cni_plugin_del'] / n:.1f} ms)",
        "podnet down unmounts each pod netns and the kernel destroys it (and its veth) "
        "afterwards; CNI DEL deletes the veth itself, hence the 'freed' rows.",
        f"one pod per API call: first add {ms['api_add_first']:.0f} ms, last add "
        f"{ms['api_add_last']:.0f} ms; first delete {ms['api_del_first']:.0f} ms, last delete "
        f"{ms['api_del_last']:.0f} ms",
        f"restart, nothing to fix: the agent's own start-up reconcile took "
        f"{ms['restart_pass']:.0f} ms; the rest is process start-up",
        f"restart, heal: {med['heal_deleted']:.0f} pod netns and the nft table deleted while "
        f"the agent was dead; its start-up reconcile took {ms['heal_pass']:.0f} ms "
        f"({med['heal_steps']:.0f} steps)",
    ]


# -- leftovers -------------------------------------------------------------------------


def cni_state_dirs() -> set[str]:
    return {str(p) for p in (Path("/var/lib/cni"), Path("/run/cni")) if p.exists()}


def leftovers(lab_ids: list[str], cni_before: set[str]) -> list[str]:
    """Anything the benchmark made that is still there (should be nothing)."""
    found = lab_leftovers(lab_ids)
    return found + [f"{d} appeared" for d in sorted(cni_state_dirs() - cni_before)]


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=50, help="pods per phase (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh labs (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--cni-driver", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.pods <= 1000 or args.rounds < 1:
        parser.error("--pods must be 1-1000 and --rounds at least 1")
    return args


def preflight() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/pods.py needs root: it creates throwaway network namespaces")
    for plugin in ("bridge", "host-local"):
        if not (CNI_PATH / plugin).exists():
            sys.exit(f"{CNI_PATH / plugin} is missing: apt-get install containernetworking-plugins")


def run(args: argparse.Namespace) -> int:
    preflight()
    cni_before = cni_state_dirs()
    rounds: list[dict[str, float]] = []
    lab_ids: list[str] = []
    notes: dict[str, str] = {}
    try:
        for i in range(args.rounds):
            rounds.append(one_round(args.pods, i, args.rounds, lab_ids, notes))
    finally:
        problems = leftovers(lab_ids, cni_before)
        for p in problems:
            log(f"WARNING: {p}")
    summary = summarize(args.pods, rounds)
    summary["anchor_check"] = notes.get("checked", "")
    summary["leftovers"] = problems
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cni_driver:
        print(json.dumps(cni_driver(json.loads(args.cni_driver))))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
