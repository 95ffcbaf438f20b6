"""Supervision of L7 proxy processes (edge proxies and pod sidecars).

Like pod processes (:mod:`podnet.controller.processes`), a proxy runs in its
own session, outlives the agent, and is adopted by a new agent by pid *and*
start time. Its record lives under ``/proxy-status/<name>`` (never
``/status/``, which is the pod supervisor's): the :class:`ProcessStatus`, the
argv it was started with (a different wanted argv restarts it), and the netns
where a sidecar table was put. That record is the ownership record: a proxy
removed while no agent ran still has its process stopped and its sidecar table
deleted by the next :meth:`ProxySupervisor.sync`.

A proxy that dies is restarted with the pods' backoff (0.1 s doubling, capped
at 10 s). Stopping sends SIGTERM to the process group (the proxy finishes
in-flight requests, bounded at 10 s) and SIGKILL after ``timeout``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from podnet.controller.processes import process_start_ticks, spawn_logged
from podnet.controller.sidecar import SidecarRules, netns_inode
from podnet.controller.state import Keys, ProcessStatus
from podnet.model.network import IPNetwork
from podnet.store.base import Store

__all__ = ["ProxyLaunch", "ProxySupervisor"]

_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


@dataclass(frozen=True, slots=True)
class ProxyLaunch:
    """How one proxy runs: its argv, and for a sidecar the pod's netns and port.

    ``intercept``: the sidecar may take the pod's traffic now (it has its
    snapshot). Until then its table is not put in place, so the pod's
    connections never land on a proxy that is not listening or knows no route;
    once put in place it stays while the proxy runs.
    """

    name: str
    argv: tuple[str, ...]
    netns: str | None = None
    listen_port: int = 15001
    intercept: bool = True


class ProxySupervisor:
    """Starts, stops, adopts and restarts proxy processes; keeps sidecar tables."""

    def __init__(
        self,
        store: Store,
        *,
        log_dir: Path,
        env: Mapping[str, str],
        sidecars: SidecarRules | None = None,
    ) -> None:
        self._store = store
        self._log_dir = log_dir
        self._env = dict(env)
        self.sidecars = sidecars or SidecarRules()
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self._log_dir / f"proxy-{name}.log"

    def record(self, name: str) -> dict[str, Any]:
        entry = self._store.get(Keys.proxy_status(name))
        return entry.value if entry else {}

    def records(self) -> dict[str, dict[str, Any]]:
        prefix = Keys.PROXY_STATUS
        return {e.key.removeprefix(prefix): e.value for e in self._store.list(prefix)}

    def status(self, name: str) -> ProcessStatus:
        return ProcessStatus.from_dict(self.record(name))

    @staticmethod
    def alive(status: ProcessStatus) -> bool:
        if status.state != "running" or status.pid <= 0:
            return False
        return process_start_ticks(status.pid) == status.start_ticks

    def _save(self, name: str, status: ProcessStatus, **extra: Any) -> None:
        value = {**self.record(name), **status.to_dict(), **extra}
        self._store.put(Keys.proxy_status(name), value)

    # -- convergence -----------------------------------------------------------

    def sync(self, wanted: Mapping[str, ProxyLaunch], pools: Sequence[IPNetwork]) -> None:
        """Remove proxies no longer wanted, then start or keep the wanted ones.

        One proxy failing (its pod's netns refusing the table) does not hold
        up the others; the first failure is raised at the end.
        """
        self.remove([name for name in self.records() if name not in wanted])
        failure: Exception | None = None
        for launch in wanted.values():
            try:
                self._ensure(launch, pools)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _ensure(self, launch: ProxyLaunch, pools: Sequence[IPNetwork]) -> None:
        record = self.record(launch.name)
        if launch.netns is not None:
            if record.get("netns") != launch.netns:
                self._save(launch.name, self.status(launch.name), netns=launch.netns)
            if launch.intercept:
                self.sidecars.ensure(launch.netns, launch.name, launch.listen_port, pools)
        status = ProcessStatus.from_dict(record)
        if self.alive(status):
            child = self._children.get(launch.name)
            if child is not None:
                child.poll()
            if tuple(record.get("argv", ())) == launch.argv and self._same_netns(launch, record):
                return
            self.stop([launch.name])  # its spec or its pod's netns changed: start it again
            status = self.status(launch.name)
        elif status.state == "running":  # it died while nobody watched
            status = self._finished(launch.name, status)
        if status.state in ("created", "stopped") or self._backoff_over(status):
            self.start(launch, restarts=status.restarts + (status.state == "exited"))

    @staticmethod
    def _same_netns(launch: ProxyLaunch, record: Mapping[str, Any]) -> bool:
        """A sidecar still runs in its pod's netns (a replaced pod has a new one)."""
        return launch.netns is None or record.get("netns_inode") == netns_inode(launch.netns)

    @staticmethod
    def _backoff_over(status: ProcessStatus) -> bool:
        if status.state != "exited":
            return False
        backoff: float = min(0.1 * (1 << min(status.restarts, 10)), 10.0)
        return time.time() - status.finished_at >= backoff

    def _finished(self, name: str, status: ProcessStatus) -> ProcessStatus:
        child = self._children.pop(name, None)
        code: int | None = None
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = child.wait(timeout=1)
        done = replace(status, state="exited", exit_code=code, finished_at=time.time())
        self._save(name, done)
        return done

    def start(self, launch: ProxyLaunch, *, restarts: int = 0) -> ProcessStatus:
        """Start the proxy's process in its own session, output to its log."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
        env.update(self._env)
        env["PYTHONUNBUFFERED"] = "1"
        child, status = spawn_logged(launch.argv, self.log_path(launch.name), env, restarts)
        self._children[launch.name] = child
        inode = None if launch.netns is None else netns_inode(launch.netns)
        self._save(launch.name, status, argv=list(launch.argv), netns_inode=inode)
        return status

    # -- stopping --------------------------------------------------------------

    def stop(self, names: Iterable[str], *, timeout: float = 12.0) -> None:
        """SIGTERM the proxies' process groups together, SIGKILL after ``timeout``."""
        statuses = {name: self.status(name) for name in names}
        running = {n: st for n, st in statuses.items() if self.alive(st)}
        for st in running.values():
            _signal_group(st.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while running and time.monotonic() < deadline:
            for name in list(running):
                child = self._children.get(name)
                if child is not None:
                    child.poll()
                if not self.alive(running[name]):
                    del running[name]
            if running:
                time.sleep(0.02)
        for st in running.values():
            _signal_group(st.pid, signal.SIGKILL)
        for name, st in statuses.items():
            child = self._children.pop(name, None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=2)
            if st.state != "created":
                self._save(name, replace(st, state="stopped", finished_at=time.time()))

    def remove(self, names: Iterable[str]) -> None:
        """Stop proxies, delete their sidecar tables, records and logs. Idempotent;
        keeps going past a failing table removal and raises the first error last."""
        names = list(names)
        self.stop(names)
        failure: Exception | None = None
        for name in names:
            netns = self.record(name).get("netns")
            try:
                if netns:
                    self.sidecars.remove(str(netns))
            except Exception as exc:  # best effort on delete; report after the rest
                failure = failure or exc
                continue
            self._store.delete(Keys.proxy_status(name))
            self.log_path(name).unlink(missing_ok=True)
        if failure is not None:
            raise failure

    def remove_all(self) -> None:
        """Every proxy this store records (``reset``)."""
        self.remove(list(self.records()))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the proxy leads its own session: pgid == its pid
