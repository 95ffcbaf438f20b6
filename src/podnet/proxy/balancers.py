"""Endpoint and backend pickers. Pure: candidates, state and a random source in, a choice out.

* :class:`SmoothWeighted` is nginx's smooth weighted round robin
  (``ngx_http_upstream_get_peer``): every pick adds each item's weight to its
  current value, takes the largest, and subtracts the total from it. From all
  zeros the state returns to all zeros after ``sum(weights)`` picks, in which
  each item is picked exactly ``weight`` times; so *any* window of
  ``sum(weights)`` consecutive picks is exact, and heavy items are spread out
  (5:1:1 gives a a b a c a a, not a a a a a b c).
* :func:`smooth_pick` is the same step over a changing candidate subset (an
  endpoint list minus ejected/tried ones), with the current values kept on the
  candidates themselves, as nginx keeps them on its peers.
* :func:`p2c_least_request`: power of two choices on in-flight requests
  (ties go to the heavier endpoint); O(1), and avoids the herd a global
  least-request pick sends to one freshly idle endpoint.
* :class:`PeakEwma` + :func:`p2c_peak_ewma`: Finagle's peak EWMA. Latency
  samples above the current estimate replace it at once (the peak), lower
  ones are blended in with weight ``1 - exp(-dt/DECAY)``; the estimate also
  decays toward 0 while nothing is observed, so an endpoint once slow is tried
  again. Load is ``cost * (in_flight + 1)``; a cost of 0 with requests in
  flight costs PENALTY, so a never-measured endpoint cannot take everything.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = [
    "DECAY",
    "PENALTY",
    "Candidate",
    "PeakEwma",
    "SmoothWeighted",
    "p2c_least_request",
    "p2c_peak_ewma",
    "smooth_pick",
]

#: Seconds: the time constant of the latency EWMA (Finagle's default decay time).
DECAY = 10.0
#: Load of an endpoint with no latency estimate and requests in flight (seconds).
PENALTY = 1e6


class SmoothWeighted:
    """Smooth weighted round robin over a fixed list of weights (indexes out).

    Weight-0 items are never picked. ``current`` is the state; a router copies
    it to the next snapshot when the weights did not change.
    """

    __slots__ = ("current", "total", "weights")

    def __init__(self, weights: Sequence[int], current: Sequence[int] | None = None) -> None:
        if any(w < 0 for w in weights):
            raise ValueError(f"negative weight in {list(weights)}")
        self.weights = tuple(weights)
        self.total = sum(self.weights)
        if current is not None and len(current) == len(self.weights):
            self.current = list(current)
        else:
            self.current = [0] * len(self.weights)

    def next(self) -> int:
        """The index of the next item; -1 when every weight is 0."""
        current = self.current
        weights = self.weights
        best = -1
        best_value = 0
        for i in range(len(weights)):
            weight = weights[i]
            if weight:
                value = current[i] + weight
                current[i] = value
                if best < 0 or value > best_value:
                    best = i
                    best_value = value
        if best >= 0:
            current[best] = best_value - self.total
        return best


class PeakEwma:
    """Finagle's peak-sensitive EWMA of latency, in seconds."""

    __slots__ = ("cost", "stamp")

    def __init__(self, cost: float = 0.0, stamp: float = 0.0) -> None:
        self.cost = cost
        self.stamp = stamp

    def observe(self, rtt: float, now: float) -> None:
        cost = self.value(now)
        if rtt > cost:
            self.cost = rtt
        else:
            weight = math.exp(-max(now - self.stamp, 0.0) / DECAY)
            self.cost = self.cost * weight + rtt * (1.0 - weight)
        self.stamp = now

    def value(self, now: float) -> float:
        """The estimate at ``now``: decayed toward 0 since the last sample."""
        elapsed = now - self.stamp
        if elapsed <= 0.0:
            return self.cost
        return self.cost * math.exp(-elapsed / DECAY)


class Candidate(Protocol):
    """What the pickers read (and smooth_pick writes) on an endpoint."""

    in_flight: int
    weight: int
    ewma: PeakEwma
    current_weight: int


C = TypeVar("C", bound=Candidate)


def smooth_pick(candidates: Sequence[C]) -> C | None:
    """One smooth-WRR step over ``candidates`` (all with weight > 0)."""
    best: C | None = None
    total = 0
    for cand in candidates:
        weight = cand.weight
        cand.current_weight += weight
        total += weight
        if best is None or cand.current_weight > best.current_weight:
            best = cand
    if best is not None:
        best.current_weight -= total
    return best


def _two(n: int, rng: random.Random) -> tuple[int, int]:
    """Two distinct uniform indexes below ``n`` (n >= 2)."""
    i = int(rng.random() * n)
    j = int(rng.random() * (n - 1))
    if j >= i:
        j += 1
    return i, j


def p2c_least_request(candidates: Sequence[C], rng: random.Random) -> C | None:
    """Fewer requests in flight wins; on a tie the heavier endpoint wins."""
    n = len(candidates)
    if n <= 1:
        return candidates[0] if n else None
    i, j = _two(n, rng)
    a = candidates[i]
    b = candidates[j]
    if b.in_flight < a.in_flight or (b.in_flight == a.in_flight and b.weight > a.weight):
        return b
    return a


def _load(cand: Candidate, now: float) -> float:
    cost = cand.ewma.value(now)
    if cost == 0.0 and cand.in_flight:
        return PENALTY + cand.in_flight
    return cost * (cand.in_flight + 1)


def p2c_peak_ewma(candidates: Sequence[C], rng: random.Random, now: float) -> C | None:
    """Lower ``ewma * (in_flight + 1)`` wins (P2C, as Finagle and linkerd do)."""
    n = len(candidates)
    if n <= 1:
        return candidates[0] if n else None
    i, j = _two(n, rng)
    a = candidates[i]
    b = candidates[j]
    return b if _load(b, now) < _load(a, now) else a
