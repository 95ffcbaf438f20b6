"""Retry budget, backoff, retry decisions, circuit breaker and outlier detection."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.model.route import CircuitBreaker, OutlierDetection, RetryPolicy
from podnet.proxy.resilience import (
    BUDGET_WINDOW,
    CircuitBreakerRuntime,
    OutlierDetector,
    RetryBudget,
    backoff,
    may_retry,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- retry budget ---------------------------------------------------------------------------


def test_budget_allows_the_minimum_per_second_with_no_traffic() -> None:
    clock = Clock()
    budget = RetryBudget(RetryPolicy(budget_percent=20, budget_min_per_second=0.3), clock)
    assert [budget.try_start_retry() for _ in range(4)] == [True, True, True, False]  # 0.3 x 10 s
    clock.now += BUDGET_WINDOW  # the window forgets them
    assert budget.try_start_retry()


def test_budget_is_a_share_of_the_requests_in_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(RetryPolicy(budget_percent=20, budget_min_per_second=0), clock)
    for _ in range(50):
        budget.request_started()
    granted = 0
    while budget.try_start_retry():
        granted += 1
        assert granted <= 100
    assert granted == 10  # 20 % of 50
    clock.now += 5  # half a window on: the 50 requests and 10 retries still count
    for _ in range(25):
        budget.request_started()
    assert [budget.try_start_retry() for _ in range(6)] == [True] * 5 + [False]  # 20 % of 75
    clock.now += 5.5  # the first second's requests and retries are forgotten
    assert not budget.try_start_retry()  # 25 requests, 5 retries left in the window
    clock.now += 5
    assert not budget.try_start_retry()  # nothing left at all
    budget.request_started()
    assert not budget.try_start_retry()  # 20 % of 1


def test_a_burst_of_resets_is_covered_by_the_traffic_before_it() -> None:
    """One endpoint in three dies: every request it held resets at once."""
    clock = Clock()
    budget = RetryBudget(RetryPolicy(), clock)  # defaults: 20 %, 10/s
    for _ in range(5000):  # 5,000 requests/s for a second, 21 in flight on the dead one
        budget.request_started()
        clock.now += 1 / 5000
    assert all(budget.try_start_retry() for _ in range(21))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200), st.floats(0, 100), st.floats(0, 2), st.integers(0, 30))
def test_budget_never_exceeds_the_bound(
    requests: int, percent: float, minimum: float, later: int
) -> None:
    clock = Clock()
    budget = RetryBudget(RetryPolicy(budget_percent=percent, budget_min_per_second=minimum), clock)
    for _ in range(requests):
        budget.request_started()
    clock.now += later
    counted = requests if later < BUDGET_WINDOW else 0
    bound = percent * counted / 100 + minimum * BUDGET_WINDOW
    granted = sum(budget.try_start_retry() for _ in range(500))
    assert granted <= bound
    assert granted >= min(500, int(bound * (1 - 1e-9)))  # float sums: a hair below


def test_policy_updates_keep_the_history() -> None:
    clock = Clock()
    budget = RetryBudget(RetryPolicy(budget_min_per_second=0, budget_percent=100), clock)
    assert not budget.try_start_retry()
    budget.request_started()
    assert budget.try_start_retry()
    budget.update(RetryPolicy(budget_min_per_second=0, budget_percent=0))
    budget.request_started()
    assert not budget.try_start_retry()
    budget.update(RetryPolicy(budget_min_per_second=0, budget_percent=100))
    assert budget.try_start_retry()  # 2 requests, 1 retry so far


# --- backoff and may_retry -------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10), st.integers(0, 2**32))
def test_backoff_is_full_jitter_under_a_capped_exponential(retry: int, seed: int) -> None:
    policy = RetryPolicy(backoff_base=0.025, backoff_max=0.25)
    delay = backoff(policy, retry, random.Random(seed))
    assert 0 <= delay <= min(0.25, 0.025 * 2 ** (retry - 1))


def test_backoff_spreads_over_the_whole_range() -> None:
    policy = RetryPolicy(backoff_base=0.1, backoff_max=1.0)
    rng = random.Random(5)
    delays = [backoff(policy, 2, rng) for _ in range(2000)]
    assert max(delays) <= 0.2 and max(delays) > 0.19 and min(delays) < 0.01
    assert max(backoff(policy, 9, rng) for _ in range(500)) > 0.95  # capped at 1.0
    assert backoff(RetryPolicy(backoff_base=0, backoff_max=0), 3, rng) == 0


def test_connect_failure_is_always_retryable() -> None:
    policy = RetryPolicy(on=())
    assert may_retry(policy, "POST", condition="connect-failure", request_body_sent=True)


@pytest.mark.parametrize(
    ("method", "kwargs", "expected"),
    [
        ("GET", {"condition": "reset"}, True),
        ("GET", {"condition": "timeout"}, False),  # not in the default `on`
        ("GET", {"status": 503}, True),
        ("GET", {"status": 500}, False),
        ("PUT", {"status": 502}, True),
        ("POST", {"status": 503}, False),  # not idempotent
        ("POST", {"condition": "reset"}, False),
        ("GET", {"condition": "reset", "request_body_sent": True}, False),
        ("GET", {"status": 503, "request_body_sent": True}, False),
        ("GET", {}, False),
        ("GET", {"condition": "bogus"}, False),
    ],
)
def test_may_retry_default_policy(method: str, kwargs: dict[str, object], expected: bool) -> None:
    assert may_retry(RetryPolicy(), method, **kwargs) is expected  # type: ignore[arg-type]


def test_may_retry_non_idempotent_and_timeouts_when_asked() -> None:
    policy = RetryPolicy(on=("timeout", "500"), non_idempotent=True)
    assert may_retry(policy, "POST", condition="timeout")
    assert may_retry(policy, "PATCH", status=500)
    assert not may_retry(policy, "POST", status=503)
    assert not may_retry(policy, "POST", condition="reset")


# --- circuit breaker -------------------------------------------------------------------------


def test_breaker_refuses_at_each_limit_and_releases() -> None:
    breaker = CircuitBreakerRuntime(
        CircuitBreaker(max_connections=2, max_pending=1, max_requests=3)
    )
    assert [breaker.try_acquire("requests") for _ in range(4)] == [True, True, True, False]
    assert [breaker.try_acquire("connections") for _ in range(3)] == [True, True, False]
    assert [breaker.try_acquire("pending") for _ in range(2)] == [True, False]
    assert breaker.counts() == {"connections": 2, "pending": 1, "requests": 3}
    breaker.release("requests")
    assert breaker.try_acquire("requests")
    for _ in range(5):
        breaker.release("pending")
    assert breaker.counts()["pending"] == 0


def test_breaker_update_keeps_counts() -> None:
    breaker = CircuitBreakerRuntime(CircuitBreaker(max_requests=5))
    for _ in range(4):
        assert breaker.try_acquire("requests")
    breaker.update(CircuitBreaker(max_requests=3))
    assert not breaker.try_acquire("requests")
    breaker.release("requests")
    breaker.release("requests")
    assert breaker.try_acquire("requests")
    counts = breaker.counts()
    assert isinstance(counts, dict) and counts["requests"] == 3


# --- outlier detection -----------------------------------------------------------------------

IDS = [f"10.0.0.{i}:80" for i in range(1, 5)]


def detector(clock: Clock, **kw: float) -> OutlierDetector:
    policy = OutlierDetection(**kw)  # type: ignore[arg-type]
    return OutlierDetector(policy, IDS, clock=clock)


def test_consecutive_5xx_ejects_and_ok_resets() -> None:
    clock = Clock()
    det = detector(clock, consecutive_5xx=3)
    for _ in range(2):
        det.record(IDS[0], "5xx")
    det.record(IDS[0], "ok")
    for _ in range(2):
        det.record(IDS[0], "5xx")
    assert not det.ejected(IDS[0])
    det.record(IDS[0], "5xx")
    assert det.ejected(IDS[0])
    assert det.ejections_total() == 1
    assert det.ejected_ids() == [IDS[0]]


def test_errors_and_5xx_are_separate_streaks() -> None:
    clock = Clock()
    det = detector(clock, consecutive_5xx=3, consecutive_errors=2)
    det.record(IDS[1], "5xx")
    det.record(IDS[1], "error")
    det.record(IDS[1], "5xx")
    assert not det.ejected(IDS[1])
    det.record(IDS[1], "error")  # second error in its streak
    assert det.ejected(IDS[1])


def test_ejection_time_grows_with_count_and_is_capped() -> None:
    clock = Clock()
    det = detector(clock, consecutive_errors=1, base_ejection=10, max_ejection=25)
    durations = []
    for _ in range(4):
        start = clock.now
        det.record(IDS[0], "error")
        assert det.ejected(IDS[0])
        while det.ejected(IDS[0]):
            clock.now += 1
        durations.append(clock.now - start)
    assert durations == [10, 20, 25, 25]
    assert det.ejections_total() == 4


def test_outcomes_while_ejected_are_ignored() -> None:
    clock = Clock()
    det = detector(clock, consecutive_errors=1, base_ejection=10)
    det.record(IDS[0], "error")
    for _ in range(5):
        det.record(IDS[0], "error")
    assert det.ejections_total() == 1
    clock.now += 10
    assert not det.ejected(IDS[0])


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.floats(0, 100), st.lists(st.integers(0, 7), max_size=40))
def test_never_past_max_percent_and_one_always_stays(
    size: int, percent: float, failures: list[int]
) -> None:
    clock = Clock()
    ids = [f"e{i}" for i in range(size)]
    det = OutlierDetector(
        OutlierDetection(consecutive_errors=1, max_ejection_percent=percent), ids, clock=clock
    )
    for index in failures:
        det.record(ids[index % size], "error")
        out = len(det.ejected_ids())
        assert out * 100 <= percent * size
        assert out < size


def test_percent_limit_frees_up_after_ejections_end() -> None:
    clock = Clock()
    det = detector(clock, consecutive_errors=1, max_ejection_percent=25, base_ejection=5)
    det.record(IDS[0], "error")
    det.record(IDS[1], "error")  # 2 of 4 > 25 %: refused, streak kept
    assert det.ejected_ids() == [IDS[0]]
    clock.now += 5
    det.record(IDS[1], "error")
    assert det.ejected_ids() == [IDS[1]]


def test_update_keeps_state_by_id_and_drops_gone_endpoints() -> None:
    clock = Clock()
    policy = OutlierDetection(consecutive_5xx=2, consecutive_errors=1, max_ejection_percent=100)
    det = OutlierDetector(policy, IDS, clock=clock)
    det.record(IDS[0], "error")
    det.record(IDS[1], "5xx")
    det.update(policy, IDS[:3], None)
    assert det.ejected(IDS[0])
    det.record(IDS[1], "5xx")  # the streak survived the update
    assert det.ejected(IDS[1])
    det.update(OutlierDetection(), IDS[1:], None)
    assert not det.ejected(IDS[0])  # gone, and forgotten
    det.record(IDS[0], "error")  # an in-flight request of a dropped endpoint: ignored
    assert det.ejections_total() == 2


def test_update_lets_one_back_in_when_every_usable_one_is_ejected() -> None:
    clock = Clock()
    det = detector(clock, consecutive_errors=1, max_ejection_percent=100, base_ejection=10)
    det.record(IDS[0], "error")
    clock.now += 1
    det.record(IDS[1], "error")
    assert det.ejected_ids() == IDS[:2]
    # Health: only the two ejected ones are usable now.
    det.update(det.policy, IDS, IDS[:2])
    assert det.ejected_ids() == [IDS[1]]  # IDS[0]'s ejection ended first: it is back


def test_unusable_endpoints_are_not_ejected() -> None:
    clock = Clock()
    det = OutlierDetector(OutlierDetection(consecutive_errors=1), IDS, IDS[:2], clock=clock)
    det.record(IDS[3], "error")
    assert not det.ejected(IDS[3])
    assert not det.has_ejections()
