"""Pickers: smooth weighted round robin (exactness, interleaving), P2C least-request, peak EWMA."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.proxy.balancers import (
    DECAY,
    PENALTY,
    PeakEwma,
    SmoothWeighted,
    p2c_least_request,
    p2c_peak_ewma,
    smooth_pick,
)

weights_lists = st.lists(st.integers(0, 12), min_size=1, max_size=7).filter(any)


class Ep:
    """A minimal Candidate."""

    def __init__(self, name: str, weight: int = 1, in_flight: int = 0, cost: float = 0.0) -> None:
        self.name = name
        self.weight = weight
        self.in_flight = in_flight
        self.ewma = PeakEwma(cost, 0.0)
        self.current_weight = 0

    def __repr__(self) -> str:
        return self.name


def test_nginx_sequence_for_5_1_1() -> None:
    wrr = SmoothWeighted([5, 1, 1])
    assert "".join("abc"[wrr.next()] for _ in range(14)) == "aabacaa" * 2


@settings(max_examples=200, deadline=None)
@given(weights_lists, st.integers(0, 30))
def test_every_window_of_total_picks_is_exact(weights: list[int], offset: int) -> None:
    wrr = SmoothWeighted(weights)
    total = sum(weights)
    for _ in range(offset):
        wrr.next()
    picks = [wrr.next() for _ in range(2 * total)]
    for start in range(total + 1):
        counts = Counter(picks[start : start + total])
        assert [counts[i] for i in range(len(weights))] == weights


@settings(max_examples=200, deadline=None)
@given(weights_lists)
def test_no_item_runs_ahead_of_its_share(weights: list[int]) -> None:
    """Interleaving: after k picks item i has fewer than k*w_i/W + 1 picks, so a
    heavy item cannot take its whole share in one burst."""
    wrr = SmoothWeighted(weights)
    total = sum(weights)
    counts = [0] * len(weights)
    for k in range(1, 3 * total + 1):
        counts[wrr.next()] += 1
        for i, weight in enumerate(weights):
            assert counts[i] < k * weight / total + 1


def test_weight_zero_never_picked_and_all_zero_gives_minus_one() -> None:
    wrr = SmoothWeighted([0, 3, 0, 1])
    assert {wrr.next() for _ in range(40)} == {1, 3}
    assert SmoothWeighted([0, 0]).next() == -1
    assert SmoothWeighted([]).next() == -1
    with pytest.raises(ValueError):
        SmoothWeighted([1, -1])


def test_state_can_be_carried_over() -> None:
    a = SmoothWeighted([3, 2])
    first = [a.next() for _ in range(2)]
    b = SmoothWeighted([3, 2], a.current)
    rest = [b.next() for _ in range(3)]
    assert Counter(first + rest) == {0: 3, 1: 2}
    assert SmoothWeighted([3, 2], [1, 2, 3]).current == [0, 0]  # wrong length: fresh


def test_smooth_pick_over_a_subset_stays_proportional() -> None:
    eps = [Ep("a", 3), Ep("b", 1), Ep("c", 2)]
    picks = Counter(smooth_pick(eps) for _ in range(600))
    assert picks == {eps[0]: 300, eps[1]: 100, eps[2]: 200}
    sub = [eps[1], eps[2]]
    picks = Counter(smooth_pick(sub) for _ in range(300))
    assert picks[eps[1]] in range(99, 102) and picks[eps[2]] in range(199, 202)
    assert smooth_pick([]) is None


def test_least_request_prefers_fewer_in_flight() -> None:
    rng = random.Random(1)
    busy, idle = Ep("busy", in_flight=5), Ep("idle", in_flight=1)
    assert all(p2c_least_request([busy, idle], rng) is idle for _ in range(50))
    heavy, light = Ep("heavy", weight=5, in_flight=2), Ep("light", weight=1, in_flight=2)
    assert all(p2c_least_request([light, heavy], rng) is heavy for _ in range(50))
    assert p2c_least_request([busy], rng) is busy
    assert p2c_least_request([], rng) is None


def test_least_request_samples_two_distinct_and_spreads() -> None:
    rng = random.Random(7)
    eps = [Ep(str(i)) for i in range(5)]
    counts = Counter(p2c_least_request(eps, rng) for _ in range(5000))
    assert set(counts) == set(eps)
    # The busiest of many is never chosen: it loses against any partner.
    eps[0].in_flight = 9
    assert eps[0] not in {p2c_least_request(eps, rng) for _ in range(500)}


def test_peak_ewma_jumps_to_peaks_and_decays_down() -> None:
    ewma = PeakEwma(0.010, 0.0)
    ewma.observe(0.100, 1.0)
    assert ewma.cost == 0.100  # a peak replaces the estimate at once
    ewma.observe(0.010, 1.0 + DECAY)  # one time constant later: weight e^-1
    expected_value = 0.100 * math.exp(-1)
    assert ewma.cost == pytest.approx(expected_value + 0.010 * (1 - math.exp(-1)))
    # Without samples the estimate decays toward 0.
    assert ewma.value(1.0 + 3 * DECAY) == pytest.approx(ewma.cost * math.exp(-2))
    assert ewma.value(0.0) == ewma.cost  # the past: no decay


def test_peak_ewma_picks_lower_load_and_penalises_unmeasured_busy() -> None:
    rng = random.Random(3)
    fast, slow = Ep("fast", cost=0.01), Ep("slow", cost=0.05)
    assert all(p2c_peak_ewma([slow, fast], rng, 0.0) is fast for _ in range(50))
    fast.in_flight = 9  # 0.01 * 10 > 0.05 * 1
    assert all(p2c_peak_ewma([slow, fast], rng, 0.0) is slow for _ in range(50))
    fresh = Ep("fresh", cost=0.0, in_flight=1)
    assert all(p2c_peak_ewma([fresh, slow], rng, 0.0) is slow for _ in range(50))
    fresh.in_flight = 0
    assert all(p2c_peak_ewma([fresh, slow], rng, 0.0) is fresh for _ in range(50))
    assert PENALTY > 1000
    assert p2c_peak_ewma([], rng, 0.0) is None
