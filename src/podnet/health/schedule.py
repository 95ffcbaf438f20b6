"""When each endpoint's next check runs: pure arithmetic, no clock.

Each target gets a random phase in ``[0, interval)`` when it starts, then
runs on a fixed grid ``phase + k * interval`` (what Kubernetes' prober does:
jitter the first probe, then tick). So 1,000 endpoints with the same interval
spread evenly over it instead of firing at once, and stay spread: a check
that overran its slot (queued behind the concurrency limit) skips the slots
it missed rather than bunching up behind the others.
"""

from __future__ import annotations

import math
import random

__all__ = ["first_delay", "next_deadline"]


def first_delay(interval: float, rng: random.Random) -> float:
    """The delay before a new target's first check: uniform in ``[0, interval)``."""
    return rng.random() * interval


def next_deadline(scheduled: float, interval: float, now: float) -> float:
    """The first slot of the grid through ``scheduled`` that is after ``now``.

    Args:
        scheduled: when the check that just ran was due.
        interval: the grid's step, above 0.
        now: the current time on the same clock.
    """
    deadline = scheduled + interval
    if deadline > now:
        return deadline
    deadline += (math.floor((now - deadline) / interval) + 1) * interval
    return deadline if deadline > now else deadline + interval  # rounding put it on now
