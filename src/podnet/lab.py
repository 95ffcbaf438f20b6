"""Throwaway test hosts: a "host" netns where podnet runs and an "external" one.

Tests, the demo and the benchmarks never touch the machine's own network: they
make a Lab, which creates two network namespaces joined by a veth pair, runs
podnet (agent and CLI) inside the host namespace with its own state and run
directories, and removes every namespace, process and file it made on close.

Addresses come from ranges set aside for testing and documentation:
198.18.0.0/15 (RFC 2544 benchmarking) and 2001:db8::/32 (RFC 3849).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from podnet.dns.resolv import sync_resolv_confs
from podnet.kernel import netns
from podnet.kernel.netlink import Netlink
from podnet.settings import Settings

__all__ = ["Lab", "LabCommandError", "leftovers", "parse_wrk"]

T = TypeVar("T")

HOST_IP = "198.18.0.1"
EXTERNAL_IP = "198.18.0.2"
HOST_IP6 = "2001:db8:18::1"
EXTERNAL_IP6 = "2001:db8:18::2"


class LabCommandError(subprocess.CalledProcessError):
    """A lab command failed; its message carries what the command printed."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(result.returncode, result.args, result.stdout, result.stderr)

    def __str__(self) -> str:
        command = " ".join(map(str, self.cmd[2:]))
        return f"{command} exited {self.returncode}:\n{self.stderr or self.stdout}"


class Lab:
    """Two namespaces and a private podnet. Use as a context manager."""

    def __init__(self, name: str | None = None, *, subnet_pool: str = "10.89.0.0/16") -> None:
        self.id = name or "pnl" + secrets.token_hex(3)
        self.host = f"{self.id}-host"
        self.external = f"{self.id}-ext"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"podnet-{self.id}-"))
        self.settings = Settings(
            state_dir=self.tmp / "state",
            run_dir=self.tmp / "run",
            netns_prefix=f"{self.id}-p-",
            nft_table="podnet",
            subnet_pool=subnet_pool,
        )
        self.host_ip, self.external_ip = HOST_IP, EXTERNAL_IP
        self.host_ip6, self.external_ip6 = HOST_IP6, EXTERNAL_IP6

    # -- life cycle ---------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        netns.create(self.host)
        netns.create(self.external)
        with Netlink(self.host) as nl:
            nl.add_veth("eth0", "ext0", peer_netns=self.external)
            nl.add_address("eth0", _iface(f"{HOST_IP}/24"))
            nl.add_address("eth0", _iface(f"{HOST_IP6}/64"))
            nl.set_up("eth0")
            nl.set_up("lo")
        with Netlink(self.external) as nl:
            nl.add_address("ext0", _iface(f"{EXTERNAL_IP}/24"))
            nl.add_address("ext0", _iface(f"{EXTERNAL_IP6}/64"))
            nl.set_up("ext0")
            nl.set_up("lo")

    def close(self) -> None:
        """Reset podnet, stop the agent, remove every namespace of this lab."""
        if (self.settings.run_dir / "agent.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.podnet("reset", check=False, timeout=60)
        self.stop_agent()
        for name in self.namespaces():
            self._kill_processes_in(name)
        for name in self.namespaces():
            netns.delete(name)
        with contextlib.suppress(OSError):  # pods' resolv.conf, when no agent removed them
            sync_resolv_confs(self.settings, {}, {})
        shutil.rmtree(self.tmp, ignore_errors=True)

    def namespaces(self) -> list[str]:
        """Every netns this lab made or that podnet made for it (its unique id)."""
        return sorted(n for n in netns.list_names(self.id + "-"))

    def pod_namespaces(self) -> list[str]:
        return netns.list_names(self.settings.netns_prefix)

    # -- podnet -------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env(), **(extra or {})}

    def run(
        self,
        argv: Sequence[str],
        *,
        where: str | None = None,
        check: bool = True,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a lab namespace (default: the host)."""
        ns = where or self.host
        result = subprocess.run(
            ["nsenter", f"--net={netns.path(ns)}", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env(env),
        )
        if check and result.returncode != 0:
            raise LabCommandError(result)
        return result

    def spawn(self, argv: Sequence[str], *, where: str | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running command in a lab namespace (killed at close)."""
        ns = where or self.host
        return subprocess.Popen(
            ["nsenter", f"--net={netns.path(ns)}", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env(),
            start_new_session=True,
        )

    def podnet(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the podnet CLI in the host namespace against this lab's agent."""
        return self.run([sys.executable, "-m", "podnet", *args], check=check, timeout=timeout)

    def agent_pid(self) -> int | None:
        try:
            return int((self.settings.run_dir / "agent.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop_agent(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15) -> None:
        """Stop the lab's agent by its pid (the agent this lab's CLI started)."""
        pid = self.agent_pid()
        if pid is None or not _is_podnet_agent(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _is_podnet_agent(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_podnet_agent(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _kill_processes_in(self, name: str) -> None:
        """SIGKILL processes still inside one of this lab's namespaces."""
        try:
            target = os.stat(netns.path(name)).st_ino
        except OSError:
            return
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{pid}/ns/net").st_ino == target and int(pid) != os.getpid():
                    os.kill(int(pid), signal.SIGKILL)

    # -- traffic ------------------------------------------------------------

    def in_ns(self, name: str, fn: Callable[[], T]) -> T:
        return netns.run_in(name, fn)

    def http_get(
        self, where: str, host: str, port: int, path: str = "/", timeout: float = 5.0
    ) -> tuple[int, str]:
        """One HTTP GET from inside namespace ``where``; (status, body)."""

        def get() -> tuple[int, str]:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.request("GET", path, headers={"Connection": "close"})
                resp = conn.getresponse()
                return resp.status, resp.read().decode(errors="replace")
            finally:
                conn.close()

        return netns.run_in(where, get)

    def wait_http(
        self, where: str, host: str, port: int, path: str = "/", timeout: float = 20.0
    ) -> tuple[int, str]:
        """GET until it answers (a pod's server may still be starting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.http_get(where, host, port, path, timeout=2.0)
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def can_connect(self, where: str, host: str, port: int, timeout: float = 1.0) -> bool:
        def attempt() -> bool:
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    return True
            except OSError:
                return False

        return netns.run_in(where, attempt)


def parse_wrk(out: str) -> dict[str, float]:
    """``wrk --latency`` output as numbers: rps, p50_ms, p99_ms, requests, and
    errors (socket errors plus non-2xx/3xx answers). The benches share it."""
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": _wrk_seconds(p50.group(1)) * 1e3,
        "p99_ms": _wrk_seconds(p99.group(1)) * 1e3,
        "requests": float(total.group(1)),
        "errors": float(errors + (int(bad.group(1)) if bad else 0)),
    }


def _wrk_seconds(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"wrk duration {text!r}")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]


def leftovers(lab_ids: Sequence[str]) -> list[str]:
    """What labs with these ids left behind (should be nothing): namespaces
    named after them and their temporary directories."""
    found = [
        f"netns {n} is left over"
        for n in netns.list_names()
        if any(n.startswith(i + "-") for i in lab_ids)
    ]
    tmp = Path(tempfile.gettempdir())
    found += [f"{p} is left over" for i in lab_ids for p in tmp.glob(f"podnet-{i}-*")]
    etc = Settings().netns_etc
    found += [f"{p} is left over" for i in lab_ids for p in etc.glob(f"{i}-*")]
    return found


def _iface(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(text)


def _is_podnet_agent(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"podnet" in b" ".join(cmdline) and b"agent" in cmdline
