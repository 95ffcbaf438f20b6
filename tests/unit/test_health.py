"""podnet.health, the pure parts: the endpoint state machine, the response head
reader, the schedule and the convergence bounds."""

from __future__ import annotations

import importlib
import itertools
import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podnet.errors import InvalidInput
from podnet.health import convergence, schedule
from podnet.health.response import MAX_HEAD, ResponseError, StatusReader, status_of
from podnet.health.state import (
    OBSERVED,
    TARGET_STATE,
    EndpointHealth,
    HealthState,
    Result,
)
from podnet.model.service import HealthCheck

PASS, FAIL, SEEN = "pass", "fail", "observed"
STATES = list(HealthState)

# --- the spec --------------------------------------------------------------------


def result_of(event: str) -> Result:
    return Result.PASS if event == PASS else Result.FAIL


def runs(events: Sequence[str]) -> list[tuple[Result, int]]:
    """Maximal runs of one result: [(result, length), ...]."""
    return [(r, len(list(g))) for r, g in itertools.groupby(map(result_of, events))]


def spec_state(
    events: Sequence[str], healthy: int, unhealthy: int, initial: HealthState
) -> HealthState:
    """The state is that of the most recent run that reached its threshold."""
    thresholds = {Result.PASS: healthy, Result.FAIL: unhealthy}
    for result, length in reversed(runs(events)):
        if length >= thresholds[result]:
            return TARGET_STATE[result]
    return initial


def feed(health: EndpointHealth, event: str, now: float) -> bool:
    if event == PASS:
        return health.passed(now)
    if event == FAIL:
        return health.failed(f"failure at {now}", now)
    return health.observed_failure(now, "reset")


def check_against_spec(
    events: Sequence[str], healthy: int, unhealthy: int, initial: HealthState
) -> None:
    health = EndpointHealth(healthy, unhealthy, initial=initial, now=-1.0)
    changed_at = -1.0
    for i, event in enumerate(events):
        before = health.state
        changed = feed(health, event, float(i))
        expected = spec_state(events[: i + 1], healthy, unhealthy, initial)
        assert health.state is expected, (events[: i + 1], healthy, unhealthy, initial)
        assert changed is health.changed is (expected is not before)
        changed_at = float(i) if changed else changed_at
        assert health.changed_at == changed_at
        assert health.checked_at == float(i)
        last, length = runs(events[: i + 1])[-1]
        assert health.last_result is last
        assert (health.consecutive_passes, health.consecutive_failures) == (
            (length, 0) if last is Result.PASS else (0, length)
        )
        assert health.serving is (expected is HealthState.HEALTHY)


# --- the state machine -------------------------------------------------------------


@pytest.mark.parametrize("initial", STATES)
@pytest.mark.parametrize(("healthy", "unhealthy"), list(itertools.product((1, 2, 3), repeat=2)))
def test_every_short_sequence_follows_the_spec(
    initial: HealthState, healthy: int, unhealthy: int
) -> None:
    for length in range(9):
        for events in itertools.product((PASS, FAIL), repeat=length):
            check_against_spec(events, healthy, unhealthy, initial)


@given(
    events=st.lists(st.sampled_from([PASS, FAIL, SEEN]), max_size=80),
    healthy=st.integers(1, 6),
    unhealthy=st.integers(1, 6),
    initial=st.sampled_from(STATES),
)
def test_long_sequences_follow_the_spec(
    events: list[str], healthy: int, unhealthy: int, initial: HealthState
) -> None:
    check_against_spec(events, healthy, unhealthy, initial)


def test_a_new_endpoint_is_unknown_and_not_serving() -> None:
    health = EndpointHealth(now=5.0)
    status = health.status()
    assert status.state is HealthState.UNKNOWN and not status.serving
    assert (status.last_result, status.reason, status.changed_at, status.checked_at) == (
        None,
        "",
        5.0,
        None,
    )


def test_unknown_needs_the_healthy_threshold_to_serve() -> None:
    health = EndpointHealth(healthy_threshold=2, unhealthy_threshold=3)
    assert not health.passed(1.0)
    assert health.state is HealthState.UNKNOWN
    assert health.passed(2.0)
    assert health.status().state is HealthState.HEALTHY and health.changed_at == 2.0


def test_the_reason_is_that_of_the_last_result() -> None:
    health = EndpointHealth(1, 1)
    health.failed("connection refused", 1.0)
    assert (health.last_result, health.reason) == (Result.FAIL, "connection refused")
    health.passed(2.0)
    assert (health.last_result, health.reason) == (Result.PASS, "")


def test_observed_failures_count_toward_the_threshold_only() -> None:
    health = EndpointHealth(2, 3, initial=HealthState.HEALTHY)
    assert not health.observed_failure(1.0, "reset")
    assert not health.failed("timeout", 2.0)
    assert health.observed_failure(3.0)
    assert health.state is HealthState.UNHEALTHY
    assert health.reason == OBSERVED
    health.observed_failure(4.0, "refused")
    assert health.reason == f"{OBSERVED}: refused"
    assert health.consecutive_failures == 4


def test_an_observed_failure_breaks_a_run_of_passes() -> None:
    health = EndpointHealth(2, 3, initial=HealthState.UNHEALTHY)
    health.passed(1.0)
    health.observed_failure(2.0)
    assert not health.passed(3.0)
    assert health.passed(4.0)


def test_reconfigure_applies_from_the_next_result() -> None:
    health = EndpointHealth(2, 5, initial=HealthState.HEALTHY)
    for now in range(3):
        health.failed("x", float(now))
    health.reconfigure(2, 3)
    assert health.state is HealthState.HEALTHY
    assert health.failed("x", 3.0)
    assert health.status().state is HealthState.UNHEALTHY


@pytest.mark.parametrize(("healthy", "unhealthy"), [(0, 1), (1, 0), (-1, 3)])
def test_thresholds_below_one_are_refused(healthy: int, unhealthy: int) -> None:
    with pytest.raises(InvalidInput):
        EndpointHealth(healthy, unhealthy)
    with pytest.raises(InvalidInput):
        EndpointHealth().reconfigure(healthy, unhealthy)


def test_for_check_takes_thresholds_and_none_is_healthy() -> None:
    check = HealthCheck(kind="tcp", healthy_threshold=1, unhealthy_threshold=4)
    health = EndpointHealth.for_check(check, now=0.0)
    assert health.state is HealthState.UNKNOWN
    assert health.passed(1.0)
    none = EndpointHealth.for_check(HealthCheck(kind="none"), now=0.0)
    assert none.serving


def test_status_to_dict() -> None:
    health = EndpointHealth(1, 1, now=0.0)
    health.failed("timeout", 1.5)
    assert health.status().to_dict() == {
        "state": "unhealthy",
        "serving": False,
        "last_result": "fail",
        "reason": "timeout",
        "consecutive_passes": 0,
        "consecutive_failures": 1,
        "changed_at": 1.5,
        "checked_at": 1.5,
    }


# --- the response head -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"HTTP/1.1 200 OK", 200),
        (b"HTTP/1.1 200 OK\r", 200),
        (b"HTTP/1.0 503 Service Unavailable", 503),
        (b"HTTP/1.1 204", 204),
        (b"HTTP/1.1 404 ", 404),
    ],
)
def test_status_of_a_status_line(line: bytes, status: int) -> None:
    assert status_of(line) == status


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"HTTP/2 200 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000",
        b"SSH-2.0-OpenSSH",
        b"HTTP/1.1 099",
    ],
)
def test_status_of_refuses_what_is_not_a_status_line(line: bytes) -> None:
    with pytest.raises(ResponseError, match="malformed"):
        status_of(line)


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@given(cuts=st.lists(st.integers(0, len(RESPONSE)), max_size=8))
def test_a_response_split_anywhere_gives_its_status_once_the_head_is_in(cuts: list[int]) -> None:
    reader = StatusReader()
    bounds = sorted({0, len(RESPONSE), *cuts})
    end_of_head = RESPONSE.index(b"\r\n\r\n") + 4
    for start, stop in itertools.pairwise(bounds):
        status = reader.feed(RESPONSE[start:stop])
        if status is not None:
            assert stop >= end_of_head
            return
        assert stop < end_of_head
    pytest.fail("no status")


def test_interim_heads_are_skipped() -> None:
    reader = StatusReader()
    assert reader.feed(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n") is None
    assert reader.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\n\r\n") == 500


def test_switching_protocols_is_final_and_bare_lf_is_accepted() -> None:
    assert StatusReader().feed(b"HTTP/1.1 101 Switching\r\n\r\n") == 101
    assert StatusReader().feed(b"HTTP/1.0 200 OK\nServer: old\n\n") == 200


def test_a_head_over_the_limit_is_refused() -> None:
    reader = StatusReader(max_head=64)
    assert reader.feed(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(ResponseError, match="over 64 bytes"):
        reader.feed(b"X-Padding: " + b"a" * 64)


def test_interim_heads_count_toward_the_limit() -> None:
    reader = StatusReader(max_head=100)
    with pytest.raises(ResponseError):
        for _ in range(10):
            reader.feed(b"HTTP/1.1 103 Early Hints\r\n\r\n")


@pytest.mark.parametrize("start", [b"SSH-2.0-OpenSSH_9.6\r\n", b"\x16\x03\x01", b"HTTP/1.1 OK\r\n"])
def test_a_peer_that_does_not_speak_http_is_caught_by_its_first_bytes(start: bytes) -> None:
    with pytest.raises(ResponseError, match="malformed"):
        StatusReader().feed(start)


def test_the_default_limit_is_sane() -> None:
    assert 4096 <= MAX_HEAD <= 65536


# --- the schedule ------------------------------------------------------------------


def test_first_delays_spread_over_the_interval() -> None:
    rng = random.Random(4)
    delays = [schedule.first_delay(2.0, rng) for _ in range(1000)]
    assert all(0 <= d < 2.0 for d in delays)
    buckets = {int(d / 0.2) for d in delays}
    assert buckets == set(range(10))


@given(
    scheduled=st.floats(0, 1e5),
    interval=st.floats(0.01, 100),
    late=st.floats(0, 1e4),
)
def test_next_deadline_is_the_next_slot_of_the_grid(
    scheduled: float, interval: float, late: float
) -> None:
    now = scheduled + late
    deadline = schedule.next_deadline(scheduled, interval, now)
    assert now < deadline <= now + interval * (1 + 1e-9) + 1e-6
    slots = (deadline - scheduled) / interval
    assert slots >= 1 - 1e-9
    assert abs(slots - round(slots)) < 1e-6 * max(1.0, slots)


def test_next_deadline_on_time_and_late() -> None:
    assert schedule.next_deadline(10.0, 2.0, 10.5) == 12.0
    assert schedule.next_deadline(10.0, 2.0, 15.0) == 16.0
    assert schedule.next_deadline(10.0, 2.0, 16.0) == 18.0


# --- convergence -------------------------------------------------------------------


def test_detection_and_recovery_bounds_of_the_default_check() -> None:
    check = HealthCheck()  # interval 2, timeout 1, healthy 2, unhealthy 3
    assert convergence.expected_detection_time(check) == (4.0, 7.0)
    assert convergence.expected_recovery_time(check) == (2.0, 4.0)


def test_kind_none_never_detects_and_never_waits() -> None:
    check = HealthCheck(kind="none")
    assert convergence.expected_detection_time(check) == (math.inf, math.inf)
    assert convergence.expected_recovery_time(check) == (0.0, 0.0)


def simulate_detection(check: HealthCheck, death: float, fail_after: float) -> float:
    """Checks start every interval from 0; the endpoint dies at ``death``."""
    health = EndpointHealth.for_check(check, initial=HealthState.HEALTHY, now=0.0)
    for k in range(math.ceil(death / check.interval) + check.unhealthy_threshold + 1):
        start = k * check.interval
        if start < death:
            health.passed(start)
        elif health.failed("x", start + fail_after):
            return start + fail_after - death
    raise AssertionError("never detected")


def simulate_recovery(check: HealthCheck, revival: float) -> float:
    health = EndpointHealth.for_check(check, initial=HealthState.UNHEALTHY, now=0.0)
    for k in range(math.ceil(revival / check.interval) + check.healthy_threshold + 1):
        start = k * check.interval
        if start < revival:
            health.failed("x", start)
        elif health.passed(start):
            return start - revival
    raise AssertionError("never recovered")


checks = st.builds(
    HealthCheck,
    kind=st.sampled_from(["tcp", "http"]),
    interval=st.floats(0.1, 10),
    healthy_threshold=st.integers(1, 5),
    unhealthy_threshold=st.integers(1, 5),
).flatmap(lambda c: st.builds(lambda f: _with_timeout(c, f), st.floats(0.01, 1.0)))


def _with_timeout(check: HealthCheck, fraction: float) -> HealthCheck:
    return HealthCheck(
        kind=check.kind,
        interval=check.interval,
        timeout=check.interval * fraction,
        healthy_threshold=check.healthy_threshold,
        unhealthy_threshold=check.unhealthy_threshold,
    )


@given(check=checks, death=st.floats(0.001, 50), slowness=st.floats(0, 1))
def test_simulated_detection_falls_within_the_bounds(
    check: HealthCheck, death: float, slowness: float
) -> None:
    low, high = convergence.expected_detection_time(check)
    took = simulate_detection(check, death, slowness * check.timeout)
    assert low - 1e-6 <= took <= high + 1e-6


@given(check=checks, revival=st.floats(0.001, 50))
def test_simulated_recovery_falls_within_the_bounds(check: HealthCheck, revival: float) -> None:
    low, high = convergence.expected_recovery_time(check)
    assert low - 1e-6 <= simulate_recovery(check, revival) <= high + 1e-6


# --- the public surface ------------------------------------------------------------

MODULES = [
    "podnet.health",
    "podnet.health.connect",
    "podnet.health.convergence",
    "podnet.health.monitor",
    "podnet.health.probe",
    "podnet.health.response",
    "podnet.health.schedule",
    "podnet.health.state",
]


@pytest.mark.parametrize("name", MODULES)
def test_exported_names_exist_once(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(set(module.__all__))
    for export in module.__all__:
        assert hasattr(module, export), export
