"""Endpoint choice: weighted slots, weighted rules, and Maglev tables.

Theory of operation
-------------------
*Slots* (random and round robin, the common case): endpoint ``i`` of weight
``w_i`` owns ``w_i`` of ``W`` slots in a backend map, and the service chain
DNATs through ``numgen random mod W`` or ``numgen inc mod W`` — one lookup,
exact weights. :func:`weighted_slots` divides the weights by their greatest
common divisor; past :data:`MAX_SLOTS` slots (or one per endpoint, if more)
they are rounded by D'Hondt, every endpoint keeping at least one slot, so no
share is off by more than one slot. Slots are interleaved (endpoint ``i``'s
``k``-th slot sits at ``k / w_i``), so round robin has no runs.

*Rules* (random and round robin with client-IP affinity, whose chosen
endpoint must record the client): one rule per endpoint, each ending in that
endpoint's action::

    numgen random mod 6 < 1 … dnat to A      weights A=1, B=2, C=3
    numgen random mod 5 < 2 … dnat to B
    … dnat to C

Rule ``i`` matches with probability ``w_i / R_i`` where ``R_i`` is the weight
left (``w_i + … + w_n``), so endpoint ``i`` is chosen with probability
``(R_i / R_0) * (w_i / R_i) = w_i / W``: exact weights. With ``numgen inc``
every rule keeps its own counter, which advances only when the rule is
evaluated; rule ``i`` takes the first ``w_i`` of every ``R_i`` packets that
reach it, so every run of ``W`` new connections gives endpoint ``i`` exactly
``w_i`` of them. Weights must add up to less than ``2**32`` (nft's modulus)
after dividing by their greatest common divisor.

Why neither is kube-proxy's ``numgen … vmap { 0 : goto ep-a, … }``: each
inline map is an anonymous set, and the kernel names a new one by scanning
every set of the table with ``sscanf`` — quadratic in the number of
services. Measured with nft 1.0.6 on Linux 6.18: 10,000 services of 10
endpoints in kube-proxy's layout loaded in 70 s with those maps and in 6 s
with the same chains and rules minus the maps.

*Maglev* needs a lookup table: :func:`maglev_slots` picks its size ``M`` and
:func:`maglev_owners` fills it with :func:`podnet.lb.maglev.build_table`. The
size grows in steps, not with every endpoint — ``M`` is the smallest prime at
least ``100 * P`` where ``P`` is the number of endpoints rounded up to a power
of two and at least 16 (so every service of up to 16 endpoints has 1601
slots), capped — because a table of a new size moves nearly every flow,
while a table of the same size moves only about ``1/N`` of them per endpoint
that comes or goes (the point of Maglev).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from podnet.errors import InvalidInput
from podnet.lb.maglev import Backend, build_table

__all__ = ["MAX_SLOTS", "maglev_owners", "maglev_slots", "weighted_rules", "weighted_slots"]

#: Most slots one service port spreads its endpoints over (more when it has
#: more endpoints than this: one slot each).
MAX_SLOTS = 256

_MODULUS_LIMIT = 1 << 32
_SLOTS_PER_ENDPOINT = 100
_NUMGEN = {"random": "numgen random", "roundrobin": "numgen inc"}


def weighted_rules(policy: str, choices: Sequence[tuple[int, str]]) -> list[str]:
    """Rule expressions that pick one of ``choices`` by weight.

    Args:
        policy: ``"random"`` or ``"roundrobin"``.
        choices: ``(weight, action)`` pairs, weights positive; the action ends
            the rule (e.g. a DNAT statement).

    Returns:
        One rule per choice, the last one unconditional; none for no choice.

    Raises:
        InvalidInput: an unknown policy, a weight below 1, or weights that add
            up to ``2**32`` or more after dividing by their common divisor.
    """
    if policy not in _NUMGEN:
        raise InvalidInput(
            f"balancing policy {policy!r} has no rule form", hint="use random or roundrobin"
        )
    weights = [w for w, _ in choices]
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in weights):
        raise InvalidInput(f"endpoint weights {weights} must be whole numbers of at least 1")
    divisor = math.gcd(*weights) if weights else 1
    left = sum(weights) // divisor
    if left >= _MODULUS_LIMIT:
        raise InvalidInput(
            f"endpoint weights add up to {left}, more than nft's 32-bit counter holds",
            hint="scale the weights down",
        )
    rules = []
    gen = _NUMGEN[policy]
    for weight, action in choices[:-1]:
        share = weight // divisor
        rules.append(f"{gen} mod {left} < {share} {action}")
        left -= share
    if choices:
        rules.append(choices[-1][1])
    return rules


def weighted_slots(weights: Sequence[int], cap: int = MAX_SLOTS) -> list[int]:
    """Slots for ``numgen … mod len(slots)``: the endpoint (an index into
    ``weights``) that owns each, in an interleaved order.

    Endpoint ``i`` owns ``w_i / g`` slots (``g`` the weights' greatest common
    divisor) while they add up to at most ``max(cap, len(weights))``; past
    that, each keeps one slot and the rest go by D'Hondt (highest
    ``w_i / (s_i + 1)`` next), so every share is within one slot of exact.
    The order is the smooth one — endpoint ``i``'s ``k``-th slot comes at
    ``k / w_i`` — so ``numgen inc`` round-robins without runs.

    Raises:
        InvalidInput: a weight below 1.
    """
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in weights):
        raise InvalidInput(f"endpoint weights {list(weights)} must be whole numbers of at least 1")
    if len(set(weights)) <= 1:
        return list(range(len(weights)))
    divisor = math.gcd(*weights)
    shares = [w // divisor for w in weights]
    limit = max(cap, len(shares))
    if sum(shares) > limit:
        shares = _dhondt(shares, limit)
    turns = sorted((k / w, i) for i, w in enumerate(shares) for k in range(w))
    return [i for _, i in turns]


def _dhondt(weights: list[int], seats: int) -> list[int]:
    held = [1] * len(weights)
    queue = [(-w / 2, i) for i, w in enumerate(weights)]
    heapq.heapify(queue)
    for _ in range(seats - len(weights)):
        _, i = heapq.heappop(queue)
        held[i] += 1
        heapq.heappush(queue, (-weights[i] / (held[i] + 1), i))
    return held


#: Services with up to this many endpoints share one Maglev size (1601 slots).
MAGLEV_MIN_BUCKET = 16


def maglev_slots(endpoints: int, cap: int) -> int:
    """The Maglev table size for ``endpoints`` endpoints (see the module doc).

    Args:
        endpoints: how many endpoints take slots (at least 1).
        cap: the largest size allowed (a prime).

    Returns:
        A prime larger than ``endpoints``.
    """
    if endpoints < 1:
        raise InvalidInput("a Maglev table needs at least one endpoint")
    # A new size moves nearly every flow, so sizes come in few steps: every
    # service of up to MAGLEV_MIN_BUCKET endpoints shares one, and a service
    # losing or gaining an endpoint below that keeps its table size.
    bucket = max(1 << (endpoints - 1).bit_length(), MAGLEV_MIN_BUCKET)
    size = min(_next_prime(_SLOTS_PER_ENDPOINT * bucket), cap)
    return size if size > endpoints else _next_prime(endpoints + 1)


def maglev_owners(weights: Sequence[tuple[str, int]], slots: int) -> list[str]:
    """The owner of every slot of a Maglev table, by name.

    Args:
        weights: ``(name, weight)`` per endpoint; names unique, weights >= 1.
        slots: the table size (a prime larger than the number of endpoints).

    Returns:
        ``slots`` names, slot 0 first.
    """
    table = build_table((Backend(name, weight) for name, weight in weights), slots)
    return table.names()


def _next_prime(n: int) -> int:
    n = max(n, 2)
    while any(n % f == 0 for f in range(2, math.isqrt(n) + 1)):
        n += 1
    return n
