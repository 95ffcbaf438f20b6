"""One endpoint's health as a state machine over check results, without I/O.

Theory of operation: results come in (:meth:`EndpointHealth.passed`,
:meth:`EndpointHealth.failed`, :meth:`EndpointHealth.observed_failure`), each
with the time it was taken (the caller reads the clock, so tests pass plain
numbers). Results of one kind in a row form a *run*; a run of passes that
reaches ``healthy_threshold`` makes the endpoint HEALTHY, a run of failures
that reaches ``unhealthy_threshold`` makes it UNHEALTHY, and nothing else
changes the state. So the state is a function of the results: the target
state of the most recent run that reached its threshold, or the initial state
when no run has.

::

    UNKNOWN   --healthy_threshold passes in a row-->    HEALTHY
    UNKNOWN   --unhealthy_threshold failures in a row--> UNHEALTHY
    HEALTHY   --unhealthy_threshold failures in a row--> UNHEALTHY
    UNHEALTHY --healthy_threshold passes in a row-->    HEALTHY

Initial state: UNKNOWN by default, which does not serve traffic. That is what
Kubernetes readiness does (a container is not Ready until its probe has
passed ``successThreshold`` times) and what Consul does (a check starts
critical; ``success_before_passing`` applies from the start): a new endpoint
gets traffic only once it has shown it can answer. HEALTHY-on-start (HAProxy's
servers, or a service with no checks) is there for endpoints known good, such
as an agent restart that re-adopts endpoints which were serving.

Passive failures: :meth:`EndpointHealth.observed_failure` is how the L7 proxy
reports a failure it saw on real traffic (refused connection, reset, timeout).
It counts exactly like a failed check (HAProxy's ``on-error fail-check``): it
adds to the run of failures and ends a run of passes. So real-traffic errors
can take an endpoint out sooner than the active checks alone would, but only
through ``unhealthy_threshold``, and they never bring one back: recovery
takes ``healthy_threshold`` passing *active* checks. The proxy should report
at most one passive failure per failed request, not per retry of a socket
operation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from podnet.errors import InvalidInput
from podnet.model.service import HealthCheck

__all__ = [
    "OBSERVED",
    "TARGET_STATE",
    "EndpointHealth",
    "HealthState",
    "HealthStatus",
    "Result",
]

#: Prefix of the reason of a passive failure reported by the proxy.
OBSERVED = "observed"


class HealthState(enum.Enum):
    """Where an endpoint stands. Only HEALTHY serves traffic."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Result(enum.Enum):
    """The outcome of one check (or one passively observed failure)."""

    PASS = "pass"
    FAIL = "fail"


#: The state a long enough run of each result leads to.
TARGET_STATE = {Result.PASS: HealthState.HEALTHY, Result.FAIL: HealthState.UNHEALTHY}


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """A snapshot of :class:`EndpointHealth`, for callbacks and ``service inspect``.

    ``changed_at`` is when the state last changed (or tracking began);
    ``checked_at`` when the last result came in (None: no result yet).
    """

    state: HealthState
    last_result: Result | None
    reason: str
    consecutive_passes: int
    consecutive_failures: int
    changed_at: float | None
    checked_at: float | None

    @property
    def serving(self) -> bool:
        """True when the endpoint should get traffic."""
        return self.state is HealthState.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "serving": self.serving,
            "last_result": None if self.last_result is None else self.last_result.value,
            "reason": self.reason,
            "consecutive_passes": self.consecutive_passes,
            "consecutive_failures": self.consecutive_failures,
            "changed_at": self.changed_at,
            "checked_at": self.checked_at,
        }


def _check_thresholds(healthy: int, unhealthy: int) -> None:
    if healthy < 1 or unhealthy < 1:
        raise InvalidInput(f"health thresholds {healthy}/{unhealthy} must be at least 1")


class EndpointHealth:
    """The health of one endpoint, fed check results.

    Args:
        healthy_threshold: passes in a row that make the endpoint HEALTHY.
        unhealthy_threshold: failures in a row that make it UNHEALTHY.
        initial: the state before any run reaches its threshold.
        now: when tracking began (reported as ``changed_at``).

    Raises:
        InvalidInput: a threshold is below 1.
    """

    def __init__(
        self,
        healthy_threshold: int = 2,
        unhealthy_threshold: int = 3,
        *,
        initial: HealthState = HealthState.UNKNOWN,
        now: float | None = None,
    ) -> None:
        _check_thresholds(healthy_threshold, unhealthy_threshold)
        self._thresholds = {Result.PASS: healthy_threshold, Result.FAIL: unhealthy_threshold}
        self.state = initial
        self.last_result: Result | None = None
        self.reason = ""
        self.consecutive_passes = 0
        self.consecutive_failures = 0
        self.changed_at = now
        self.checked_at: float | None = None
        #: True when the last result changed the state (push an update).
        self.changed = False

    @classmethod
    def for_check(
        cls, check: HealthCheck, *, initial: HealthState = HealthState.UNKNOWN, now: float
    ) -> EndpointHealth:
        """A machine with ``check``'s thresholds; kind ``none`` starts, and stays, HEALTHY."""
        if check.kind == "none":
            initial = HealthState.HEALTHY
        return cls(check.healthy_threshold, check.unhealthy_threshold, initial=initial, now=now)

    @property
    def serving(self) -> bool:
        """True when the endpoint should get traffic."""
        return self.state is HealthState.HEALTHY

    def passed(self, now: float) -> bool:
        """Record a passing check taken at ``now``; True if the state changed."""
        return self._record(Result.PASS, "", now)

    def failed(self, reason: str, now: float) -> bool:
        """Record a failed check taken at ``now``; True if the state changed."""
        return self._record(Result.FAIL, reason, now)

    def observed_failure(self, now: float, reason: str = "") -> bool:
        """Record a failure the proxy saw on real traffic; counts as a failed check.

        Returns:
            True if the state changed (``unhealthy_threshold`` reached).
        """
        detail = f"{OBSERVED}: {reason}" if reason else OBSERVED
        return self._record(Result.FAIL, detail, now)

    def reconfigure(self, healthy_threshold: int, unhealthy_threshold: int) -> None:
        """Change the thresholds; runs so far count, and the new ones apply from the
        next result (the state does not change here)."""
        _check_thresholds(healthy_threshold, unhealthy_threshold)
        self._thresholds = {Result.PASS: healthy_threshold, Result.FAIL: unhealthy_threshold}

    def status(self) -> HealthStatus:
        """An immutable snapshot."""
        return HealthStatus(
            self.state,
            self.last_result,
            self.reason,
            self.consecutive_passes,
            self.consecutive_failures,
            self.changed_at,
            self.checked_at,
        )

    def _record(self, result: Result, reason: str, now: float) -> bool:
        run = self._extend_run(result)
        self.last_result, self.reason, self.checked_at = result, reason, now
        target = TARGET_STATE[result]
        self.changed = run >= self._thresholds[result] and self.state is not target
        if self.changed:
            self.state, self.changed_at = target, now
        return self.changed

    def _extend_run(self, result: Result) -> int:
        if result is Result.PASS:
            self.consecutive_passes, self.consecutive_failures = self.consecutive_passes + 1, 0
            return self.consecutive_passes
        self.consecutive_passes, self.consecutive_failures = 0, self.consecutive_failures + 1
        return self.consecutive_failures
