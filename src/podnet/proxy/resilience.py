"""How the proxy survives failing upstreams. Pure: values and a clock in, decisions out.

* :class:`RetryBudget` (per route) caps concurrent retries at
  ``budget_percent`` of the route's active requests, but always allows
  ``budget_min_concurrent`` (Envoy's retry budget): retries help against a
  failing endpoint, and must not multiply load when a whole backend is down.
* :func:`may_retry` says whether a failed attempt may be replayed at all, and
  :func:`backoff` how long to wait first (full jitter, capped exponential).
* :class:`CircuitBreakerRuntime` (per backend) counts connections, pending and
  active requests against :class:`~podnet.model.route.CircuitBreaker` limits.
* :class:`OutlierDetector` (per backend) is passive health: consecutive 5xx
  answers or consecutive errors eject an endpoint for ``base * n`` seconds
  (n = its ejections so far, capped at ``max_ejection``). It never ejects past
  ``max_ejection_percent`` of the backend's usable endpoints and always leaves
  one of them in. State is keyed by endpoint id; the router hands the same
  detector to the next snapshot's backend (:meth:`OutlierDetector.update`), so
  a new snapshot neither forgets an ejection nor a failure streak.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Literal

from podnet.model.route import (
    IDEMPOTENT_METHODS,
    RETRY_CONDITIONS,
    CircuitBreaker,
    OutlierDetection,
    RetryPolicy,
)

__all__ = [
    "BUDGET_WINDOW",
    "BreakerKind",
    "CircuitBreakerRuntime",
    "Outcome",
    "OutlierDetector",
    "RetryBudget",
    "backoff",
    "may_retry",
]

Outcome = Literal["ok", "5xx", "error"]
BreakerKind = Literal["connections", "pending", "requests"]


#: Seconds of history a retry budget weighs (Finagle's and Linkerd's TTL).
BUDGET_WINDOW: Final = 10


class RetryBudget:
    """Per-route retry budget, as Finagle and Linkerd keep it: over the last
    :data:`BUDGET_WINDOW` seconds, retries may be at most ``budget_percent`` of
    requests, plus ``budget_min_per_second`` retries a second for light traffic.

    Why a window and not a share of the requests in flight (Envoy's budget): a
    backend that dies resets every request it holds at once, and with fast
    backends those are most of the requests in flight at that instant, so a
    concurrency share refuses the very retries that would hide the death. Over
    a window the same rule still caps what retries add during an outage (at
    most ``budget_percent`` more requests), but absorbs a burst.

    Counts live in one bucket per second; :meth:`request_started` is the only
    call on every request and costs an integer compare and an add.
    """

    __slots__ = ("_clock", "_requests", "_retries", "_second", "policy")

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._second = int(clock())
        self._requests = [0] * BUDGET_WINDOW  # by second, modulo the window
        self._retries = [0] * BUDGET_WINDOW

    def update(self, policy: RetryPolicy) -> None:
        """Take a new snapshot's policy; the history stays."""
        self.policy = policy

    def _advance(self) -> int:
        """The current second's slot, clearing the slots of seconds that passed."""
        now = int(self._clock())
        gone = now - self._second
        if gone > 0:
            for second in range(self._second + 1, self._second + 1 + min(gone, BUDGET_WINDOW)):
                slot = second % BUDGET_WINDOW
                self._requests[slot] = self._retries[slot] = 0
            self._second = now
        return now % BUDGET_WINDOW

    def request_started(self) -> None:
        """Count a client request (once, whatever its tries)."""
        now = int(self._clock())
        if now != self._second:
            self._advance()
        self._requests[now % BUDGET_WINDOW] += 1

    def allowed(self) -> float:
        """How many retries the window allows in all (used and left)."""
        self._advance()
        policy = self.policy
        return (
            policy.budget_percent * sum(self._requests) / 100
            + policy.budget_min_per_second * BUDGET_WINDOW
        )

    def try_start_retry(self) -> bool:
        """Count one more retry, or False when the window's budget is spent."""
        allowed = self.allowed()  # first: it moves the window on
        if sum(self._retries) + 1 > allowed:
            return False
        self._retries[self._advance()] += 1
        return True


def backoff(policy: RetryPolicy, retry: int, rng: random.Random) -> float:
    """Seconds to wait before retry ``retry`` (1-based): uniform in
    [0, min(backoff_max, backoff_base * 2**(retry-1))] ("full jitter", which
    spreads retries of many clients best)."""
    exponent = max(retry, 1) - 1
    # 2**exponent overflows nothing here (attempts <= 10), but cap it anyway.
    ceiling = min(policy.backoff_max, policy.backoff_base * float(2 ** min(exponent, 62)))
    return rng.random() * ceiling


def may_retry(
    policy: RetryPolicy,
    method: str,
    *,
    condition: str | None = None,
    status: int | None = None,
    request_body_sent: bool = False,
) -> bool:
    """Whether a failed attempt may be retried (the attempt count is the caller's).

    ``condition`` is one of RETRY_CONDITIONS, ``status`` the upstream's answer.
    A connect failure is always retryable: nothing reached the upstream. Any
    other failure needs to be listed in ``policy.on``, an idempotent method
    (or ``policy.non_idempotent``), and a request that can still be replayed
    (its body not already streamed upstream).
    """
    if condition == "connect-failure":
        return True
    if request_body_sent:
        return False
    if condition is not None:
        if condition not in RETRY_CONDITIONS or condition not in policy.on:
            return False
    elif status is None or not policy.retries_status(status):
        return False
    return method in IDEMPOTENT_METHODS or policy.non_idempotent


class CircuitBreakerRuntime:
    """Per-backend counters against the CircuitBreaker limits (Envoy-style: a
    request over a limit is refused at once instead of queueing)."""

    __slots__ = ("_counts", "_limits")

    def __init__(self, limits: CircuitBreaker) -> None:
        self._counts: dict[str, int] = {"connections": 0, "pending": 0, "requests": 0}
        self._limits: dict[str, int] = {}
        self.update(limits)

    def update(self, limits: CircuitBreaker) -> None:
        """Take a new snapshot's limits; current counts stay (lowered limits
        refuse new work until enough of the old finishes)."""
        self._limits = {
            "connections": limits.max_connections,
            "pending": limits.max_pending,
            "requests": limits.max_requests,
        }

    def try_acquire(self, kind: BreakerKind) -> bool:
        count = self._counts[kind]
        if count >= self._limits[kind]:
            return False
        self._counts[kind] = count + 1
        return True

    def release(self, kind: BreakerKind) -> None:
        count = self._counts[kind]
        if count > 0:
            self._counts[kind] = count - 1

    def counts(self) -> Mapping[str, int]:
        return dict(self._counts)


class _Streak:
    """One endpoint's outlier state."""

    __slots__ = ("errors", "fivexx", "times")

    def __init__(self) -> None:
        self.fivexx = 0
        self.errors = 0
        self.times = 0  # ejections so far: the multiplier of the next ejection time


class OutlierDetector:
    """Per-backend passive health (Envoy's consecutive-5xx / consecutive-error detectors).

    An "ok" resets both streaks. "5xx" counts toward ``consecutive_5xx`` and
    "error" (connect failure, reset, timeout, bad response) toward
    ``consecutive_errors``; the streaks are separate, so a mix of both ejects
    only when one of them reaches its threshold. Outcomes of an endpoint that
    is ejected (requests that were in flight) are ignored. An ejection the
    percent limit refuses leaves the streak as is: the next failure asks again.

    ``usable`` endpoints (healthy, weight > 0) are the ones the limits count:
    ejected usable endpoints stay <= ``max_ejection_percent`` of them and at
    least one usable endpoint always stays in.
    """

    __slots__ = ("_clock", "_streaks", "_total", "_usable", "ejected_until", "policy")

    def __init__(
        self,
        policy: OutlierDetection,
        endpoints: Iterable[str] = (),
        usable: Iterable[str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._streaks: dict[str, _Streak] = {}
        # Endpoint id -> end of its ejection. Public for the router's hot path (an empty
        # dict means nothing is ejected); change it only through this class.
        self.ejected_until: dict[str, float] = {}
        self._usable: frozenset[str] = frozenset()
        self._total = 0
        self.update(policy, endpoints, usable)

    def update(
        self, policy: OutlierDetection, endpoints: Iterable[str], usable: Iterable[str] | None
    ) -> None:
        """Take a new snapshot: its policy, endpoint ids and usable ones (default: all).
        Endpoints that left are forgotten; the others keep streaks and ejections."""
        self.policy = policy
        present = list(endpoints)
        self._usable = frozenset(present if usable is None else usable)
        self._streaks = {eid: self._streaks.get(eid) or _Streak() for eid in present}
        self.ejected_until = {
            eid: t for eid, t in self.ejected_until.items() if eid in self._streaks
        }
        self._keep_one_in()

    def _keep_one_in(self) -> None:
        """If every usable endpoint is ejected (health changed under us), let the
        one whose ejection ends first back in."""
        if self._usable and self._usable.issubset(self.ejected_until):
            first = min(self._usable, key=lambda eid: self.ejected_until[eid])
            del self.ejected_until[first]

    def has_ejections(self) -> bool:
        """Cheap hot-path test: False means no endpoint is ejected (expired ones may count)."""
        return bool(self.ejected_until)

    def record(self, endpoint_id: str, outcome: Outcome) -> None:
        streak = self._streaks.get(endpoint_id)
        if streak is None:  # an endpoint the last snapshot dropped
            return
        if outcome == "ok":
            streak.fivexx = streak.errors = 0
            return
        if self.ejected_until and self.ejected(endpoint_id):
            return
        policy = self.policy
        if outcome == "5xx":
            streak.fivexx += 1
            tripped = streak.fivexx >= policy.consecutive_5xx
        else:
            streak.errors += 1
            tripped = streak.errors >= policy.consecutive_errors
        if tripped:
            self._try_eject(endpoint_id, streak)

    def _try_eject(self, endpoint_id: str, streak: _Streak) -> None:
        if endpoint_id not in self._usable:  # gets no new traffic anyway
            return
        now = self._clock()
        self._expire(now)
        out = sum(1 for eid in self.ejected_until if eid in self._usable) + 1
        usable = len(self._usable)
        if out >= usable or out * 100 > self.policy.max_ejection_percent * usable:
            return
        streak.times += 1
        streak.fivexx = streak.errors = 0
        policy = self.policy
        self.ejected_until[endpoint_id] = now + min(
            policy.base_ejection * streak.times, policy.max_ejection
        )
        self._total += 1

    def _expire(self, now: float) -> None:
        for eid in [eid for eid, until in self.ejected_until.items() if until <= now]:
            del self.ejected_until[eid]

    def ejected(self, endpoint_id: str) -> bool:
        until = self.ejected_until.get(endpoint_id)
        if until is None:
            return False
        if self._clock() >= until:
            del self.ejected_until[endpoint_id]
            return False
        return True

    def ejected_ids(self) -> list[str]:
        """Endpoints out right now (for gauges and inspection)."""
        self._expire(self._clock())
        return sorted(self.ejected_until)

    def ejections_total(self) -> int:
        """Ejections since this detector was made (it lives across snapshots)."""
        return self._total
