"""``podnet agent``: the one long-running process per node.

It owns the store, converges the kernel at start (so a restart after SIGKILL
heals), serves the API on a unix socket, watches pod processes every second
and reconciles everything every ``reconcile_interval`` seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from podnet import __version__
from podnet.agent.assemble import assemble
from podnet.agent.routes import RouteOps
from podnet.agent.runtime import AsyncRuntime
from podnet.api.http import ApiServer
from podnet.api.routes import build_router
from podnet.errors import Conflict, PodnetError
from podnet.settings import Settings

__all__ = ["run_agent"]

log = logging.getLogger("podnet.agent")


def _lock(settings: Settings) -> int:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.run_dir / "agent.pid", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode().strip()
        raise Conflict(
            f"another podnet agent (pid {pid}) already uses {settings.run_dir}",
            hint="stop it first, or give this one its own --run-dir/--state-dir",
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Agent:
    """The agent's parts and its background loops."""

    def __init__(self, settings: Settings) -> None:
        node = assemble(settings)
        self.settings = settings
        self.store = node.store
        self.reconciler = node.reconciler
        self.service = node.service
        self.routes = RouteOps(node.service)  # one: it keeps proxy snapshot versions
        self.stopping = threading.Event()

    def info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "settings": {k: str(v) for k, v in self.settings.to_env().items()},
        }

    def converge(self) -> None:
        started = time.monotonic()
        try:
            steps = self.reconciler.reconcile()
        except PodnetError as exc:
            log.error("reconcile failed: %s", exc)
            return
        log.info("converged in %.3fs (%d steps)", time.monotonic() - started, len(steps))

    def loop(self) -> None:
        """On every store change (at most every 0.2 s without one): follow
        services, pods and health into the kernel's load balancer; every second:
        pod processes; every ``reconcile_interval``: everything."""
        last_full = last_processes = time.monotonic()
        seen = self.store.revision()
        while not self.stopping.wait(0.005):  # a floor, so our own writes cannot spin us
            with contextlib.suppress(PodnetError):  # a closing store: the loop ends next
                self.store.watch("/", seen, timeout=0.2)  # wakes at once on a write
            if self.stopping.is_set():
                break
            seen = self.store.revision()
            try:
                now = time.monotonic()
                if now - last_full >= self.settings.reconcile_interval:
                    self.converge()
                    last_full = now
                    continue
                with self.reconciler.lock:
                    if now - last_processes >= 1.0:
                        self.reconciler.supervisor.sync(self.service.repo.pods())
                        try:  # proxy processes and sidecar tables; never holds up services
                            self.routes.sync()
                        except Exception:
                            log.error("proxies: %s", traceback.format_exc())
                        last_processes = now
                    if self.reconciler.services_stale():  # e.g. health changed
                        self.reconciler.sync_services()
            except Exception:
                log.error("background loop: %s", traceback.format_exc())


def run_agent(settings: Settings) -> int:
    """Run the agent in the foreground until SIGTERM/SIGINT. Returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    lock_fd = _lock(settings)
    agent = Agent(settings)
    agent.converge()
    server = ApiServer(
        settings.socket_path,
        build_router(agent.service, agent.info(), agent.routes),
        on_error=lambda exc: log.error("API handler: %s", "".join(traceback.format_exception(exc))),
    )
    server.start()
    log.info("podnet agent %s serving on %s", __version__, settings.socket_path)
    # -- asyncio runtime: DNS on the gateways, health checks (podnet.agent.runtime) --
    runtime = AsyncRuntime(settings, agent.store, lock=agent.reconciler.lock)
    runtime.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    background = threading.Thread(target=agent.loop, daemon=True)
    background.start()
    agent.stopping.wait()
    server.stop()
    runtime.stop()  # asyncio runtime: before the store closes
    with agent.reconciler.lock:  # let a reconcile in flight finish
        agent.store.close()
    os.close(lock_fd)
    with contextlib.suppress(FileNotFoundError):
        Path(settings.run_dir / "agent.pid").unlink()
    log.info("podnet agent stopped; pods keep running and are adopted at next start")
    sys.stdout.flush()
    return 0
