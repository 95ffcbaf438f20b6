"""Benchmark podnet's L7 proxy against nginx and HAProxy as reverse proxies.

One throwaway Lab (a "host" and an "external" netns joined by a veth pair; no
agent is needed). In the host netns: the backends, ``podnet whoami`` on
198.18.0.1:9001-900N (``--backends``, default 3; ``--backend static`` swaps
them for one nginx answering ``ok`` from N ports, so that the proxy rather
than Python backends is the bottleneck), and three reverse proxies in front of
the same backends, each with one worker, each on its own port:

- nginx (8081): ``worker_processes 1``, an upstream with ``keepalive 64``,
  ``proxy_http_version 1.1``, ``proxy_set_header Connection ""``; the client
  and upstream ``keepalive_requests`` raised so that nginx does not close
  keep-alive connections every 1,000 requests (HAProxy does not); no access
  log. Default ``proxy_next_upstream error timeout``.
- HAProxy (8082): ``nbthread 1``, ``mode http``, ``http-reuse always``,
  round robin, ``retries 3`` + ``option redispatch 1`` + ``retry-on
  conn-failure empty-response response-timeout``; no log; a stats socket in
  the temporary directory (bench/proxy_failover.py reads its counters).
- podnet (8083): ``podnet proxy run --workers 1 --snapshot FILE`` with one
  route (``/``) to one backend holding the N endpoints, RetryPolicy and the
  other policies at their defaults; no access log.

The client is ``wrk -t1 -c64 -d10s --timeout 2s --latency`` in the external
netns, GET of ``/health`` (whoami answers ``ok``, the same few bytes through
every proxy: ``/`` would echo the request headers, which differ by proxy).
Every connection is keep-alive. Rounds are interleaved (nginx, haproxy,
podnet, direct, repeat) after a 2 s warm-up of each; the table has medians.
"direct" is the same wrk straight to the first backend (one of N): a
reference, not a proxy.

CPU placement (two or more CPUs): the proxy under test is pinned alone to the
first CPU, wrk and the backends to the second (``--float-backends`` lets the
backends run anywhere, ``--no-pin`` pins nothing). The machine may be shared:
other processes are not kept off either CPU, which is why rounds interleave,
why the proxy's requests per CPU-second of its own (robust to that) are
printed beside req/s, and why ``--nice -10`` (every process started here at
that niceness) exists.

The CPU time the proxy (all its processes) and the backends used during each
run is read from /proc and printed as a share of one CPU: a proxy at ~100% is
the bottleneck; a proxy well below 100% with the backends busy is waiting on
them (then rps compares the backends' capacity as much as the proxies).

Processes are started by this script (nsenter into the lab's netns, configs,
pid files and logs in the lab's temporary directory, never a system service)
and stopped by their pid; the lab is removed at the end and the script checks
that nothing is left behind.

Usage: sudo .venv/bin/python bench/proxy.py [--rounds 3] [--duration 10]
       [--backends 3] [--backend whoami|static] [--proxies nginx,haproxy,podnet]
       [--nice 0] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from podnet.errors import PodnetError
from podnet.kernel import netns
from podnet.lab import Lab, parse_wrk
from podnet.lab import leftovers as lab_leftovers
from podnet.model.route import (
    BackendRef,
    ResolvedBackend,
    ResolvedRoute,
    RouteSpec,
    Snapshot,
    SnapshotEndpoint,
)

PROXIES = ("nginx", "haproxy", "podnet")
PORTS = {"nginx": 8081, "haproxy": 8082, "podnet": 8083}
BACKEND_PORT = 9001  # backends on 9001, 9002, ...
ADMIN = ("127.0.0.1", 9901)  # podnet's admin listener, host netns loopback
PATH = "/health"
CONNECTIONS = 64
WARMUP = 2
START_TIMEOUT = 20.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- CPU placement -------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which CPUs the proxy under test, the client and the backends may use
    (None: not pinned)."""

    proxy: str | None
    client: str | None
    backends: str | None

    @staticmethod
    def choose(pin: bool, float_backends: bool) -> Placement:
        """Proxy under test alone on the first CPU; wrk and the backends share the second."""
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
            return Placement(None, None, None)
        return Placement(str(cpus[0]), str(cpus[1]), None if float_backends else str(cpus[1]))

    def describe(self) -> str:
        if self.proxy is None:
            return "not pinned"
        backends = f"CPU {self.backends}" if self.backends else "not pinned"
        return (
            f"proxy under test on CPU {self.proxy}, load client on CPU {self.client}, "
            f"backends {backends}"
        )


#: Niceness of every process the bench starts (``--nice``): on a shared machine
#: a negative value keeps other users' processes from taking the proxy's CPU.
PRIORITY = {"nice": 0}


def pinned(cpu: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` on ``cpu`` (None: anywhere) at the bench's niceness; both tools exec."""
    prefix = ["nice", "-n", str(PRIORITY["nice"])] if PRIORITY["nice"] else []
    return [*prefix, *(["taskset", "-c", cpu] if cpu is not None else []), *argv]


# -- processes -----------------------------------------------------------------------


@dataclass
class Procs:
    """Long-running processes this script started in the lab, by name; each is
    stopped by its own pid (nsenter and taskset exec, so the pid is the program's)."""

    lab: Lab
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: Sequence[str], where: str | None = None) -> int:
        logfile = self.lab.tmp / f"{name}.log"
        with open(logfile, "ab") as out:
            self.running[name] = subprocess.Popen(
                ["nsenter", f"--net={netns.path(where or self.lab.host)}", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.lab.env(),
                start_new_session=True,
            )
        return self.running[name].pid

    def pid(self, name: str) -> int:
        return self.running[name].pid

    def alive(self, name: str) -> bool:
        return name in self.running and self.running[name].poll() is None

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, grace: float = 12.0) -> None:
        proc = self.running.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def close(self) -> None:
        for name in list(self.running)[::-1]:
            self.stop(name)

    def output(self, name: str, lines: int = 20) -> str:
        try:
            text = (self.lab.tmp / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (nginx's worker, podnet's workers)."""
    parents: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, ()))
    return out


def cpu_seconds(roots: Sequence[int]) -> float:
    """User + system CPU time of these processes and their descendants."""
    total = 0
    for root in roots:
        for pid in descendants(root):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLK_TCK


def cpu_busy(cpu: str | None) -> float:
    """Seconds CPU ``cpu`` (all CPUs when None) spent busy since boot, from /proc/stat."""
    label = "cpu" if cpu is None else f"cpu{cpu}"
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name == label:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, values[:8])
            return (user + nice + system + irq + softirq + steal) / _CLK_TCK
    return 0.0


# -- configurations ------------------------------------------------------------------


def backend_ports(count: int) -> list[int]:
    return [BACKEND_PORT + i for i in range(count)]


def nginx_conf(directory: Path, listen: str, servers: Sequence[str]) -> str:
    """nginx with one worker as a keep-alive reverse proxy to ``servers``."""
    upstream = "".join(f"        server {s};\n" for s in servers)
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{_nginx_paths(directory)}    keepalive_timeout 60s;
    keepalive_requests 10000000;
    upstream backends {{
{upstream}        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen {listen} backlog=4096;
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def nginx_static_conf(directory: Path, listens: Sequence[str]) -> str:
    """One nginx worker answering ``ok`` on every port: a backend faster than any proxy."""
    servers = "".join(
        f"    server {{ listen {a} backlog=4096; location / {{ return 200 'ok'; }} }}\n"
        for a in listens
    )
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{_nginx_paths(directory)}    default_type text/plain;
    keepalive_timeout 60s;
    keepalive_requests 10000000;
{servers}}}
"""


def _nginx_paths(directory: Path) -> str:
    return "".join(
        f"    {kind}_temp_path {directory}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def haproxy_conf(directory: Path, listen: str, servers: Sequence[str]) -> str:
    """HAProxy with one thread as a keep-alive reverse proxy to ``servers``:
    connections to the servers are shared (``http-reuse always``, like nginx's
    upstream pool); a failed connect or an empty answer is retried (3 times,
    each retry on another server)."""
    lines = "".join(f"    server b{i + 1} {s}\n" for i, s in enumerate(servers))
    return f"""global
    nbthread 1
    maxconn 4096
    pidfile {directory}/haproxy.pid
    stats socket {directory}/admin.sock mode 600 level user
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend fe
    bind {listen}
    default_backend be
backend be
    balance roundrobin
{lines}"""


def podnet_snapshot(address: str, ports: Sequence[int]) -> Snapshot:
    """One route (everything) to one backend whose endpoints are the backends;
    every policy at its default."""
    ref = BackendRef(name="web", service="web")
    spec = RouteSpec(name="bench", backends=(ref,)).validate()
    endpoints = tuple(SnapshotEndpoint(address, p) for p in ports)
    return Snapshot(
        proxy="bench", version=1, routes=(ResolvedRoute(spec, (ResolvedBackend(ref, endpoints),)),)
    )


# -- starting things -------------------------------------------------------------------


def podnet_proxy_available() -> str | None:
    """None when ``podnet proxy run`` exists, else why not."""
    done = subprocess.run(
        [sys.executable, "-m", "podnet", "proxy", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        return "`podnet proxy run` is not available: " + (why[-1] if why else "no output")
    return None


def wait_ready(lab: Lab, procs: Procs, name: str, port: int, path: str = PATH) -> None:
    """Until GET ``path`` on the lab's host address answers 200 from the external netns."""
    deadline = time.monotonic() + START_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if not procs.alive(name):
            raise RuntimeError(f"{name} exited:\n{procs.output(name)}")
        try:
            status, body = lab.http_get(lab.external, lab.host_ip, port, path, timeout=1.0)
            if status == 200:
                return
            last = f"status {status}: {body[:200]}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not answer on port {port}: {last}\n{procs.output(name)}")


def start_backends(
    lab: Lab, procs: Procs, count: int, kind: str, cpu: str | None
) -> dict[str, list[int]]:
    """The backends; their names (for stop/kill) and pids."""
    ports = backend_ports(count)
    if kind == "static":
        directory = lab.tmp / "backend-nginx"
        directory.mkdir(exist_ok=True)
        conf = directory / "nginx.conf"
        conf.write_text(nginx_static_conf(directory, [f"{lab.host_ip}:{p}" for p in ports]))
        argv = ["nginx", "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")]
        procs.start("backend", pinned(cpu, argv))
        for port in ports:
            wait_ready(lab, procs, "backend", port)
        return {"backend": [procs.pid("backend")]}
    out = {}
    for i, port in enumerate(ports):
        name = f"backend-{i + 1}"
        argv = [sys.executable, "-m", "podnet", "whoami", "--host", lab.host_ip]
        argv += ["--port", str(port), "--name", name, "--quiet"]
        procs.start(name, pinned(cpu, argv))
        out[name] = [procs.pid(name)]
    for i, port in enumerate(ports):
        wait_ready(lab, procs, f"backend-{i + 1}", port)
    return out


def start_proxy(lab: Lab, procs: Procs, which: str, count: int, cpu: str | None) -> int:
    """Start one proxy in the host netns; its pid once it answers through to a backend."""
    directory = lab.tmp / which
    directory.mkdir(exist_ok=True)
    listen = f"{lab.host_ip}:{PORTS[which]}"
    servers = [f"{lab.host_ip}:{p}" for p in backend_ports(count)]
    conf = directory / f"{which}.conf"
    if which == "nginx":
        (directory / "error.log").unlink(missing_ok=True)  # counted per run
        conf.write_text(nginx_conf(directory, listen, servers))
        argv = ["nginx", "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")]
    elif which == "haproxy":
        conf.write_text(haproxy_conf(directory, listen, servers))
        argv = ["haproxy", "-db", "-f", str(conf)]
    else:
        conf = directory / "snapshot.json"
        snapshot = podnet_snapshot(lab.host_ip, backend_ports(count))
        conf.write_text(json.dumps(snapshot.to_dict(), indent=2))
        argv = [sys.executable, "-m", "podnet", "proxy", "run", "--name", "bench"]
        argv += ["--snapshot", str(conf), "--listen", listen, "--workers", "1"]
        argv += ["--admin", f"{ADMIN[0]}:{ADMIN[1]}"]
    procs.start(which, pinned(cpu, argv))
    wait_ready(lab, procs, which, PORTS[which])
    return procs.pid(which)


def podnet_metrics(lab: Lab, prefix: str = "podnet_proxy_") -> dict[str, float]:
    """podnet's counters and gauges from its admin /metrics, by series (histogram
    buckets left out); empty when it does not answer."""
    try:
        status, text = lab.http_get(lab.host, ADMIN[0], ADMIN[1], "/metrics", timeout=2.0)
    except OSError:
        return {}
    if status != 200:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix) and "_bucket{" not in line:
            series, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[series] = float(value)
    return out


def haproxy_stats(lab: Lab, backend: str = "be") -> dict[str, float]:
    """HAProxy's own counters for ``backend`` (``show stat`` on its stats socket):
    connection and response errors, retries, redispatches, 5xx sent."""
    path = lab.tmp / "haproxy" / "admin.sock"
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2.0)
            sock.connect(str(path))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return {}
    rows = data.decode(errors="replace").lstrip("# ").splitlines()
    names = rows[0].split(",") if rows else []
    for row in rows[1:]:
        values = dict(zip(names, row.split(","), strict=False))
        if values.get("pxname") == backend and values.get("svname") == "BACKEND":
            keys = ("econ", "eresp", "wretr", "wredis", "hrsp_5xx")
            return {k: float(values[k] or 0) for k in keys if k in values}
    return {}


def nginx_upstream_errors(lab: Lab) -> int:
    """Lines of nginx's error log about a failed upstream (what it retried or gave up on)."""
    try:
        text = (lab.tmp / "nginx" / "error.log").read_text(errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if "[error]" in line and "upstream" in line)


# -- wrk -------------------------------------------------------------------------------


def wrk(lab: Lab, port: int, duration: int, threads: int, cpu: str | None) -> dict[str, float]:
    argv = ["wrk", f"-t{threads}", f"-c{CONNECTIONS}", f"-d{duration}s", "--timeout", "2s"]
    argv += ["--latency", f"http://{lab.host_ip}:{port}{PATH}"]
    done = lab.run(pinned(cpu, argv), where=lab.external, timeout=duration + 30)
    return parse_wrk(done.stdout)


def measured(
    lab: Lab,
    port: int,
    args: argparse.Namespace,
    place: Placement,
    *,
    proxy: int | None,
    backends: list[int],
) -> dict[str, float]:
    """One wrk run with the CPU share (of one CPU) the proxy and the backends used,
    and how busy the proxy's CPU was with anything else (the machine may be shared)."""
    p0 = cpu_seconds([proxy]) if proxy else 0.0
    b0, c0, t0 = cpu_seconds(backends), cpu_busy(place.proxy), time.monotonic()
    result = wrk(lab, port, args.duration, args.threads, place.client)
    wall = time.monotonic() - t0
    used = cpu_seconds([proxy]) - p0 if proxy else 0.0
    result["proxy_cpu_pct"] = 100 * used / wall
    result["backends_cpu_pct"] = 100 * (cpu_seconds(backends) - b0) / wall
    result["rps_per_proxy_cpu_s"] = result["requests"] / used if used > 0 else 0.0
    result["others_on_proxy_cpu_pct"] = 100 * max(0.0, cpu_busy(place.proxy) - c0 - used) / wall
    return result


# -- the bench ---------------------------------------------------------------------------


def bench(
    lab: Lab, args: argparse.Namespace, place: Placement, podnet_missing: str | None
) -> dict[str, Any]:
    procs = Procs(lab)
    try:
        backends = start_backends(lab, procs, args.backends, args.backend, place.backends)
        backend_pids = [p for pids in backends.values() for p in pids]
        targets = [p for p in args.proxies if p != "podnet" or podnet_missing is None]
        pids = {t: start_proxy(lab, procs, t, args.backends, place.proxy) for t in targets}
        ports = {**PORTS, "direct": BACKEND_PORT}
        targets.append("direct")
        for target in targets:
            wrk(lab, ports[target], WARMUP, args.threads, place.client)
        runs: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
        for i in range(args.rounds):
            for target in targets:
                r = measured(
                    lab, ports[target], args, place, proxy=pids.get(target), backends=backend_pids
                )
                runs[target].append(r)
                log(
                    f"round {i + 1} {target:8}: {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms"
                    f"  p99 {r['p99_ms']:6.2f} ms  errors {r['errors']:.0f}  proxy CPU "
                    f"{r['proxy_cpu_pct']:3.0f}%  backends CPU {r['backends_cpu_pct']:3.0f}%  "
                    f"others on the proxy's CPU {r['others_on_proxy_cpu_pct']:3.0f}%"
                )
        metrics = podnet_metrics(lab) if "podnet" in pids else {}
    finally:
        procs.close()
    return {
        "medians": {
            t: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for t, rs in runs.items()
        },
        "runs": runs,
        "podnet_metrics": metrics,
    }


def ratios(medians: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    if "nginx" not in medians:
        return {}
    base = medians["nginx"]
    return {
        t: {
            "rps": m["rps"] / base["rps"],
            "p50": m["p50_ms"] / base["p50_ms"],
            "p99": m["p99_ms"] / base["p99_ms"],
            "rps_per_cpu": m["rps_per_proxy_cpu_s"] / base["rps_per_proxy_cpu_s"],
        }
        for t, m in medians.items()
    }


def render(s: dict[str, Any]) -> str:
    med, rat = s["results"]["medians"], s["ratios_vs_nginx"]
    lines = [
        f"L7 proxy, one worker each: wrk -t{s['threads']} -c{CONNECTIONS} -d{s['duration']}s "
        f"--latency, keep-alive, GET {PATH} ({s['backend_kind']}); medians of {s['rounds']} "
        f"interleaved rounds",
        f"backends: {s['backend_desc']}; CPUs: {s['placement']}",
        "",
    ]
    head = (
        f"{'target':<22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'proxy CPU':>9} {'req/CPU-s':>9} {'backends CPU':>12} {'others':>6} "
        f"{'rps/nginx':>9} {'p99/nginx':>9} {'eff/nginx':>9}"
    )
    lines += [head, "-" * len(head)]
    for t, m in med.items():
        label = f"direct (1 of {s['backends']})" if t == "direct" else t
        proxied = t != "direct"
        cpu = f"{m['proxy_cpu_pct']:>8.0f}%" if proxied else f"{'-':>9}"
        per_cpu = f"{m['rps_per_proxy_cpu_s']:>9.0f}" if proxied else f"{'-':>9}"
        lines.append(
            f"{label:<22} {m['rps']:>9.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} "
            f"{m['errors']:>7.0f} {cpu} {per_cpu} {m['backends_cpu_pct']:>11.0f}% "
            f"{m['others_on_proxy_cpu_pct']:>5.0f}% "
            + (f"{rat[t]['rps']:>8.2f}x {rat[t]['p99']:>8.2f}x " if rat else "")
            + (f"{rat[t]['rps_per_cpu']:>8.2f}x" if rat and proxied else f"{'-':>9}")
        )
    lines.append("")
    if "podnet" in med and rat:
        ok_rps, ok_p99 = rat["podnet"]["rps"] >= 0.8, rat["podnet"]["p99"] <= 1.5
        lines.append(
            f"goal: podnet >= 0.8x nginx req/s: {rat['podnet']['rps']:.2f}x "
            f"{'met' if ok_rps else 'MISSED'}; p99 <= 1.5x nginx: {rat['podnet']['p99']:.2f}x "
            f"{'met' if ok_p99 else 'MISSED'}"
        )
    elif s["podnet_missing"]:
        lines.append(f"podnet: not measured ({s['podnet_missing']})")
    lines.append(
        "proxy/backends CPU = CPU time used during the run as a share of one CPU "
        "(a proxy near 100% is the bottleneck);\nreq/CPU-s = requests per second of the "
        "proxy's own CPU time, eff/nginx its ratio (robust to a busy machine);\n"
        "others = the proxy's CPU busy with anything else (kernel softirq work included; "
        "other users of a shared machine)"
    )
    problems = s["leftovers"]
    lines.append("left behind: " + ("; ".join(problems) if problems else "nothing (checked)"))
    return "\n".join(lines)


def proxy_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = set(names) - set(PROXIES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"use some of {','.join(PROXIES)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--backends", type=int, default=3, help="backend count (default 3)")
    parser.add_argument(
        "--backend",
        choices=("whoami", "static"),
        default="whoami",
        help="whoami: podnet whoami processes (default); static: one nginx answering 'ok'",
    )
    add_common_options(parser)
    parser.add_argument(
        "--float-backends", action="store_true", help="do not pin the backends (with wrk)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not 1 <= args.duration <= 120 or not 1 <= args.backends <= 16:
        parser.error("--rounds >= 1, --duration 1-120, --backends 1-16")
    if not 1 <= args.threads <= 4:
        parser.error("--threads 1-4")
    return args


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options both proxy benches take: CPU pinning, niceness, which proxies."""
    parser.add_argument("--no-pin", action="store_true", help="do not pin CPUs")
    parser.add_argument(
        "--nice", type=int, default=0, help="niceness of the processes started (e.g. -10)"
    )
    parser.add_argument(
        "--proxies",
        type=proxy_list,
        default=PROXIES,
        help="comma-separated, from " + ",".join(PROXIES) + " (default: all)",
    )


def preflight(script: str) -> None:
    if os.geteuid() != 0:
        sys.exit(f"{script} needs root: it creates throwaway network namespaces")
    missing = [t for t in ("wrk", "nginx", "haproxy", "nsenter") if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (apt-get install wrk nginx-light haproxy)")


@contextlib.contextmanager
def lab_scope(lab_ids: list[str]) -> Iterator[Lab]:
    with Lab() as lab:
        lab_ids.append(lab.id)
        yield lab


T = TypeVar("T")


def run_in_lab(
    script: str,
    args: argparse.Namespace,
    place: Placement,
    bench: Callable[[Lab, argparse.Namespace, Placement, str | None], T],
) -> tuple[T, list[str], str | None]:
    """The frame both proxy benches share: checks, one lab, ``bench`` in it.
    Returns its result, what the lab left behind (warned about too) and why
    podnet's proxy could not be measured (None: it was)."""
    preflight(script)
    PRIORITY["nice"] = args.nice
    podnet_missing = podnet_proxy_available()
    if podnet_missing:
        log(f"WARNING: {podnet_missing}; measuring the anchors only")
    lab_ids: list[str] = []
    try:
        with lab_scope(lab_ids) as lab:
            result = bench(lab, args, place, podnet_missing)
    except (PodnetError, OSError) as exc:
        log(f"FAILED: {exc}")
        raise
    finally:
        problems = lab_leftovers(lab_ids)
        for p in problems:
            log(f"WARNING: {p}")
    return result, problems, podnet_missing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    place = Placement.choose(not args.no_pin, args.float_backends)
    result, problems, podnet_missing = run_in_lab("bench/proxy.py", args, place, bench)
    desc = (
        f"{args.backends} x podnet whoami (Python, uvloop), round robin"
        if args.backend == "whoami"
        else f"one nginx worker answering 'ok' on {args.backends} ports, round robin"
    )
    summary = {
        "rounds": args.rounds,
        "duration": args.duration,
        "threads": args.threads,
        "backends": args.backends,
        "backend_kind": args.backend,
        "backend_desc": desc,
        "placement": place.describe() + (f"; all at nice {args.nice}" if args.nice else ""),
        "podnet_missing": podnet_missing,
        "ratios_vs_nginx": ratios(result["medians"]),
        "results": result,
        "leftovers": problems,
    }
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
