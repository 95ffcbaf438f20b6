"""Proxy process supervision without root: start, adopt, restart, respec, stop, remove.

The "proxy" here is a sleeping Python child this test starts (no netns); every
process is stopped by its own pid/group before the test ends.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from podnet.controller.proxies import ProxyLaunch, ProxySupervisor
from podnet.controller.state import Keys
from podnet.store import open_store
from podnet.store.base import Store

SLEEPER = (sys.executable, "-c", "import time; time.sleep(120)")


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store("memory:") as s:
        yield s


def supervisor(store: Store, tmp_path: Path) -> ProxySupervisor:
    return ProxySupervisor(store, log_dir=tmp_path, env={"PODNET_TEST": "1"})


def test_start_adopt_restart_respec_remove(store: Store, tmp_path: Path) -> None:
    sup = supervisor(store, tmp_path)
    launch = ProxyLaunch("edge", SLEEPER)
    try:
        sup.sync({"edge": launch}, [])
        first = sup.status("edge")
        assert sup.alive(first) and sup.record("edge")["argv"] == list(SLEEPER)
        # a new agent adopts the running process instead of starting another
        adopted = supervisor(store, tmp_path)
        adopted.sync({"edge": launch}, [])
        assert adopted.status("edge").pid == first.pid
        # it dies: restarted (after the backoff) with a restart counted
        os.killpg(first.pid, signal.SIGKILL)
        wait_for("the process to die", lambda: not adopted.alive(first))

        def restarted() -> bool:
            adopted.sync({"edge": launch}, [])
            return adopted.alive(adopted.status("edge"))

        wait_for("a restart", restarted)
        second = adopted.status("edge")
        assert second.pid != first.pid and second.restarts == 1
        # a different argv (e.g. more workers) replaces the process
        respec = ProxyLaunch("edge", (*SLEEPER, "x"))
        adopted.sync({"edge": respec}, [])
        third = adopted.status("edge")
        assert third.pid != second.pid and not adopted.alive(second)
        # unwanted: stopped, record and log gone
        adopted.sync({}, [])
        assert not adopted.alive(third)
        assert store.get(Keys.proxy_status("edge")) is None
        assert not adopted.log_path("edge").exists()
    finally:
        for st in (sup.status("edge"),):
            if sup.alive(st):
                os.killpg(st.pid, signal.SIGKILL)


def test_remove_is_idempotent_and_stop_keeps_the_record(store: Store, tmp_path: Path) -> None:
    sup = supervisor(store, tmp_path)
    sup.remove(["never-existed"])
    try:
        sup.start(ProxyLaunch("p", SLEEPER))
        pid = sup.status("p").pid
        sup.stop(["p"])
        assert sup.status("p").state == "stopped" and not sup.alive(sup.status("p"))
        assert pid > 0
    finally:
        st = sup.status("p")
        if sup.alive(st):
            os.killpg(st.pid, signal.SIGKILL)
    sup.remove_all()
    assert sup.records() == {}
