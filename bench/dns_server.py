"""Benchmark: UDP queries per second answered by podnet's DNS server, against dnsmasq.

Both serve the same names on 127.0.0.1, each in its own process, and one
client (this process) asks them in turn:

* podnet: ``DnsServer`` on uvloop, zone from ``build_zone`` with N pods
  (``pod-<i>.podnet.``, one IPv4 and one IPv6 address each), as the agent
  runs it; and the same with its reply cache off (``cache_size=0``: every
  query parsed, answered and rendered by dnspython);
* anchor: dnsmasq (``dnsmasq-base``), ``--no-resolv --no-hosts
  --addn-hosts=<file>`` with the same names and addresses, ``--local=/podnet/``
  so unknown names stay local, on a high port; stopped by its pid.

The client sends a window of A queries (the names in turn, each ID new),
then reads as many replies; a reply counts when it is a NOERROR response
with an answer. Before timing, every server answers every name once (and the
answers are checked to be the same addresses). Runs rotate between servers so
that load from elsewhere on the machine hits them alike; each server's
result is the median of its runs. The client is Python too, so a server
faster than it reads as the client's rate: dnsmasq's number is a floor.

Usage: ``python bench/dns.py [--seconds S] [--runs N] [--names N] [--json]``
(default 0.8 s per run, 3 runs, 200 names: about 10 s). Not a test: it
prints numbers and asserts nothing about them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query

LOOPBACK = "127.0.0.1"
WINDOW = 32
READ_TIMEOUT = 0.5
START_TIMEOUT = 20.0


def addresses(index: int) -> tuple[str, str]:
    """The IPv4 and IPv6 address of pod ``index``."""
    v4 = ipaddress.ip_address("10.89.0.0") + 10 + index
    v6 = ipaddress.ip_address("fd00:89::") + 10 + index
    return str(v4), str(v6)


def names(count: int) -> list[str]:
    return [f"pod-{i}.podnet." for i in range(count)]


# --- the podnet server, in a child process ------------------------------------------


def serve_podnet(count: int, cache_size: int) -> None:
    """Run podnet's DNS server for ``count`` pods; print its port; stop on SIGTERM."""
    import uvloop

    from podnet.dns import DnsServer, Limits, build_zone
    from podnet.model.pod import Interface, PodSpec

    def pod(index: int) -> PodSpec:
        v4, v6 = addresses(index)
        ips = (ipaddress.ip_interface(f"{v4}/16"), ipaddress.ip_interface(f"{v6}/64"))
        return PodSpec(f"pod-{index}", interfaces=(Interface("n1", "eth0", "x", ips),))

    zone = build_zone("podnet.", [pod(i) for i in range(count)], [])

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        limits = Limits(cache_size=cache_size)
        async with DnsServer(lambda: zone, [(LOOPBACK, 0)], limits=limits) as server:
            print(server.addresses[0][1], flush=True)
            await stop.wait()

    uvloop.run(main())


def start_podnet(count: int, cache_size: int) -> tuple[subprocess.Popen[str], int]:
    argv = [sys.executable, __file__, "--serve-podnet", str(count), str(cache_size)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        stop(process)
        raise RuntimeError("podnet's DNS server did not start")
    return process, int(line)


# --- the anchor --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def start_dnsmasq(count: int, hosts: Path) -> tuple[subprocess.Popen[str], int]:
    lines = [f"{a} pod-{i}.podnet" for i in range(count) for a in addresses(i)]
    hosts.write_text("\n".join(lines) + "\n")
    port = free_port()
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        f"--addn-hosts={hosts}",
        "--local=/podnet/",
        f"--listen-address={LOOPBACK}",
        "--bind-interfaces",
        f"--port={port}",
        "--local-ttl=5",
        "--pid-file=",
        "--user=root",
    ]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    return process, port


def wait_answering(port: int, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(dns.exception.Timeout, OSError):
            dns.query.udp(dns.message.make_query(name, "A"), LOOPBACK, port=port, timeout=0.5)
            return
        time.sleep(0.1)
    raise RuntimeError(f"no DNS server answered on port {port}")


def stop(process: subprocess.Popen[str]) -> None:
    """Stop a server we started, by its pid."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the client --------------------------------------------------------------------


def queries(count: int) -> list[bytes]:
    return [dns.message.make_query(n, "A").to_wire() for n in names(count)]


def check_answers(port: int, count: int) -> None:
    """Every name answers its pod's IPv4 address (and warms any cache)."""
    for index, name in enumerate(names(count)):
        reply = dns.query.udp(dns.message.make_query(name, "A"), LOOPBACK, port=port, timeout=2)
        got = {rd.to_text() for rrset in reply.answer for rd in rrset}
        if got != {addresses(index)[0]}:
            raise RuntimeError(f"port {port} answered {got} for {name}")


def _answered(reply: bytes) -> bool:
    """A NOERROR response with at least one answer record."""
    return len(reply) >= 12 and reply[2] & 0x80 != 0 and reply[3] & 0x0F == 0 and reply[7] > 0


def measure(port: int, wires: list[bytes], seconds: float) -> float:
    """Answered queries per second over ``seconds``, ``WINDOW`` queries in flight."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((LOOPBACK, port))
        sock.settimeout(READ_TIMEOUT)
        answered, ident, turn = 0, 0, 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(WINDOW):
                ident = (ident + 1) & 0xFFFF
                sock.send(ident.to_bytes(2, "big") + wires[turn][2:])
                turn = (turn + 1) % len(wires)
            answered += _receive(sock, WINDOW)
        return answered / (time.perf_counter() - start)


def _receive(sock: socket.socket, count: int) -> int:
    answered = 0
    for _ in range(count):
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            break  # lost: the rest of this window is not coming
        answered += _answered(reply)
    return answered


# --- the run -----------------------------------------------------------------------


@contextlib.contextmanager
def servers(count: int) -> Iterator[dict[str, int]]:
    """Start every server; yield name -> port; stop them all by pid."""
    started: list[subprocess.Popen[str]] = []
    ports: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="podnet-bench-dns-") as tmp:
        try:
            for label, cache in (("podnet", 4096), ("podnet, no cache", 0)):
                process, ports[label] = start_podnet(count, cache)
                started.append(process)
            if shutil.which("dnsmasq"):
                process, ports["dnsmasq"] = start_dnsmasq(count, Path(tmp) / "hosts")
                started.append(process)
            for port in ports.values():
                wait_answering(port, names(1)[0])
                check_answers(port, count)
            yield ports
        finally:
            for process in started:
                stop(process)


def run(ports: dict[str, int], count: int, seconds: float, runs: int) -> dict[str, list[float]]:
    wires = queries(count)
    rates: dict[str, list[float]] = {label: [] for label in ports}
    for round_ in range(runs):
        labels = list(ports)
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            rates[label].append(measure(ports[label], wires, seconds))
    return rates


def report(rates: dict[str, list[float]], emit: Callable[[str], None]) -> dict[str, object]:
    medians = {label: statistics.median(r) for label, r in rates.items()}
    emit(f"{'server':18s} {'median q/s':>11s}   runs")
    for label, rate in medians.items():
        runs = " ".join(f"{r:,.0f}" for r in rates[label])
        emit(f"{label:18s} {rate:11,.0f}   {runs}")
    anchor = medians.get("dnsmasq")
    if anchor is None:
        emit("anchor: dnsmasq is not installed (apt-get install dnsmasq-base); no ratio")
        return {"rates": rates, "medians": medians}
    ratios = {label: anchor / medians[label] for label in medians if label != "dnsmasq"}
    for label, ratio in ratios.items():
        emit(f"ratio dnsmasq / {label}: {ratio:.2f}x (1.0x would be parity)")
    return {"rates": rates, "medians": medians, "ratios": ratios}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-podnet":
        serve_podnet(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.8, help="time per run (0.8)")
    parser.add_argument("--runs", type=int, default=3, help="runs per server (3)")
    parser.add_argument("--names", type=int, default=200, help="pod names served (200)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    with servers(args.names) as ports:
        rates = run(ports, args.names, args.seconds, args.runs)
    lines: list[str] = []
    result = report(rates, lines.append)
    print(json.dumps(result, indent=2) if args.json else "\n".join(lines))


if __name__ == "__main__":
    main()
