"""Supervision of the processes podnet runs inside pods.

Each pod command runs under a tiny shell shim, in its own session::

    sh -c 'f=$1; shift; "$@"; echo $? > "$f"' shim EXIT_FILE ip netns exec NS CMD...

The shim outlives the agent: when the agent is killed, pod processes keep
running; a new agent adopts them by pid *and* start time (so a recycled pid is
never mistaken for the pod), and learns exit codes from the exit file even for
processes it did not start. Output goes to a log file per pod in the state
directory. Stopping signals the whole process group (shim and command) by id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from podnet.controller.state import ProcessStatus, Repository
from podnet.model.names import netns_name
from podnet.model.pod import PodSpec

__all__ = ["Supervisor", "process_start_ticks", "spawn_logged"]

_SHIM = 'f=$1; shift; "$@"; echo $? > "$f"'
_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "TZ")


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished
        return None
    return int(fields[19])


def spawn_logged(
    argv: Sequence[str], log_path: Path, env: Mapping[str, str], restarts: int
) -> tuple[subprocess.Popen[bytes], ProcessStatus]:
    """Start ``argv`` in a session of its own, output appended to ``log_path``;
    the child and its "running" status (pid + start time, for adoption)."""
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env),
        )
    status = ProcessStatus(
        state="running",
        pid=child.pid,
        start_ticks=process_start_ticks(child.pid) or 0,
        started_at=time.time(),
        restarts=restarts,
    )
    return child, status


class Supervisor:
    """Starts, stops, adopts and restarts pod processes; records their status."""

    def __init__(self, repo: Repository, *, netns_prefix: str, log_dir: Path, run_dir: Path):
        self._repo = repo
        self._prefix = netns_prefix
        self._log_dir = log_dir
        self._exit_dir = run_dir / "exit"
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, pod: str) -> Path:
        return self._log_dir / f"{pod}.log"

    def _exit_path(self, pod: str) -> Path:
        return self._exit_dir / pod

    def alive(self, status: ProcessStatus) -> bool:
        if status.state != "running" or status.pid <= 0:
            return False
        return process_start_ticks(status.pid) == status.start_ticks

    def sync_stopped(self, pods: Mapping[str, PodSpec]) -> None:
        """Stop processes of pods that are gone, stopped, or have no command."""
        unwanted = [
            name
            for name, status in self._repo.statuses().items()
            if self._unwanted(pods.get(name)) and self.alive(status)
        ]
        self.stop(unwanted)

    @staticmethod
    def _unwanted(pod: PodSpec | None) -> bool:
        return pod is None or not pod.running or not pod.command

    def sync(self, pods: Mapping[str, PodSpec]) -> None:
        """Make processes match: stop the unwanted, start or restart the wanted."""
        self.sync_stopped(pods)
        for pod in pods.values():
            if pod.running and pod.command:
                self._ensure(pod)

    def _ensure(self, pod: PodSpec) -> None:
        status = self._repo.status(pod.name)
        if self.alive(status):
            self._reap(pod.name)
            return
        if status.state == "running":  # it died while nobody watched
            status = self._finished(pod.name, status)
        if status.state == "created" or self._should_restart(pod, status):
            self.start(pod, restarts=status.restarts + (status.state != "created"))

    def _should_restart(self, pod: PodSpec, status: ProcessStatus) -> bool:
        if status.state != "exited" or pod.restart == "no":
            return False
        if pod.restart == "on-failure" and status.exit_code == 0:
            return False
        backoff: float = min(0.1 * (1 << min(status.restarts, 10)), 10.0)
        return time.time() - status.finished_at >= backoff

    def _reap(self, pod: str) -> None:
        child = self._children.get(pod)
        if child is not None:
            child.poll()

    def _finished(self, pod: str, status: ProcessStatus) -> ProcessStatus:
        child = self._children.pop(pod, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
        code: int | None = None
        with contextlib.suppress(OSError, ValueError):
            code = int(self._exit_path(pod).read_text().strip())
        done = replace(status, state="exited", exit_code=code, finished_at=time.time())
        self._repo.set_status(pod, done)
        return done

    def start(self, pod: PodSpec, *, restarts: int = 0) -> ProcessStatus:
        """Start the pod's command in its netns under the shim."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._exit_dir.mkdir(parents=True, exist_ok=True)
        exit_file = self._exit_path(pod.name)
        exit_file.unlink(missing_ok=True)
        ns = netns_name(pod.name, self._prefix)
        argv = ["/bin/sh", "-c", _SHIM, "podnet-shim", str(exit_file)]
        argv += ["ip", "netns", "exec", ns, *pod.command]
        child, status = spawn_logged(argv, self.log_path(pod.name), self._env(pod), restarts)
        self._children[pod.name] = child
        self._repo.set_status(pod.name, status)
        return status

    def _env(self, pod: PodSpec) -> dict[str, str]:
        env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + ":" + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        env["PODNET_POD"] = pod.name
        env["PYTHONUNBUFFERED"] = "1"
        env.update(pod.env)
        return env

    def stop(self, pods: Iterable[str], *, timeout: float = 10.0) -> None:
        """SIGTERM the pods' process groups, SIGKILL what is left after ``timeout``.

        All are signalled first and waited for together, so stopping fifty
        pods takes as long as the slowest, not the sum. Idempotent.
        """
        statuses = {pod: self._repo.status(pod) for pod in pods}
        running = {pod: st for pod, st in statuses.items() if self.alive(st)}
        for status in running.values():
            self._signal_group(status.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while running and time.monotonic() < deadline:
            for pod in list(running):
                self._reap(pod)
                if not self.alive(running[pod]):
                    del running[pod]
            if running:
                time.sleep(0.01)
        for status in running.values():
            self._signal_group(status.pid, signal.SIGKILL)
        for pod, status in statuses.items():
            child = self._children.pop(pod, None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=2)
            if status.state != "created":
                stopped = replace(status, state="stopped", finished_at=time.time())
                self._repo.set_status(pod, stopped)

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # the shim leads its own session: pgid == its pid

    def forget(self, pods: Iterable[str]) -> None:
        """Stop removed pods and drop their exit files and logs."""
        names = list(pods)
        self.stop(names)
        for pod in names:
            self._exit_path(pod).unlink(missing_ok=True)
            self.log_path(pod).unlink(missing_ok=True)
