"""Benchmark the service data plane: a VIP against the pod's own IP, and convergence.

One throwaway Lab (a "host" netns with a private agent). On network ``front``:
``web-1`` and ``web-2`` run ``podnet whoami`` on port 8080, ``client`` runs
``sleep``. Service ``web`` (``--port 80:8080 -l app=web --health none``)
balances over web-1 alone; service ``hc`` (port 81, ``-l tier=hc``, HTTP
health checks every 0.5 s) over web-1 and web-2.

1. Throughput and latency: ``wrk -t1 -c32 --latency`` inside the client pod's
   netns, straight to web-1's IP and through web's VIP (same single endpoint),
   with 10 and then 10,000 services loaded; keep-alive connections, and a new
   connection per request (``Connection: close``: every request is a new flow
   that nft has to DNAT). Direct and VIP runs alternate; medians of --runs.
   The 9,990 extra services (manual endpoint 10.89.0.250, health none) are
   written straight into the agent's store in one commit, VIPs and VIP leases
   included, then ``POST /v1/reconcile`` syncs them into the kernel (timed:
   the full sync of 10,000 services through the agent), and once more with
   nothing to change (what the agent's periodic full reconcile costs).
2. Convergence on ``hc``: web-2's whoami is SIGKILLed (the pod stays
   "running": only the health checks can notice), or ``podnet stop web-2``
   (the pod leaves the selection at once). Measured from that moment: until
   the agent reports web-2 unhealthy (or gone) in the service's endpoints,
   and until requests through the VIP (a new connection every 10 ms from the
   client pod) stop failing, i.e. the first success after the last failure.
   Printed beside ``podnet.health.expected_detection_time``. Then web-2 is
   started again and the time until it is healthy and answers through the VIP
   is recorded as well.
3. Agent restart (SIGTERM, start) with 10,000 services: time until the API
   answers and the start-up reconcile the agent logs.

Everything happens inside the lab (traffic only to lab addresses); the script
checks at the end that nothing is left behind.

Usage: sudo .venv/bin/python bench/services_dataplane.py [--runs 3] [--duration 5]
       [--services 10000] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

# Run as a script, this directory comes first on sys.path, and bench/dns.py would
# shadow dnspython, which podnet.lab imports (via podnet.dns): drop it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from podnet.agent.registry import VIP_LEASES  # noqa: E402
from podnet.api.http import ApiClient  # noqa: E402
from podnet.controller.state import Keys  # noqa: E402
from podnet.errors import PodnetError  # noqa: E402
from podnet.health import expected_detection_time, expected_recovery_time  # noqa: E402
from podnet.kernel import netns  # noqa: E402
from podnet.lab import Lab, parse_wrk  # noqa: E402
from podnet.lab import leftovers as lab_leftovers  # noqa: E402
from podnet.model.service import Endpoint, HealthCheck, ServicePort, ServiceSpec  # noqa: E402
from podnet.store import Put, open_store  # noqa: E402

NETWORK, SUBNET = "front", "10.89.0.0/24"
DUMMY_ENDPOINT = "10.89.0.250"  # in the subnet, never handed out to our 3 pods
WHOAMI = [sys.executable, "-m", "podnet", "whoami", "--port", "8080", "--quiet"]
HEALTH = HealthCheck(
    kind="http", interval=0.5, timeout=0.4, healthy_threshold=1, unhealthy_threshold=2
)
HEALTH_ARGS = [
    "--health",
    "http",
    "--health-interval",
    str(HEALTH.interval),
    "--health-timeout",
    str(HEALTH.timeout),
    "--healthy-threshold",
    str(HEALTH.healthy_threshold),
    "--unhealthy-threshold",
    str(HEALTH.unhealthy_threshold),
]
CONVERGE_TIMEOUT = 15.0  # one convergence measurement gives up after this
PROBE_EVERY = 0.01
STABLE = 1.0  # seconds of clean VIP answers that end a convergence measurement
_CONVERGED = re.compile(r"converged in ([0-9.]+)s \((\d+) steps\)")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def api(lab: Lab, timeout: float = 600.0) -> ApiClient:
    return ApiClient(lab.settings.socket_path, timeout=timeout)


def ns(lab: Lab, pod: str) -> str:
    return lab.settings.netns_prefix + pod


def pod_ip(lab: Lab, pod: str) -> str:
    data = api(lab).get(f"/v1/pods/{pod}")
    return str(data["interfaces"][0]["addresses"][0]).split("/")[0]


def vip_of(lab: Lab, service: str) -> str:
    return str(api(lab).get(f"/v1/services/{service}")["vips"][0])


# -- wrk -------------------------------------------------------------------------------


def wrk(lab: Lab, url: str, duration: int, close: bool) -> dict[str, float]:
    argv = ["wrk", "-t1", "-c32", f"-d{duration}s", "--timeout", "2s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    done = lab.run([*argv, url], where=ns(lab, "client"), timeout=duration + 30)
    return parse_wrk(done.stdout)


def throughput(lab: Lab, args: argparse.Namespace, load: int) -> dict[str, Any]:
    """Direct and VIP, alternating, ``args.runs`` times each, for both connection modes."""
    direct = f"http://{pod_ip(lab, 'web-1')}:8080/"
    via_vip = f"http://{vip_of(lab, 'web')}:80/"
    out: dict[str, Any] = {}
    for mode, close in (("keepalive", False), ("close", True)):
        runs: dict[str, list[dict[str, float]]] = {"direct": [], "vip": []}
        for i in range(args.runs):
            order = [("direct", direct), ("vip", via_vip)]
            for target, url in order if i % 2 == 0 else order[::-1]:
                r = wrk(lab, url, args.duration, close)
                runs[target].append(r)
                log(
                    f"[{load} services] {mode} {target} run {i + 1}: {r['rps']:.0f} req/s, "
                    f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, errors {r['errors']:.0f}"
                )
        out[mode] = {
            t: {k: statistics.median(r[k] for r in rs) for k in rs[0]} | {"runs": rs}
            for t, rs in runs.items()
        }
    return out


# -- loading services --------------------------------------------------------------------


def load_services(lab: Lab, total: int) -> dict[str, float]:
    """Dummy services straight into the store until ``total`` exist; reconcile (timed)."""
    store = open_store(lab.settings.store_url)
    try:
        have = {e.key.removeprefix(Keys.SERVICES) for e in store.list(Keys.SERVICES)}
        used = {e.key.removeprefix(VIP_LEASES) for e in store.list(VIP_LEASES)}
        pool = ipaddress.ip_network(lab.settings.service_pool)
        free = (str(ip) for ip in pool.hosts() if str(ip) not in used)
        ops: list[Put] = []
        i = 0
        while len(have) + len(ops) // 2 < total:
            i += 1
            name = f"dummy-{i:05d}"
            if name in have:
                continue
            vip = next(free)
            spec = ServiceSpec(
                name=name,
                ports=(ServicePort(80, 8080),),
                endpoints=(Endpoint(ipaddress.ip_address(DUMMY_ENDPOINT)),),
                health=HealthCheck(kind="none"),
                vips=(ipaddress.ip_address(vip),),
                owner="bench",
            ).validate()
            ops.append(Put(Keys.service(name), spec.to_dict()))
            ops.append(Put(f"{VIP_LEASES}{vip}", {"service": name}))
        start = time.perf_counter()
        if ops:
            store.commit(ops)
        committed = time.perf_counter() - start
    finally:
        store.close()
    client = api(lab)
    start = time.perf_counter()
    client.post("/v1/reconcile")
    synced = time.perf_counter() - start
    start = time.perf_counter()
    steps = client.post("/v1/reconcile")["steps"]
    again = time.perf_counter() - start
    count = len(client.get("/v1/services"))
    if count != total:
        raise RuntimeError(f"the agent lists {count} services, not {total}")
    return {
        "added": float(len(ops) // 2),
        "commit_s": committed,
        "reconcile_s": synced,
        "reconcile_again_s": again,
        "reconcile_again_steps": float(len(steps)),
    }


def endpoint_change(lab: Lab, total: int, rounds: int) -> dict[str, float]:
    """With ``total`` services loaded, the manual endpoint of one of them is
    switched between web-1 and web-2 (both serve 8080): seconds from the store
    commit until a new connection to its VIP, from the client pod, is answered
    by the new endpoint (probed back to back, ~1 ms each). Median of ``rounds``."""
    name = f"dummy-{total // 2:05d}"
    vip = vip_of(lab, name)
    pods = ("web-1", "web-2")
    addresses = {p: ipaddress.ip_address(pod_ip(lab, p)) for p in pods}
    store = open_store(lab.settings.store_url)
    times: list[float] = []
    try:
        for i in range(rounds + 1):  # the first switch (from the dummy address) warms up
            target = pods[i % 2]
            entry = store.get(Keys.service(name))
            assert entry is not None, name
            spec = ServiceSpec.from_dict(entry.value)
            new = replace(spec, endpoints=(Endpoint(addresses[target]),))

            def probe(target: str = target, new: ServiceSpec = new) -> float:
                start = time.perf_counter()
                store.put(Keys.service(name), new.to_dict())
                while ask(vip, 80, timeout=0.05) != target:
                    if time.perf_counter() - start > 30:
                        raise RuntimeError(f"{name}'s VIP never reached {target}")
                return time.perf_counter() - start

            took = lab.in_ns(ns(lab, "client"), probe)
            if i:
                times.append(took)
    finally:
        store.close()
        store = open_store(lab.settings.store_url)  # back to the dummy endpoint
        try:
            entry = store.get(Keys.service(name))
            if entry is not None:
                spec = ServiceSpec.from_dict(entry.value)
                dummy = (Endpoint(ipaddress.ip_address(DUMMY_ENDPOINT)),)
                store.put(Keys.service(name), replace(spec, endpoints=dummy).to_dict())
        finally:
            store.close()
    return {"median_s": statistics.median(times), "max_s": max(times), "rounds": float(rounds)}


def nft_has(lab: Lab, text: str) -> bool:
    table = lab.settings.nft_table
    return text in lab.run(["nft", "list", "table", "inet", table], timeout=120).stdout


# -- convergence -------------------------------------------------------------------------


def whoami_pid(lab: Lab, pod: str) -> int:
    """The pod's whoami process: in the pod's netns, running ``podnet whoami``."""
    target = os.stat(netns.path(ns(lab, pod))).st_ino
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino != target:
                continue
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"whoami" in argv and b"podnet" in argv:
                return int(pid)
    raise RuntimeError(f"no whoami process in {pod}'s netns")


def ask(host: str, port: int, timeout: float = 0.5) -> str:
    """One request on a new connection: the answering pod, or why there was none."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as c:
            c.settimeout(timeout)
            c.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\n" not in data.partition(b"Hostname: ")[2] and len(data) < 65536:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
    except ConnectionRefusedError:
        return "!refused"
    except ConnectionResetError:
        return "!reset"
    except TimeoutError:
        return "!timeout"
    except OSError as exc:
        return f"!{exc.__class__.__name__}"
    name = data.partition(b"Hostname: ")[2].split(b"\n", 1)[0].strip()
    return name.decode(errors="replace") or "!empty"


def web2_state(lab: Lab, service: str) -> str:
    eps = api(lab, timeout=10).get(f"/v1/services/{service}/endpoints")["endpoints"]
    for ep in eps:
        if ep.get("pod") == "web-2":
            return str(ep.get("health")) + ("" if ep.get("ready") else " (not ready)")
    return "gone"


class Prober:
    """Requests through a VIP from a pod, every PROBE_EVERY seconds, on its own thread."""

    def __init__(self, lab: Lab, where: str, vip: str, port: int) -> None:
        self.samples: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self._error: BaseException | None = None

        def loop() -> None:
            deadline = time.monotonic() + 3 * CONVERGE_TIMEOUT
            while not self.stop.is_set() and time.monotonic() < deadline:
                t = time.monotonic()
                self.samples.append((t, ask(vip, port)))
                time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - t)))

        def run() -> None:
            try:
                lab.in_ns(where, loop)
            except BaseException as exc:  # re-raised by close()
                self._error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        if self._error is not None:
            raise self._error


def wait_until(ready: Callable[[], bool], timeout: float, what: str, step: float = 0.02) -> float:
    start = time.monotonic()
    while not ready():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} after {timeout:g}s")
        time.sleep(step)
    return time.monotonic() - start


def converge_once(lab: Lab, how: str, vip: str) -> dict[str, float]:
    """Take web-2 away (``kill`` or ``stop``); seconds until the agent and the VIP notice."""
    prober = Prober(lab, ns(lab, "client"), vip, 81)
    try:
        wait_until(lambda: len(prober.samples) >= 20, 10, "the prober did not start")
        seen = {who for _, who in prober.samples}
        if "web-2" not in seen or any(w.startswith("!") for w in seen):
            raise RuntimeError(f"before the change the VIP answered {sorted(seen)}")
        victim = whoami_pid(lab, "web-2") if how == "kill" else 0
        t0 = time.monotonic()
        if how == "kill":
            os.kill(victim, signal.SIGKILL)
        else:
            api(lab).post("/v1/pods/web-2/stop")
        acted = time.monotonic() - t0
        state = web2_state(lab, "hc")
        health = math.nan
        while time.monotonic() - t0 < CONVERGE_TIMEOUT:
            state = web2_state(lab, "hc")
            if math.isnan(health) and (state.startswith("unhealthy") or state == "gone"):
                health = time.monotonic() - t0
            after = [(t, w) for t, w in prober.samples if t >= t0]
            failed = [t for t, w in after if w.startswith("!") or w == "web-2"]
            last = failed[-1] if failed else t0
            clean = [t for t, _ in after if t > last]
            if not math.isnan(health) and clean and clean[-1] - clean[0] >= STABLE:
                break
            time.sleep(0.02)
        else:
            raise TimeoutError(f"web-2 still {state!r} / VIP failing {CONVERGE_TIMEOUT:g}s after")
    finally:
        prober.close()
    after = [(t, w) for t, w in prober.samples if t >= t0]
    failures = [t for t, w in after if w.startswith("!") or w == "web-2"]
    last = failures[-1] if failures else t0
    vip_done = min(t for t, _ in after if t > last) - t0
    return {
        "action_s": acted,
        "health_s": health,
        "vip_s": vip_done,
        "failed_requests": float(len(failures)),
        "requests": float(len(after)),
    }


def recover(lab: Lab, vip: str) -> dict[str, float]:
    """Start web-2 again: seconds until it is healthy and answers through the VIP."""
    t0 = time.monotonic()
    api(lab).post("/v1/pods/web-2/start")
    started = time.monotonic() - t0
    wait_until(
        lambda: lab.can_connect(ns(lab, "client"), pod_ip(lab, "web-2"), 8080, timeout=0.2),
        CONVERGE_TIMEOUT,
        "web-2 did not listen again",
    )
    listening = time.monotonic() - t0
    wait_until(
        lambda: web2_state(lab, "hc") == "healthy", CONVERGE_TIMEOUT, "web-2 not healthy again"
    )
    healthy = time.monotonic() - t0
    wait_until(
        lambda: lab.in_ns(ns(lab, "client"), lambda: ask(vip, 81)) == "web-2",
        CONVERGE_TIMEOUT,
        "the VIP does not send to web-2 again",
        step=0.005,
    )
    return {
        "start_s": started,
        "listening_s": listening,
        "healthy_s": healthy,
        "healthy_after_listening_s": healthy - listening,
        "vip_s": time.monotonic() - t0,
    }


def convergence(lab: Lab, args: argparse.Namespace, load: int) -> dict[str, Any]:
    vip = vip_of(lab, "hc")
    out: dict[str, Any] = {}
    for how in ("kill", "stop"):
        runs, back = [], []
        for i in range(args.runs):
            r = converge_once(lab, how, vip)
            runs.append(r)
            b = recover(lab, vip)
            back.append(b)
            log(
                f"[{load} services] {how} web-2 run {i + 1}: health {r['health_s']:.3f}s, "
                f"VIP {r['vip_s']:.3f}s ({r['failed_requests']:.0f} of "
                f"{r['requests']:.0f} requests failed); back: healthy {b['healthy_s']:.3f}s, "
                f"VIP {b['vip_s']:.3f}s"
            )
        out[how] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        out[how]["runs"] = runs
        out[how]["recovery"] = {k: statistics.median(b[k] for b in back) for k in back[0]}
    return out


def health_monitor_works(lab: Lab) -> bool:
    """The agent's health monitor reports something other than "unknown" for hc."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: web2_state(lab, "hc") == "healthy", 10, "no health")
        return True
    return False


# -- agent restart -------------------------------------------------------------------------


def log_offset(lab: Lab) -> int:
    with contextlib.suppress(FileNotFoundError):
        return (lab.settings.state_dir / "agent.log").stat().st_size
    return 0


def restart_agent(lab: Lab) -> dict[str, float]:
    offset = log_offset(lab)
    lab.stop_agent(signal.SIGTERM, timeout=60)
    start = time.perf_counter()
    lab.podnet("network", "ls", timeout=300)  # the CLI starts the agent and waits for it
    answered = time.perf_counter() - start
    with open(lab.settings.state_dir / "agent.log", "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    # the old agent may log a periodic pass while stopping: only the new agent's first
    found = _CONVERGED.search(text.rpartition("podnet agent stopped")[2])
    return {
        "api_s": answered,
        "startup_reconcile_s": float(found.group(1)) if found else math.nan,
        "startup_reconcile_steps": float(found.group(2)) if found else math.nan,
    }


# -- the run --------------------------------------------------------------------------------


def setup(lab: Lab) -> None:
    lab.podnet("network", "create", NETWORK, "--subnet", SUBNET)
    lab.podnet("run", "--name", "web-1", "--net", NETWORK, "-l", "app=web", "-l", "tier=hc",
               "--", *WHOAMI)  # fmt: skip
    lab.podnet("run", "--name", "web-2", "--net", NETWORK, "-l", "tier=hc", "--", *WHOAMI)
    lab.podnet("run", "--name", "client", "--net", NETWORK, "--", "sleep", "3600")
    lab.podnet("service", "create", "web", "--port", "80:8080", "--selector", "app=web",
               "--health", "none")  # fmt: skip
    lab.podnet("service", "create", "hc", "--port", "81:8080", "--selector", "tier=hc",
               *HEALTH_ARGS)  # fmt: skip
    client = ns(lab, "client")
    # `Connection: close` runs open ~25k connections each: without these the client
    # pod runs out of ephemeral ports (TIME_WAIT) and every later run is throttled.
    lab.run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"], where=client)
    lab.run(["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"], where=client)
    for pod in ("web-1", "web-2"):
        lab.wait_http(client, pod_ip(lab, pod), 8080)
    status, body = lab.wait_http(client, vip_of(lab, "web"), 80)
    if status != 200 or not body.startswith("Hostname: web-1"):
        raise RuntimeError(f"the VIP of web answered {status} {body[:60]!r}")


def bench(lab: Lab, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"lab": lab.id}
    lab.podnet("network", "ls")  # starts the agent
    setup(lab)
    result["health_monitor"] = health_monitor_works(lab)
    if not result["health_monitor"]:
        log(f"SKIP convergence: hc's web-2 stays {web2_state(lab, 'hc')!r} (no health monitor?)")
    for load in (10, args.services):
        sync = load_services(lab, load)
        log(
            f"[{load} services] loaded {sync['added']:.0f}: commit {sync['commit_s']:.3f}s, "
            f"reconcile {sync['reconcile_s']:.3f}s, again {sync['reconcile_again_s']:.3f}s"
        )
        last = f"dummy-{load - 2:05d}"
        if not nft_has(lab, vip_of(lab, last)):
            raise RuntimeError(f"the VIP of {last} is not in nft after the reconcile")
        sync["endpoint_change"] = endpoint_change(lab, load, max(5, args.runs))
        log(f"[{load} services] one endpoint change -> nft: {sync['endpoint_change']}")
        entry: dict[str, Any] = {"sync": sync, "throughput": throughput(lab, args, load)}
        if result["health_monitor"]:
            entry["convergence"] = convergence(lab, args, load)
        result[str(load)] = entry
    result["restart"] = restart_agent(lab)
    log(f"[{args.services} services] agent restart: {result['restart']}")
    status, body = lab.wait_http(ns(lab, "client"), vip_of(lab, "web"), 80)
    result["after_restart"] = f"{status} {body.splitlines()[0] if body else ''}"
    return result


# -- report -----------------------------------------------------------------------------------


def ratios(result: dict[str, Any], loads: list[int]) -> dict[str, float]:
    out = {}
    for load in loads:
        for mode in ("keepalive", "close"):
            t = result[str(load)]["throughput"][mode]
            out[f"{load}/{mode}/rps"] = t["vip"]["rps"] / t["direct"]["rps"]
            out[f"{load}/{mode}/p50"] = t["vip"]["p50_ms"] / t["direct"]["p50_ms"]
            out[f"{load}/{mode}/p99"] = t["vip"]["p99_ms"] / t["direct"]["p99_ms"]
    return out


def render(s: dict[str, Any]) -> str:
    loads, runs = s["loads"], s["runs"]
    lines = [
        f"podnet service data plane: median of {runs} wrk runs each "
        f"(-t1 -c32 -d{s['duration']}s --latency) from a client pod to a `podnet whoami` pod",
        "direct = the pod's IP:8080; vip = service web's VIP:80 (1 endpoint, the same pod).",
        "keepalive = 32 long connections; close = `Connection: close`, a new flow per request.",
        "ratio = vip / direct (goal: rps within 5% of direct, flat in the number of services)",
        "",
    ]
    head = (
        f"{'services':>8} {'mode':<9} {'direct rps':>10} {'vip rps':>9} {'ratio':>6}   "
        f"{'p50 d/v ms':>13} {'ratio':>5}   {'p99 d/v ms':>13} {'ratio':>5} {'errors':>6}"
    )
    lines += [head, "-" * len(head)]
    for load in loads:
        for mode in ("keepalive", "close"):
            t = s["results"][str(load)]["throughput"][mode]
            d, v = t["direct"], t["vip"]
            r = s["ratios_vip_over_direct"]
            lines.append(
                f"{load:>8} {mode:<9} {d['rps']:>10.0f} {v['rps']:>9.0f} "
                f"{r[f'{load}/{mode}/rps']:>6.3f}   "
                f"{d['p50_ms']:>6.2f}/{v['p50_ms']:<6.2f} {r[f'{load}/{mode}/p50']:>5.2f}   "
                f"{d['p99_ms']:>6.2f}/{v['p99_ms']:<6.2f} {r[f'{load}/{mode}/p99']:>5.2f} "
                f"{d['errors'] + v['errors']:>6.0f}"
            )
    lines.append("")
    for load in loads:
        sync = s["results"][str(load)]["sync"]
        lines.append(
            f"load to {load} services: {sync['added']:.0f} written to the store in one commit "
            f"({sync['commit_s']:.3f}s); POST /v1/reconcile (full sync through the agent) "
            f"{sync['reconcile_s']:.3f}s; again with nothing to change "
            f"{sync['reconcile_again_s']:.3f}s ({sync['reconcile_again_steps']:.0f} steps)"
        )
        change = sync["endpoint_change"]
        lines.append(
            f"one endpoint change with {load} services, store commit -> VIP answered by it: "
            f"median {change['median_s'] * 1000:.1f} ms, max {change['max_s'] * 1000:.1f} ms "
            f"({change['rounds']:.0f} changes, web-1 <-> web-2; a new connection every ~1 ms)"
        )
    rs = s["results"]["restart"]
    lines.append(
        f"agent restart with {loads[-1]} services: API answered after {rs['api_s']:.3f}s "
        f"(CLI included); start-up reconcile {rs['startup_reconcile_s']:.3f}s "
        f"({rs['startup_reconcile_steps']:.0f} steps); VIP afterwards: "
        f"{s['results']['after_restart']}"
    )
    lines.append("")
    lo, hi = s["expected_detection_s"]
    rlo, rhi = s["expected_recovery_s"]
    if not s["results"]["health_monitor"]:
        lines.append("convergence: SKIPPED, the agent never reported web-2's health on hc")
    else:
        lines.append(
            f"convergence on hc (2 endpoints; http checks interval {HEALTH.interval}s, timeout "
            f"{HEALTH.timeout}s, unhealthy after {HEALTH.unhealthy_threshold}, healthy after "
            f"{HEALTH.healthy_threshold}); median of {runs}, seconds from the action"
        )
        lines.append(
            f"expected_detection_time: {lo:.2f}-{hi:.2f}s; expected_recovery_time: "
            f"{rlo:.2f}-{rhi:.2f}s (after the port listens)"
        )
        head = (
            f"{'services':>8} {'web-2':<24} {'action':>6} {'agent: unhealthy':>16} "
            f"{'VIP: no failures':>16} {'failed reqs':>11}   {'back: start':>11} "
            f"{'healthy':>7} {'VIP':>6}"
        )
        lines += [head, "-" * len(head)]
        for load in loads:
            c = s["results"][str(load)]["convergence"]
            for how, label in (("kill", "whoami SIGKILLed"), ("stop", "podnet stop (API)")):
                x, b = c[how], c[how]["recovery"]
                lines.append(
                    f"{load:>8} {label:<24} {x['action_s']:>6.3f} {x['health_s']:>16.3f} "
                    f"{x['vip_s']:>16.3f} {x['failed_requests']:>11.0f}   {b['start_s']:>11.3f} "
                    f"{b['healthy_after_listening_s']:>7.3f} {b['vip_s']:>6.3f}"
                )
        lines.append(
            "action = the SIGKILL, or POST /v1/pods/web-2/stop returning; stop: 'unhealthy' = "
            "web-2 gone from the endpoints.\nback: start = POST /v1/pods/web-2/start returning; "
            "healthy = from when its port listens again; VIP = from the start until it answers "
            "through the VIP"
        )
    lines.append("")
    problems = s["leftovers"]
    lines.append("left behind: " + ("; ".join(problems) if problems else "nothing (checked)"))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per cell (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--services", type=int, default=10000, help="the large load (10000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.runs < 1 or not 1 <= args.duration <= 60 or not 12 <= args.services <= 60000:
        parser.error("--runs >= 1, --duration 1-60, --services 12-60000")
    return args


def preflight() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/services_dataplane.py needs root: it creates throwaway network namespaces")
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")


@contextlib.contextmanager
def lab_scope(lab_ids: list[str]) -> Iterator[Lab]:
    with Lab() as lab:
        lab_ids.append(lab.id)
        yield lab


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preflight()
    lab_ids: list[str] = []
    try:
        with lab_scope(lab_ids) as lab:
            result = bench(lab, args)
    except (PodnetError, OSError) as exc:
        log(f"FAILED: {exc}")
        raise
    finally:
        problems = lab_leftovers(lab_ids)
        for p in problems:
            log(f"WARNING: {p}")
    loads = [10, args.services]
    summary = {
        "runs": args.runs,
        "duration": args.duration,
        "loads": loads,
        "expected_detection_s": list(expected_detection_time(HEALTH)),
        "expected_recovery_s": list(expected_recovery_time(HEALTH)),
        "ratios_vip_over_direct": ratios(result, loads),
        "results": result,
        "leftovers": problems,
    }
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
