"""Checking every endpoint of every service, as asyncio tasks in the agent.

Theory of operation: the agent hands :meth:`HealthMonitor.sync` the full set
of :class:`Target` s it wants checked whenever endpoints come and go. A target
is known by its *key* (service, address, port). New keys get a fresh
:class:`EndpointHealth` and a task; gone keys lose theirs; a key whose check
(or netns) changed keeps its state and counts, takes the new thresholds from
its next result and restarts its schedule; unchanged keys are left alone.

Each task checks its target on a grid of ``interval`` with a random phase
(:mod:`podnet.health.schedule`), waits for a slot of a shared semaphore (so at
most ``max_concurrency`` probes are open at once), probes under the check's
timeout and feeds the result to the state machine. When the state changes,
``on_change(target, status)`` is called, synchronously, on the event loop; it
is never called for adding or removing a target (the caller knows: new
targets start in ``initial``, UNKNOWN unless told otherwise). Kind ``none``
targets have no task and are HEALTHY. :meth:`HealthMonitor.close` cancels
every task and waits for them, so no probe outlives the monitor.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from podnet.errors import InvalidInput
from podnet.health.connect import Connector, default_connector, netns_connector
from podnet.health.probe import ProbeResult, check_path, probe
from podnet.health.schedule import first_delay, next_deadline
from podnet.health.state import EndpointHealth, HealthState, HealthStatus
from podnet.model.network import IPAddress
from podnet.model.service import HealthCheck

__all__ = [
    "ChangeCallback",
    "HealthMonitor",
    "Target",
    "TargetKey",
    "connector_for",
]

log = logging.getLogger("podnet.health")

TargetKey = tuple[str, IPAddress, int]


@dataclass(frozen=True, slots=True)
class Target:
    """One endpoint port of one service to check.

    ``netns``: check from inside this network namespace (None: the agent's).

    Raises:
        InvalidInput: the port, the check or its path is not valid.
    """

    service: str
    address: IPAddress
    port: int
    check: HealthCheck = field(default_factory=HealthCheck)
    netns: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise InvalidInput(f"endpoint port {self.port} is out of range 1-65535")
        self.check.validate()
        if self.check.kind == "http":
            check_path(self.check.path)

    @property
    def key(self) -> TargetKey:
        """What identifies the target across :meth:`HealthMonitor.sync` calls."""
        return (self.service, self.address, self.port)


ChangeCallback = Callable[[Target, HealthStatus], None]


def connector_for(target: Target) -> Connector:
    """How to connect to ``target``: from its netns if it names one."""
    return default_connector if target.netns is None else netns_connector(target.netns)


@dataclass(slots=True)
class _Tracked:
    target: Target
    health: EndpointHealth
    task: asyncio.Task[None] | None = None


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class HealthMonitor:
    """Active health checks of a changing set of targets.

    Args:
        on_change: called with the target and its status when its state changes.
        max_concurrency: most probes open at once.
        initial: the state of a new target (kind ``none``: always HEALTHY).
        connector: how to connect to a target (default: :func:`connector_for`).
        clock: wall time for ``changed_at``/``checked_at`` (scheduling uses the loop's).
        rng: source of the schedule's jitter.

    Raises:
        InvalidInput: ``max_concurrency`` is below 1.
    """

    def __init__(
        self,
        on_change: ChangeCallback | None = None,
        *,
        max_concurrency: int = 64,
        initial: HealthState = HealthState.UNKNOWN,
        connector: Callable[[Target], Connector] = connector_for,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise InvalidInput(f"health check concurrency {max_concurrency} must be at least 1")
        self._on_change = on_change
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._initial = initial
        self._connector = connector
        self._clock = clock
        self._rng = rng or random.Random()
        self._tracked: dict[TargetKey, _Tracked] = {}
        self._closed = False

    async def sync(self, targets: Iterable[Target]) -> None:
        """Check exactly ``targets`` from now on (the last of a key wins).

        Raises:
            RuntimeError: the monitor is closed.
        """
        if self._closed:
            raise RuntimeError("health monitor is closed")
        wanted = {target.key: target for target in targets}
        stopping = [self._untrack(key) for key in list(self._tracked) if key not in wanted]
        for key, target in wanted.items():
            tracked = self._tracked.get(key)
            if tracked is None:
                self._tracked[key] = self._track(target)
            elif tracked.target != target:
                stopping.append(self._retarget(tracked, target))
        await _cancel([task for task in stopping if task is not None])

    def snapshot(self) -> dict[Target, HealthStatus]:
        """Every target's status, for ``service inspect``."""
        return {t.target: t.health.status() for t in self._tracked.values()}

    def status(self, service: str, address: IPAddress, port: int) -> HealthStatus | None:
        """One target's status, None if it is not tracked."""
        tracked = self._tracked.get((service, address, port))
        return None if tracked is None else tracked.health.status()

    def observed_failure(
        self, service: str, address: IPAddress, port: int, reason: str = ""
    ) -> bool:
        """Count a failure the proxy saw on real traffic (see :mod:`podnet.health.state`).

        Ignored for untracked targets and kind ``none``.

        Returns:
            True if it changed the state (``on_change`` was called).
        """
        tracked = self._tracked.get((service, address, port))
        if tracked is None or tracked.target.check.kind == "none":
            return False
        changed = tracked.health.observed_failure(self._clock(), reason)
        if changed:
            self._notify(tracked)
        return changed

    async def close(self) -> None:
        """Stop every check and wait for the tasks to end; idempotent."""
        self._closed = True
        stopping = [self._untrack(key) for key in list(self._tracked)]
        await _cancel([task for task in stopping if task is not None])

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _track(self, target: Target) -> _Tracked:
        health = EndpointHealth.for_check(target.check, initial=self._initial, now=self._clock())
        tracked = _Tracked(target, health)
        tracked.task = self._start(tracked)
        return tracked

    def _untrack(self, key: TargetKey) -> asyncio.Task[None] | None:
        return self._tracked.pop(key).task

    def _retarget(self, tracked: _Tracked, target: Target) -> asyncio.Task[None] | None:
        old_task, old_state = tracked.task, tracked.health.state
        if target.check.kind == "none":
            tracked.health = EndpointHealth.for_check(target.check, now=self._clock())
        else:
            check = target.check
            tracked.health.reconfigure(check.healthy_threshold, check.unhealthy_threshold)
        tracked.target = target
        tracked.task = self._start(tracked)
        if tracked.health.state is not old_state:
            self._notify(tracked)
        return old_task

    def _start(self, tracked: _Tracked) -> asyncio.Task[None] | None:
        if tracked.target.check.kind == "none":
            return None
        target = tracked.target
        name = f"health {target.service} {target.address}:{target.port}"
        return asyncio.get_running_loop().create_task(self._run(tracked), name=name)

    async def _run(self, tracked: _Tracked) -> None:
        loop = asyncio.get_running_loop()
        target = tracked.target
        connect = self._connector(target)
        due = loop.time() + first_delay(target.check.interval, self._rng)
        while True:  # until cancelled by sync() or close()
            await asyncio.sleep(due - loop.time())
            self._record(tracked, await self._probe(target, connect))
            due = next_deadline(due, target.check.interval, loop.time())

    async def _probe(self, target: Target, connect: Connector) -> ProbeResult:
        async with self._semaphore:
            try:
                return await probe(target.check, target.address, target.port, connect=connect)
            except Exception as exc:  # a bug must fail one check, not end the checking
                log.exception("health check of %s failed unexpectedly", target)
                return ProbeResult(False, f"error: {exc}")

    def _record(self, tracked: _Tracked, result: ProbeResult) -> None:
        now, health = self._clock(), tracked.health
        changed = health.passed(now) if result.ok else health.failed(result.reason, now)
        if changed:
            self._notify(tracked)

    def _notify(self, tracked: _Tracked) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(tracked.target, tracked.health.status())
        except Exception:  # the caller's bug must not stop the checks
            log.exception("health change callback failed for %s", tracked.target)
