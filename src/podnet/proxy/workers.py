"""Running the proxy: one worker in this process, or N workers under a supervisor.

A worker (:func:`run_worker`) is one uvloop event loop serving every
connection; it gets snapshots from a file or the agent (:mod:`~podnet.proxy.feed`).
Signals: SIGTERM/SIGINT drain (stop accepting, finish in-flight requests
within :data:`~podnet.proxy.engine.DRAIN_GRACE`, exit 0); SIGHUP reloads the
snapshot file.

With ``workers > 1`` the parent (:func:`supervise`) binds nothing it serves
on: it reserves the port (a bound, non-listening SO_REUSEPORT socket, which
also turns port 0 into a real port the children share), starts N children
that each listen with SO_REUSEPORT -- the kernel spreads connections over
them -- waits until each reports ready on a pipe, forwards SIGTERM/SIGHUP, and
restarts a child that dies on its own (at most once a second). It exits 0
when every child exited after SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final

from podnet.errors import InvalidInput
from podnet.proxy.accesslog import AccessLog
from podnet.proxy.admin import serve_admin
from podnet.proxy.engine import Engine
from podnet.proxy.feed import AgentFeed, SnapshotFile
from podnet.proxy.metrics import merge_expositions

__all__ = ["ProxyOptions", "parse_address", "run_worker", "supervise"]

_READY_TIMEOUT: Final = 20.0


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """What ``podnet proxy run`` was asked to do."""

    name: str
    listen: tuple[str, int]
    #: More addresses to serve, best effort (a sidecar's [::1] beside 127.0.0.1:
    #: a pod whose loopback has no IPv6 still gets its IPv4 interception).
    also_listen: tuple[tuple[str, int], ...] = ()
    snapshot: Path | None = None
    agent_socket: Path | None = None
    admin: tuple[str, int] | None = None
    workers: int = 1
    access_log: str | None = None
    sidecar: bool = False
    reuse_port: bool = False
    ready_fd: int | None = None


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[V6]:PORT`` / ``:PORT`` (all addresses) to (host, port).

    Raises:
        InvalidInput: not of that form, or the port is out of range.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput(f"address {text!r} is not HOST:PORT", hint="e.g. 127.0.0.1:8080")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- one worker --------------------------------------------------------------------------


#: How long a worker fed by the agent waits for its first snapshot before it
#: listens anyway (it then answers 404 until routes arrive).
FIRST_SNAPSHOT_WAIT = 10.0


async def run_worker(options: ProxyOptions) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status."""
    loop = asyncio.get_running_loop()
    log = AccessLog(options.access_log) if options.access_log else None
    engine = Engine(access_log=log, sidecar=options.sidecar)
    feed_task: asyncio.Task[None] | None = None
    snapshot_file: SnapshotFile | None = None
    if options.snapshot is not None:
        snapshot_file = SnapshotFile(options.snapshot, engine.swap)
        snapshot_file.load()
        feed_task = loop.create_task(snapshot_file.follow())
    elif options.agent_socket is not None:
        feed = AgentFeed(options.agent_socket, options.name, engine.swap)
        feed_task = loop.create_task(feed.follow())
        # Listen only once routes are known: an edge proxy answering 404 for its
        # first moments would fail requests that a brief refusal lets clients retry.
        deadline = loop.time() + FIRST_SNAPSHOT_WAIT
        while engine.version < 0 and loop.time() < deadline and not feed_task.done():
            await asyncio.sleep(0.01)
    reuse = options.reuse_port or options.workers > 1
    bound = await engine.listen(*options.listen, reuse_port=reuse)
    for host, port in options.also_listen:
        try:
            bound += await engine.listen(host, port, reuse_port=reuse)
        except OSError as exc:
            print(f"podnet proxy {options.name}: not serving {_format(host, port)}: {exc}",
                  file=sys.stderr, flush=True)  # fmt: skip
    admin_server = None
    if options.admin is not None:
        admin_server = await serve_admin(engine, *options.admin, reuse_port=reuse)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if snapshot_file is not None:
        loop.add_signal_handler(signal.SIGHUP, snapshot_file.reload)
    _report_ready(options, bound, admin_server)
    try:
        await stop.wait()
    finally:
        if feed_task is not None:
            feed_task.cancel()
        if admin_server is not None:
            admin_server.close()
        await engine.drain()
        if log is not None:
            log.close()
    return 0


def _report_ready(options: ProxyOptions, bound: list[str], admin: asyncio.Server | None) -> None:
    if options.ready_fd is not None:  # "r" and the worker's admin port, if any
        port = admin.sockets[0].getsockname()[1] if admin is not None else ""
        os.write(options.ready_fd, f"r{port}".encode())
        os.close(options.ready_fd)
        return
    line = f"podnet proxy {options.name} listening on {', '.join(bound)}"
    if admin is not None:
        name = admin.sockets[0].getsockname()
        line += f" admin {_format(name[0], name[1])}"
    print(f"{line} pid {os.getpid()}", flush=True)


# -- N workers -----------------------------------------------------------------------------


def _reserve(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket: fixes the port the workers share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker_argv(options: ProxyOptions, ready_fd: int) -> list[str]:
    argv = [sys.executable, "-m", "podnet.cli.proxy", "--name", options.name]
    argv += ["--listen", _format(*options.listen), "--reuse-port", "--ready-fd", str(ready_fd)]
    for extra in options.also_listen:
        argv += ["--also-listen", _format(*extra)]
    if options.snapshot is not None:
        argv += ["--snapshot", str(options.snapshot)]
    if options.agent_socket is not None:
        argv += ["--agent-socket", str(options.agent_socket)]
    if options.admin is not None:  # each its own, on loopback: the parent sums them
        argv += ["--admin", "127.0.0.1:0"]
    if options.access_log is not None:
        argv += ["--access-log", options.access_log]
    if options.sidecar:
        argv.append("--sidecar")
    return argv


class _Supervisor:
    def __init__(self, options: ProxyOptions) -> None:
        self.options = options
        self.children: list[subprocess.Popen[bytes] | None] = [None] * options.workers
        self.admin_ports: list[int | None] = [None] * options.workers
        self._pipes: dict[int, int] = {}  # readiness pipe -> worker index
        self.stopping = False

    def spawn(self, index: int) -> int:
        """Start worker ``index``; return the read end of its readiness pipe."""
        read, write = os.pipe()
        argv = _worker_argv(self.options, write)
        self.children[index] = subprocess.Popen(argv, pass_fds=(write,))
        os.close(write)
        self._pipes[read] = index
        return read

    def wait_ready(self, pipes: list[int]) -> bool:
        deadline = time.monotonic() + _READY_TIMEOUT
        pending, failed = set(pipes), False
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(list(pending), [], [], 0.2)
            for fd in ready:
                said = os.read(fd, 16)
                failed = failed or not said  # EOF: the worker died before ready
                if said[1:].isdigit():
                    self.admin_ports[self._pipes[fd]] = int(said[1:])
                pending.discard(fd)
                self._pipes.pop(fd, None)
        for fd in pipes:
            os.close(fd)
        return not pending and not failed

    def signal_all(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        for child in self.children:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    def watch(self) -> int:
        last_restart = 0.0
        while True:
            alive = [c for c in self.children if c is not None and c.poll() is None]
            if self.stopping and not alive:
                return 0
            for index, child in enumerate(self.children):
                if self.stopping or child is None or child.poll() is None:
                    continue
                if time.monotonic() - last_restart < 1.0:
                    continue
                last_restart = time.monotonic()
                print(
                    f"podnet proxy: worker {child.pid} exited ({child.returncode}); restarting",
                    file=sys.stderr,
                    flush=True,
                )
                self.wait_ready([self.spawn(index)])
            time.sleep(0.1)


class _AdminSum(ThreadingHTTPServer):
    """The admin port of ``--workers N``: /metrics summed over every worker's
    own (each serves its counters on an ephemeral loopback port), /healthz
    200 while every worker runs. One port, one coherent view: with the port
    shared by SO_REUSEPORT instead, each scrape would see one random worker."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], supervisor: _Supervisor) -> None:
        self.supervisor = supervisor
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _AdminHandler)

    def worker_metrics(self) -> list[str]:
        texts = []
        for port in self.supervisor.admin_ports:
            if port is None:
                continue
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    texts.append(answer.read().decode())
        return texts


class _AdminHandler(BaseHTTPRequestHandler):
    server: _AdminSum

    def do_GET(self) -> None:
        if self.path == "/metrics":
            body = merge_expositions(self.server.worker_metrics()).encode()
            self._answer(200, body, "text/plain; version=0.0.4")
        elif self.path == "/healthz":
            children = self.server.supervisor.children
            alive = all(c is not None and c.poll() is None for c in children)
            self._answer(200 if alive else 503, b"ok\n" if alive else b"worker down\n")
        else:
            self._answer(404, b"not found\n")

    def _answer(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the access log is the workers'."""


def supervise(options: ProxyOptions) -> int:
    """Run ``options.workers`` worker processes sharing the port; return the exit status."""
    if options.workers < 1:
        raise InvalidInput(f"workers {options.workers} must be at least 1")
    reserved = [_reserve(*options.listen)]
    listen = (options.listen[0], reserved[0].getsockname()[1])
    options = replace(options, listen=listen)
    supervisor = _Supervisor(options)
    admin = None
    if options.admin is not None:
        admin_server = _AdminSum(options.admin, supervisor)
        host, port = admin_server.server_address[:2]
        admin = (str(host), int(port))
        threading.Thread(target=admin_server.serve_forever, daemon=True).start()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda n, _f: supervisor.signal_all(n))
    try:
        pipes = [supervisor.spawn(i) for i in range(options.workers)]
        if not supervisor.wait_ready(pipes):
            print("podnet proxy: workers did not start", file=sys.stderr, flush=True)
            supervisor.signal_all(signal.SIGTERM)
            supervisor.watch()
            return 1
        line = f"podnet proxy {options.name} listening on {_format(*listen)}"
        if admin is not None:
            line += f" admin {_format(*admin)}"
        print(f"{line} pid {os.getpid()} workers {options.workers}", flush=True)
        return supervisor.watch()
    finally:
        for sock in reserved:
            with contextlib.suppress(OSError):
                sock.close()
