"""Requests lost when one of three backends is killed under load, through
podnet's L7 proxy, nginx and HAProxy (goal for podnet: 0 for GET).

One throwaway Lab, the same set-up as bench/proxy.py: three ``podnet whoami``
backends on 198.18.0.1:9001-9003 in the lab's host netns, one reverse proxy
with one worker in front of them, a load client in the external netns. Each
run starts fresh backends and a fresh proxy, runs the client for
``--duration`` seconds (20) and SIGKILLs backend 2 (by its pid) ``--kill-at``
seconds (5) after the client started. Then the next proxy; ``--rounds``
repeats the three runs.

- podnet: ``podnet proxy run --workers 1`` with one route whose RetryPolicy
  and OutlierDetection are the defaults (retry on connect-failure, reset,
  502, 503, 504; 3 attempts; retries in flight at most 20% of active requests
  but always 3; an endpoint with 3 consecutive errors ejected for 10 s, then
  20 s, ...); no active health checks (the snapshot is never updated: the
  proxy has to cope alone, as nginx and HAProxy do here).
- nginx: the defaults ``proxy_next_upstream error timeout`` (a GET that met a
  connect error or a closed keep-alive connection goes to the next server)
  and ``max_fails=1 fail_timeout=10s`` (passive: a failed server is skipped
  for 10 s, then tried again).
- HAProxy: ``retries 3``, ``option redispatch 1`` (every retry to another
  server), ``retry-on conn-failure empty-response response-timeout``; no
  ``check`` (no active health checks either).

The client is this script with ``--client`` (asyncio; uvloop when present):
``--connections`` keep-alive connections (64), each sending GET /health and
waiting for the whole answer before the next. Every request is counted
exactly once, as ok (2xx) or failed: another status, a connection refused,
reset or closed before the answer, or no answer within 2 s. After a failure
the connection is closed and a new one opened. It prints the times of its
failures, so the table shows how many came after the kill.

CPUs as in bench/proxy.py: the proxy alone on the first CPU, the client and
the backends on the second. Processes are stopped by pid; the lab is removed
and checked at the end.

Usage: sudo .venv/bin/python bench/proxy_failover.py [--rounds 1] [--duration 20]
       [--kill-at 5] [--connections 64] [--proxies nginx,haproxy,podnet] [--nice 0]
       [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# This directory is on sys.path when run as a script: bench/proxy.py holds the
# set-up shared with the throughput bench (configs, processes, CPU placement).
from proxy import (
    PATH,
    PORTS,
    Placement,
    Procs,
    add_common_options,
    haproxy_stats,
    log,
    nginx_upstream_errors,
    pinned,
    podnet_metrics,
    run_in_lab,
    start_backends,
    start_proxy,
)

from podnet.kernel import netns
from podnet.lab import Lab
from podnet.workload.whoami import new_event_loop

BACKENDS = 3
VICTIM = "backend-2"
REQUEST_TIMEOUT = 2.0
RECONNECT_PAUSE = 0.01  # after a failed connect, so a dead proxy is not spun on


# -- the load client (runs in the external netns) -----------------------------------------


class Tally:
    """Every request the client sent, by outcome."""

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.failures: list[tuple[float, str]] = []

    def fail(self, kind: str) -> None:
        self.failures.append((time.monotonic(), kind))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One whole response: (status, whether the server will close the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0][:8], int(lines[0][9:12])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    close = headers.get("connection") == "close" or version == "HTTP/1.0"
    if "chunked" in headers.get("transfer-encoding", ""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            await reader.readexactly(size + 2)
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif status not in (204, 304) and status >= 200:
        await reader.read()  # until the server closes
        close = True
    return status, close


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "closed before the answer" if not exc.partial else "closed mid-answer"
    return type(exc).__name__


async def connection(host: str, port: int, deadline: float, tally: Tally) -> None:
    """Requests one after another on one keep-alive connection until ``deadline``."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while time.monotonic() < deadline:
        tally.sent += 1
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), REQUEST_TIMEOUT
                )
            assert reader is not None and writer is not None
            writer.write(request)
            status, close = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.fail(failure_kind(exc))
            close, status = True, 0
            if writer is None:
                await asyncio.sleep(RECONNECT_PAUSE)
        else:
            if 200 <= status < 300:
                tally.ok += 1
            else:
                tally.fail(f"status {status}")
        if close and writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            writer = reader = None
    if writer is not None:
        writer.close()


async def load(host: str, port: int, connections: int, duration: float) -> dict[str, Any]:
    tally = Tally()
    start = time.monotonic()
    print(f"started {start}", flush=True)
    deadline = start + duration
    await asyncio.gather(*(connection(host, port, deadline, tally) for _ in range(connections)))
    elapsed = time.monotonic() - start
    return {
        "start": start,
        "elapsed_s": elapsed,
        "sent": tally.sent,
        "ok": tally.ok,
        "failed": len(tally.failures),
        "failures": tally.failures,
    }


def client_main(argv: list[str]) -> int:
    host, port, connections, duration = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    with asyncio.Runner(loop_factory=new_event_loop) as runner:  # uvloop when present
        result = runner.run(load(host, port, connections, duration))
    print(json.dumps(result), flush=True)
    return 0


# -- one run -------------------------------------------------------------------------------


def kill_backend(procs: Procs, name: str) -> float:
    """SIGKILL one backend by its pid (checked to be a whoami first); when it happened."""
    pid = procs.pid(name)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if b"whoami" not in argv:
        raise RuntimeError(f"pid {pid} of {name} is not a whoami process: {argv!r}")
    os.kill(pid, signal.SIGKILL)
    at = time.monotonic()
    procs.stop(name)  # reaps it
    return at


def run_client(
    lab: Lab, procs: Procs, which: str, args: argparse.Namespace, place: Placement
) -> dict[str, Any]:
    """The client against ``which``; backend 2 killed ``args.kill_at`` s after it started."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--client", lab.host_ip]
    argv += [str(PORTS[which]), str(args.connections), str(args.duration)]
    client = subprocess.Popen(
        ["nsenter", f"--net={netns.path(lab.external)}", *pinned(place.client, argv)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=lab.env(),
        start_new_session=True,
    )
    try:
        assert client.stdout is not None
        first = client.stdout.readline()
        if not first.startswith("started "):
            why = client.stderr.read() if client.stderr else ""
            raise RuntimeError(f"the load client did not start: {first}{why}")
        start = float(first.split()[1])
        time.sleep(max(0.0, start + args.kill_at - time.monotonic()))
        killed = kill_backend(procs, VICTIM)
        out, err = client.communicate(timeout=args.duration + 30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=5)
    if client.returncode != 0:
        raise RuntimeError(f"the load client failed:\n{err}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["kill_at_s"] = killed - result["start"]
    return result


def bursts(times: list[float], gap: float = 0.5) -> list[tuple[float, float, int]]:
    """Failure times grouped into bursts (first, last, count), a new one after ``gap`` s."""
    out: list[tuple[float, float, int]] = []
    for t in sorted(times):
        if out and t - out[-1][1] <= gap:
            first, _, n = out[-1]
            out[-1] = (first, t, n + 1)
        else:
            out.append((t, t, 1))
    return out


def summarize(raw: dict[str, Any], killed: float) -> dict[str, Any]:
    failures = raw.pop("failures")
    kinds = collections.Counter(kind for _, kind in failures)
    after = [t - raw["start"] - killed for t, _ in failures if t - raw["start"] >= killed]
    return {
        **raw,
        "rps": raw["sent"] / raw["elapsed_s"],
        "failed_before_kill": len(failures) - len(after),
        "failed_after_kill": len(after),
        "last_failure_after_kill_s": max(after) if after else None,
        "bursts_after_kill": bursts(after),
        "kinds": dict(kinds),
    }


def one_run(lab: Lab, which: str, args: argparse.Namespace, place: Placement) -> dict[str, Any]:
    procs = Procs(lab)
    try:
        start_backends(lab, procs, BACKENDS, "whoami", place.backends)
        start_proxy(lab, procs, which, BACKENDS, place.proxy)
        raw = run_client(lab, procs, which, args, place)
        own = proxy_account(lab, which)
    finally:
        procs.close()
    result = summarize(raw, raw["kill_at_s"])
    result["proxy_account"] = own
    result["proxy_log_tail"] = procs.output(which, 40)  # in --json: what it said about them
    return result


def proxy_account(lab: Lab, which: str) -> dict[str, float]:
    """What the proxy itself says happened: podnet's metrics (retries, upstream
    errors, ejections), HAProxy's backend counters, nginx's upstream error lines."""
    if which == "podnet":
        return {
            k.removeprefix("podnet_proxy_"): v
            for k, v in podnet_metrics(lab).items()
            if any(w in k for w in ("retries", "upstream_errors", "ejections", "5xx", "overflow"))
        }
    if which == "haproxy":
        return haproxy_stats(lab)
    return {"upstream errors logged": float(nginx_upstream_errors(lab))}


def bench(
    lab: Lab, args: argparse.Namespace, place: Placement, podnet_missing: str | None
) -> dict[str, list[dict[str, Any]]]:
    targets = [p for p in args.proxies if p != "podnet" or podnet_missing is None]
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    for i in range(args.rounds):
        for which in targets:
            r = one_run(lab, which, args, place)
            runs[which].append(r)
            log(
                f"round {i + 1} {which:8}: sent {r['sent']}, failed {r['failed']} "
                f"({r['failed_after_kill']} after the kill at {r['kill_at_s']:.2f}s) "
                f"{r['kinds']}, {r['rps']:.0f} req/s" + f"; its own account: {r['proxy_account']}"
            )
    return runs


def render(s: dict[str, Any]) -> str:
    lines = [
        f"requests lost when 1 of {BACKENDS} whoami backends is SIGKILLed at ~{s['kill_at']}s "
        f"of a {s['duration']}s load (GET {PATH}, {s['connections']} keep-alive connections, "
        f"closed loop); {s['rounds']} round(s)",
        f"CPUs: {s['placement']}",
        "",
    ]
    head = (
        f"{'proxy':<8} {'round':>5} {'sent':>8} {'failed':>7} {'after kill':>10} "
        f"{'last fail +s':>12} {'req/s':>7}  kinds"
    )
    lines += [head, "-" * len(head)]
    for which, runs in s["results"].items():
        for i, r in enumerate(runs):
            last = r["last_failure_after_kill_s"]
            lines.append(
                f"{which:<8} {i + 1:>5} {r['sent']:>8} {r['failed']:>7} "
                f"{r['failed_after_kill']:>10} {'-' if last is None else f'{last:.3f}':>12} "
                f"{r['rps']:>7.0f}  {r['kinds'] or '-'}"
            )
    lines.append("")
    for which, runs in s["results"].items():
        for i, r in enumerate(runs):
            if r["bursts_after_kill"]:
                text = ", ".join(f"+{a:.2f}-{b:.2f}s: {n}" for a, b, n in r["bursts_after_kill"])
                lines.append(f"{which} round {i + 1}: failures after the kill, by burst: {text}")
    lines.append("")
    for which, total in s["failed_total"].items():
        lines.append(f"{which}: {total} failed of {s['sent_total'][which]} sent in all rounds")
    if "podnet" in s["results"]:
        met = s["failed_total"]["podnet"] == 0
        lines.append(f"goal: podnet loses 0 GETs: {'met' if met else 'MISSED'}")
    elif s["podnet_missing"]:
        lines.append(f"podnet: not measured ({s['podnet_missing']})")
    lines.append("")
    lines.append("each proxy's own account of the last run (podnet: /metrics; HAProxy: show stat")
    lines.append("econ/eresp = connect/response errors, wretr/wredis = retries/redispatches;")
    lines.append("nginx: [error] lines about an upstream in its error log)")
    for which, runs in s["results"].items():
        lines.append(f"  {which}: {runs[-1]['proxy_account']}")
    problems = s["leftovers"]
    lines.append("left behind: " + ("; ".join(problems) if problems else "nothing (checked)"))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="runs per proxy (default 1)")
    parser.add_argument("--duration", type=float, default=20, help="seconds of load (20)")
    parser.add_argument("--kill-at", type=float, default=5, help="kill after seconds (5)")
    parser.add_argument("--connections", type=int, default=64, help="client connections (64)")
    add_common_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 10 or not 2 <= args.duration <= 120:
        parser.error("--rounds 1-10, --duration 2-120")
    if not 0 < args.kill_at < args.duration or not 1 <= args.connections <= 1024:
        parser.error("--kill-at inside the duration, --connections 1-1024")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:
        return client_main(argv[1:])
    args = parse_args(argv)
    place = Placement.choose(not args.no_pin, float_backends=False)
    results, problems, podnet_missing = run_in_lab("bench/proxy_failover.py", args, place, bench)
    summary = {
        "rounds": args.rounds,
        "duration": args.duration,
        "kill_at": args.kill_at,
        "connections": args.connections,
        "placement": place.describe() + (f"; all at nice {args.nice}" if args.nice else ""),
        "podnet_missing": podnet_missing,
        "failed_total": {w: sum(r["failed"] for r in rs) for w, rs in results.items()},
        "sent_total": {w: sum(r["sent"] for r in rs) for w, rs in results.items()},
        "median_rps": {w: statistics.median(r["rps"] for r in rs) for w, rs in results.items()},
        "results": results,
        "leftovers": problems,
    }
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
