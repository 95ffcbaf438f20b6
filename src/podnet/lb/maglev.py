"""Maglev consistent hashing: the lookup table behind podnet's L4 balancer.

Theory of operation
-------------------
This follows Eisenbud et al., "Maglev: A Fast and Reliable Software Network
Load Balancer" (NSDI 2016), section 3.4. A table of ``M`` slots (``M`` prime)
maps a flow hash to a backend: ``slot = flow_hash mod M``. The kernel does the
hashing and the lookup (the table is rendered into an nftables map); this
module only decides which backend owns each slot. It is pure: values in,
values out, no I/O.

1. *Preferences.* Every backend gets a permutation of ``0..M-1`` from two
   stable 64-bit hashes of its name: ``offset = h1 mod M``,
   ``skip = h2 mod (M-1) + 1`` and ``permutation[j] = (offset + j*skip) mod M``.
   Because ``M`` is prime, every ``skip`` is coprime to ``M``, so the sequence
   visits each slot exactly once. The hashes are keyed BLAKE2b, never Python's
   salted ``hash()``, so every process and every node builds the same table.

2. *Population.* Backends take turns; on its turn a backend walks its
   permutation from where it stopped last time (the paper's ``next[i]``) to its
   first empty slot and claims it. Every turn fills exactly one slot, so the
   table is full after exactly ``M`` turns. Only the walking position is kept
   per backend; permutations are never materialised.

3. *Turn order.* Backends are sorted by name, so the input order never matters.
   With equal weights the turns go round robin, exactly as in the paper, and
   every backend ends with ``floor(M/N)`` or ``ceil(M/N)`` slots. With weights,
   turn ``k+1`` of backend ``i`` is due at virtual time ``(k+1)/w_i`` and turns
   are taken in order of due time, ties by name (the D'Hondt sequence: a
   weight-2 backend takes two turns for each turn of a weight-1 backend, and
   scaling all weights changes nothing). Unlike "w consecutive turns per round",
   this stays fair even when the weights add up to more than ``M``. With ``N``
   backends of total weight ``W``, backend ``i`` ends with ``s_i`` slots where
   ``M*w_i/W - 1 <= s_i <= (M+N)*w_i/W``. Proof: let ``t`` be the due time of
   the last turn taken. Taken turns are due by ``t``, so ``s_i <= t*w_i``; the
   next turn of ``i``, due at ``(s_i+1)/w_i``, was not taken, so
   ``s_i >= t*w_i - 1``. Summing over ``i`` gives ``M/W <= t <= (M+N)/W``.
   Weight 0 means no turns, no slots.

4. *Disruption.* When a backend leaves, its slots go to the others, and a few
   slots of the others move too, because a backend that found a freed slot
   early in its permutation stops before claiming its later ones. Two backends
   that happen to share a ``skip`` walk the same cycle and can trade a larger
   block of slots. Maglev is therefore not minimally disruptive (section 3.4),
   only close to it when ``M`` is large; :func:`diff` counts the slots that moved.

Choose ``M`` prime, larger than the number of backends, and for good balance at
least ``100 * N``. The default, 65537, suits services of up to ~650 backends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import NamedTuple

from podnet.errors import InvalidInput

__all__ = [
    "DEFAULT_M",
    "MAX_M",
    "Backend",
    "MaglevTable",
    "Permutation",
    "build_table",
    "check_size",
    "diff",
    "permutation_for",
    "populate",
]

#: Default table size: prime, and large enough for ~650 backends at 100 slots each.
DEFAULT_M = 65537

#: Largest table size accepted. A table becomes one nftables map element per
#: slot, and maps of tens of millions of elements are impractical to load.
MAX_M = 1 << 24

# Slots per backend recommended for good balance: with M >= 100*N, floor(M/N)
# and ceil(M/N) slots differ by at most 1% (the paper's rule of thumb).
_SLOTS_PER_BACKEND = 100

# BLAKE2b personalisation strings (at most 16 bytes) make h1 and h2 independent
# hash functions. Changing them reshuffles every flow of every service.
_PERSON_OFFSET = b"podnet.maglev.h1"
_PERSON_SKIP = b"podnet.maglev.h2"


@dataclass(frozen=True, slots=True)
class Backend:
    """One endpoint of a service as Maglev sees it.

    Args:
        name: stable identity of the endpoint (e.g. ``"10.0.0.5:80"``); it seeds
            the endpoint's permutation, so renaming an endpoint moves its flows.
        weight: relative share of slots; 0 keeps the endpoint out of the table.

    Raises:
        InvalidInput: the name is empty or the weight is not a non-negative int.
    """

    name: str
    weight: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInput(
                f"Maglev backend name {self.name!r} is not valid",
                hint="give every backend a non-empty name, e.g. its address:port",
            )
        if not _is_int(self.weight) or self.weight < 0:
            raise InvalidInput(
                f"Maglev backend {self.name!r} has weight {self.weight!r}",
                hint="use a whole number >= 0 (0 takes the backend out of rotation)",
            )


class Permutation(NamedTuple):
    """A backend's preference list in closed form: ``(offset + j*skip) mod M``."""

    offset: int
    skip: int


@dataclass(frozen=True, slots=True)
class MaglevTable:
    """A populated Maglev lookup table.

    Attributes:
        m: number of slots (prime).
        backends: every backend given, sorted by name (weight 0 ones included).
        slots: for each slot, the index into ``backends`` of its owner.
    """

    m: int
    backends: tuple[Backend, ...]
    slots: tuple[int, ...] = field(repr=False)

    def lookup(self, flow_hash: int) -> str:
        """Return the name of the backend that serves a flow.

        Args:
            flow_hash: the flow's hash; it is reduced modulo ``m``.

        Returns:
            The backend's name.
        """
        return self.backends[self.slots[flow_hash % self.m]].name

    def names(self) -> list[str]:
        """Return the owner's name for every slot, in slot order."""
        backends = self.backends
        return [backends[i].name for i in self.slots]

    def counts(self) -> dict[str, int]:
        """Return how many slots each backend owns (0 for weight-0 backends)."""
        per_index = [0] * len(self.backends)
        for i in self.slots:
            per_index[i] += 1
        return {b.name: n for b, n in zip(self.backends, per_index, strict=True)}


def build_table(backends: Iterable[Backend], m: int = DEFAULT_M) -> MaglevTable:
    """Build the Maglev table for a set of backends.

    The result depends only on the set of (name, weight) pairs and ``m``: not on
    input order, the process, or the machine.

    Args:
        backends: the service's backends; names must be unique.
        m: table size; prime, larger than the number of backends with a positive
            weight, and for good balance at least 100 times that number.

    Returns:
        The populated table.

    Raises:
        InvalidInput: ``m`` is not a prime larger than the number of backends,
            names repeat, or no backend has a positive weight.
    """
    ordered = tuple(sorted(backends, key=lambda b: b.name))
    _check_unique(ordered)
    active = [i for i, b in enumerate(ordered) if b.weight > 0]
    if not active:
        raise InvalidInput(
            "a Maglev table needs at least one backend with a positive weight",
            hint="render a reject rule for a service without endpoints instead",
        )
    check_size(m, len(active))
    perms = [permutation_for(ordered[i].name, m) for i in active]
    weights = [ordered[i].weight for i in active]
    compact = populate(perms, m, weights)
    slots = tuple(active[i] for i in compact)
    return MaglevTable(m=m, backends=ordered, slots=slots)


def permutation_for(name: str, m: int) -> Permutation:
    """Return the stable permutation of a backend name for a table of size ``m``.

    Args:
        name: the backend's name.
        m: the table size (prime).

    Returns:
        ``Permutation(offset = h1(name) mod m, skip = h2(name) mod (m-1) + 1)``.
    """
    data = name.encode()
    h1 = hashlib.blake2b(data, digest_size=8, person=_PERSON_OFFSET).digest()
    h2 = hashlib.blake2b(data, digest_size=8, person=_PERSON_SKIP).digest()
    offset = int.from_bytes(h1, "big") % m
    skip = int.from_bytes(h2, "big") % (m - 1) + 1
    return Permutation(offset, skip)


def populate(
    permutations: Sequence[tuple[int, int]],
    m: int,
    weights: Sequence[int] | None = None,
) -> list[int]:
    """Fill a table of ``m`` slots from explicit permutations (section 3.4).

    This is the algorithm without the hashing, so that known vectors (such as
    Table 1 of the paper) can be checked exactly. Backend ``i`` is
    ``permutations[i]``; with equal weights turns go ``0, 1, ..., N-1, 0, ...``.

    Args:
        permutations: ``(offset, skip)`` per backend, in turn order, with
            ``0 <= offset < m`` and ``1 <= skip < m``.
        m: table size; a prime larger than the number of backends.
        weights: positive weight per backend; ``None`` means all equal.

    Returns:
        For each slot, the index of the backend that owns it.

    Raises:
        InvalidInput: ``m`` is not a suitable prime, a permutation is out of
            range, or the weights do not match the backends.
    """
    check_size(m, len(permutations))
    for offset, skip in permutations:
        if not (_is_int(offset) and _is_int(skip) and 0 <= offset < m and 1 <= skip < m):
            raise InvalidInput(
                f"Maglev permutation (offset={offset}, skip={skip}) does not fit M={m}",
                hint=f"use 0 <= offset < {m} and 1 <= skip < {m}",
            )
    order = _turns(_check_weights(weights, len(permutations)), m)
    return _fill(permutations, m, order)


def diff(old: MaglevTable, new: MaglevTable) -> int:
    """Count the slots whose backend changed between two tables.

    Backends are compared by name, so indices may differ between the tables.

    Args:
        old: the table before the change.
        new: the table after it.

    Returns:
        The number of slots (hence the share of flows, times ``m``) that moved.

    Raises:
        InvalidInput: the tables have different sizes (then every flow may move).
    """
    if old.m != new.m:
        raise InvalidInput(
            f"cannot compare Maglev tables of sizes {old.m} and {new.m}",
            hint="keep M fixed for a service; resizing moves almost every flow",
        )
    return sum(a != b for a, b in zip(old.names(), new.names(), strict=True))


def check_size(m: int, n: int) -> None:
    """Check that ``m`` is a valid table size for ``n`` backends.

    Args:
        m: the proposed table size.
        n: the number of backends that will take slots.

    Raises:
        InvalidInput: ``m`` is not a prime in ``(n, MAX_M]`` or there are no
            backends; the hint names a prime to use instead.
    """
    if n < 1:
        raise InvalidInput(
            "a Maglev table needs at least one backend",
            hint="render a reject rule for a service without endpoints instead",
        )
    if not _is_int(m) or not 2 <= m <= MAX_M:
        raise InvalidInput(
            f"Maglev table size M={m!r} is not a whole number from 2 to {MAX_M}",
            hint=f"use a prime between {n + 1} and {MAX_M}, such as {_suggest(n)}",
        )
    if not _is_prime(m):
        raise InvalidInput(
            f"Maglev table size M={m} is not a prime number",
            hint=f"use a prime such as {_suggest(n)}",
        )
    if m <= n:
        raise InvalidInput(
            f"Maglev table size M={m} is not larger than the number of backends ({n})",
            hint=f"use a prime of at least 100 slots per backend, such as {_suggest(n)}",
        )


def _suggest(n: int) -> int:
    """Return a table size with good balance for ``n`` backends."""
    wanted = _SLOTS_PER_BACKEND * n
    return DEFAULT_M if wanted <= DEFAULT_M else _next_prime(wanted)


def _fill(permutations: Sequence[tuple[int, int]], m: int, order: Iterable[int]) -> list[int]:
    # The hot loop: about M*ln(M) probes in total. Kept flat and local for CPython.
    table = [-1] * m
    pos = [offset for offset, _ in permutations]
    skips = [skip for _, skip in permutations]
    for i in order:
        c = pos[i]
        s = skips[i]
        while table[c] >= 0:
            c += s
            if c >= m:
                c -= m
        table[c] = i
        c += s
        pos[i] = c - m if c >= m else c
    return table


def _turns(weights: Sequence[int], m: int) -> list[int]:
    """Return the first ``m`` turns: backend ``i``'s ``k``-th turn is due at ``k/w_i``."""
    n = len(weights)
    if len(set(weights)) <= 1:
        return (list(range(n)) * (m // n + 1))[:m]
    # Exact integer due times: with scale >= w_i*w_j, floor(k*scale/w) keeps the
    # order of distinct fractions k/w (they differ by >= 1/(w_i*w_j)) and their ties.
    scale = max(weights) ** 2
    total = sum(weights)
    events: list[int] = []
    for i, w in enumerate(weights):
        # A backend takes at most (m+n)*w/total turns (see the module docstring).
        last = (m + n) * w // total
        events.extend((k * scale // w) * n + i for k in range(1, last + 1))
    events.sort()
    return [e % n for e in events[:m]]


def _check_weights(weights: Sequence[int] | None, n: int) -> list[int]:
    if weights is None:
        return [1] * n
    if len(weights) != n:
        raise InvalidInput(
            f"got {len(weights)} Maglev weights for {n} backends",
            hint="give one weight per permutation, or none",
        )
    for w in weights:
        if not _is_int(w) or w <= 0:
            raise InvalidInput(
                f"Maglev weight {w!r} is not a positive whole number",
                hint="leave weight-0 backends out of the permutations",
            )
    return list(weights)


def _check_unique(backends: Sequence[Backend]) -> None:
    for a, b in pairwise(backends):
        if a.name == b.name:
            raise InvalidInput(
                f"Maglev backend {a.name!r} is listed more than once",
                hint="give each backend once; merge duplicates by adding their weights",
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def _next_prime(n: int) -> int:
    while not _is_prime(n):
        n += 1
    return n
