"""podnet.health.HealthMonitor: scheduling, state changes, sync, concurrency, shutdown.

Real checks go to whoami servers on 127.0.0.1; scripted ones use a fake connector
that passes or refuses on cue, so the sequence of results is known exactly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

import pytest

from podnet.errors import InvalidInput
from podnet.health import (
    Connector,
    HealthMonitor,
    HealthState,
    HealthStatus,
    Target,
)
from podnet.health.connect import Streams
from podnet.model.service import HealthCheck
from podnet.workload.whoami import WhoamiOptions, WhoamiServer

T = TypeVar("T")
GUARD = 60.0  # a hung test fails instead of hanging; not a timing assertion
LOOPBACK = ipaddress.ip_address("127.0.0.1")
FAST = HealthCheck(
    kind="http", interval=0.05, timeout=0.05, healthy_threshold=2, unhealthy_threshold=3
)
Change = tuple[Target, HealthStatus]


def run(coro: Awaitable[T]) -> T:
    async def guarded() -> T:
        async with asyncio.timeout(GUARD):
            return await coro

    return asyncio.run(guarded())


def whoami(port: int = 0) -> WhoamiServer:
    options = WhoamiOptions(host="127.0.0.1", port=port, name="w", quiet=True)
    return WhoamiServer(options, addresses=["127.0.0.1"])


class Recorder:
    """An on_change callback that keeps every call and can wait for a state."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._queue: asyncio.Queue[Change] = asyncio.Queue()

    def __call__(self, target: Target, status: HealthStatus) -> None:
        self.changes.append((target, status))
        self._queue.put_nowait((target, status))

    async def until(self, state: HealthState) -> HealthStatus:
        while True:  # bounded by the test's guard
            _, status = await self._queue.get()
            if status.state is state:
                return status


def assert_flips_only(changes: Sequence[Change], check: HealthCheck) -> None:
    """Every call is a change of state, made by the result that reached the threshold."""
    previous = HealthState.UNKNOWN
    for _, status in changes:
        assert status.state is not previous
        if status.state is HealthState.HEALTHY:
            assert status.consecutive_passes == check.healthy_threshold
        else:
            assert status.consecutive_failures == check.unhealthy_threshold
        previous = status.state


# --- scripted checks ---------------------------------------------------------------


class _NullWriter:
    def close(self) -> None:
        pass


class Script:
    """A connector that passes (P) or refuses (F) as scripted, then does ``then`` forever."""

    def __init__(self, results: str, then: str = "P") -> None:
        self.results = results
        self.then = then
        self.calls = 0
        self.done = asyncio.Event()

    async def __call__(self, address: str, port: int) -> Streams:
        index, self.calls = self.calls, self.calls + 1
        if index >= len(self.results):
            self.done.set()
        if (self.results[index] if index < len(self.results) else self.then) == "F":
            raise ConnectionRefusedError(111, "Connection refused")
        return asyncio.StreamReader(), cast(asyncio.StreamWriter, _NullWriter())


def spec_flips(results: str, check: HealthCheck) -> list[HealthState]:
    """The states the results lead through, by the rule of the thresholds."""
    state, run_of, length, flips = HealthState.UNKNOWN, "", 0, []
    for r in results:
        length = length + 1 if r == run_of else 1
        run_of = r
        target, threshold = (
            (HealthState.HEALTHY, check.healthy_threshold)
            if r == "P"
            else (HealthState.UNHEALTHY, check.unhealthy_threshold)
        )
        if length >= threshold and state is not target:
            state = target
            flips.append(state)
    return flips


SCRIPTED = HealthCheck(
    kind="tcp", interval=0.01, timeout=0.01, healthy_threshold=2, unhealthy_threshold=3
)


def random_script(seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("PPF" if i % 20 < 10 else "PFF") for i in range(60)) + "PP"


@pytest.mark.parametrize(
    "results",
    [
        "PP",
        "PFPFPFPFFFPPP",
        "FFFFPFPFPP",
        "PPFFFPPFFFPFFFPP",
        random_script(1),
        random_script(2),
    ],
)
def test_on_change_is_called_exactly_on_the_flips(results: str) -> None:
    script = Script(results)
    target = Target("web", LOOPBACK, 80, SCRIPTED)

    async def scenario(recorder: Recorder) -> None:
        async with HealthMonitor(recorder, connector=lambda t: script) as monitor:
            await monitor.sync([target])
            await script.done.wait()

    recorder = Recorder()
    run(scenario(recorder))
    assert [status.state for _, status in recorder.changes] == spec_flips(results, SCRIPTED)
    assert_flips_only(recorder.changes, SCRIPTED)
    assert all(t == target for t, _ in recorder.changes)


def test_a_failing_callback_does_not_stop_the_checks() -> None:
    script = Script("PPFFFPP")
    seen: list[HealthState] = []

    def broken(target: Target, status: HealthStatus) -> None:
        seen.append(status.state)
        raise RuntimeError("caller bug")

    async def scenario() -> None:
        async with HealthMonitor(broken, connector=lambda t: script) as monitor:
            await monitor.sync([Target("web", LOOPBACK, 80, SCRIPTED)])
            await script.done.wait()

    run(scenario())
    assert seen == [HealthState.HEALTHY, HealthState.UNHEALTHY, HealthState.HEALTHY]


def test_observed_failures_take_an_endpoint_out_and_checks_bring_it_back() -> None:
    script = Script("PP")
    target = Target("web", LOOPBACK, 80, SCRIPTED)
    recorder = Recorder()

    async def scenario() -> None:
        async with HealthMonitor(recorder, connector=lambda t: script) as monitor:
            await monitor.sync([target])
            await recorder.until(HealthState.HEALTHY)
            changed = [monitor.observed_failure("web", LOOPBACK, 80, "reset") for _ in range(3)]
            assert changed == [False, False, True]
            status = monitor.status("web", LOOPBACK, 80)
            assert status is not None and status.state is HealthState.UNHEALTHY
            assert status.reason == "observed: reset"
            await recorder.until(HealthState.HEALTHY)
            assert not monitor.observed_failure("other", LOOPBACK, 80)

    run(scenario())
    assert_flips_only(recorder.changes, SCRIPTED)


# --- real checks on loopback -------------------------------------------------------


def test_an_endpoint_goes_unhealthy_when_stopped_and_comes_back() -> None:
    recorder = Recorder()

    async def scenario() -> None:
        server = whoami()
        await server.start()
        port = server.port
        target = Target("web", LOOPBACK, port, FAST)
        async with HealthMonitor(recorder) as monitor:
            await monitor.sync([target])
            await recorder.until(HealthState.HEALTHY)
            await server.stop()
            down = await recorder.until(HealthState.UNHEALTHY)
            assert down.reason in {"connection refused", "connection reset", "timeout"}
            server = whoami(port)
            await server.start()
            try:
                await recorder.until(HealthState.HEALTHY)
            finally:
                await server.stop()

    run(scenario())
    assert_flips_only(recorder.changes, FAST)


def test_sync_adds_removes_and_keeps_the_state_of_the_rest() -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with whoami() as a, whoami() as b, HealthMonitor(recorder) as monitor:
            ta = Target("web", LOOPBACK, a.port, FAST)
            tb = Target("web", LOOPBACK, b.port, FAST)
            await monitor.sync([ta])
            await recorder.until(HealthState.HEALTHY)
            before = monitor.snapshot()[ta]
            await monitor.sync([ta, tb])
            snapshot = monitor.snapshot()
            assert snapshot[ta].state is HealthState.HEALTHY
            assert snapshot[ta].changed_at == before.changed_at
            assert snapshot[tb].state is HealthState.UNKNOWN
            slower = Target(
                "web", LOOPBACK, a.port, HealthCheck(kind="tcp", interval=0.1, timeout=0.1)
            )
            await monitor.sync([slower])
            assert set(monitor.snapshot()) == {slower}
            assert monitor.snapshot()[slower].changed_at == before.changed_at
            assert monitor.status("web", LOOPBACK, b.port) is None
            await monitor.sync([])
            assert monitor.snapshot() == {}
            assert asyncio.all_tasks() == {asyncio.current_task()}

    run(scenario())
    assert [status.state for _, status in recorder.changes] == [HealthState.HEALTHY]


def test_kind_none_is_healthy_without_checks_or_callbacks() -> None:
    recorder = Recorder()
    none = Target("db", LOOPBACK, 5432, HealthCheck(kind="none"))

    async def scenario() -> None:
        async with HealthMonitor(recorder) as monitor:
            await monitor.sync([none])
            assert monitor.snapshot()[none].serving
            assert monitor.snapshot()[none].last_result is None
            assert asyncio.all_tasks() == {asyncio.current_task()}
            assert not monitor.observed_failure("db", LOOPBACK, 5432)

    run(scenario())
    assert recorder.changes == []


def test_changing_a_check_to_none_makes_it_healthy_and_says_so() -> None:
    recorder = Recorder()
    script = Script("FFF", then="F")
    checked = Target("web", LOOPBACK, 80, SCRIPTED)
    unchecked = Target("web", LOOPBACK, 80, HealthCheck(kind="none"))

    async def scenario() -> None:
        async with HealthMonitor(recorder, connector=lambda t: script) as monitor:
            await monitor.sync([checked])
            await recorder.until(HealthState.UNHEALTHY)
            await monitor.sync([unchecked])
            assert monitor.snapshot()[unchecked].serving
            assert asyncio.all_tasks() == {asyncio.current_task()}

    run(scenario())
    assert [s.state for _, s in recorder.changes] == [HealthState.UNHEALTHY, HealthState.HEALTHY]


def test_the_initial_state_can_be_healthy() -> None:
    async def scenario() -> HealthStatus:
        script = Script("", then="P")
        async with HealthMonitor(
            initial=HealthState.HEALTHY, connector=lambda t: script
        ) as monitor:
            target = Target("web", LOOPBACK, 80, HealthCheck(kind="tcp", interval=60.0))
            await monitor.sync([target])
            return monitor.snapshot()[target]

    assert run(scenario()).serving


# --- concurrency and shutdown ------------------------------------------------------


class Hanging:
    """A connector that never connects, counting how many attempts are open."""

    def __init__(self, until: int) -> None:
        self.open = self.most = self.started = 0
        self.until = until
        self.enough = asyncio.Event()

    async def __call__(self, address: str, port: int) -> Streams:
        self.open += 1
        self.started += 1
        self.most = max(self.most, self.open)
        if self.started >= self.until:
            self.enough.set()
        try:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")
        finally:
            self.open -= 1


def test_probes_are_bounded_by_the_concurrency_limit_and_close_cancels_them() -> None:
    hanging = Hanging(until=12)
    check = HealthCheck(kind="tcp", interval=0.1, timeout=0.1)
    targets = [Target("web", LOOPBACK, 1000 + i, check) for i in range(20)]

    def connector(target: Target) -> Connector:
        return hanging

    async def scenario() -> None:
        monitor = HealthMonitor(max_concurrency=3, connector=connector)
        await monitor.sync(targets)
        await hanging.enough.wait()
        await monitor.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        await monitor.close()  # idempotent
        with pytest.raises(RuntimeError):
            await monitor.sync(targets)

    run(scenario())
    assert hanging.most == 3
    assert hanging.open == 0


def test_a_probe_that_raises_a_bug_counts_as_a_failure() -> None:
    recorder = Recorder()

    async def buggy(address: str, port: int) -> Streams:
        raise KeyError("bug")

    def connector(target: Target) -> Connector:
        return buggy

    async def scenario() -> HealthStatus:
        async with HealthMonitor(recorder, connector=connector) as monitor:
            await monitor.sync([Target("web", LOOPBACK, 80, SCRIPTED)])
            return await recorder.until(HealthState.UNHEALTHY)

    status = run(scenario())
    assert status.reason == "error: 'bug'"


# --- validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Target("web", LOOPBACK, 0),
        lambda: Target("web", LOOPBACK, 70000),
        lambda: Target("web", LOOPBACK, 80, HealthCheck(kind="udp")),
        lambda: Target("web", LOOPBACK, 80, HealthCheck(interval=1.0, timeout=2.0)),
        lambda: Target("web", LOOPBACK, 80, HealthCheck(kind="http", path="no-slash")),
        lambda: HealthMonitor(max_concurrency=0),
    ],
)
def test_invalid_targets_and_monitors_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(InvalidInput):
        make()
