"""Pure load-balancing logic: Maglev consistent hashing (no I/O)."""

from podnet.lb.maglev import (
    DEFAULT_M,
    MAX_M,
    Backend,
    MaglevTable,
    Permutation,
    build_table,
    check_size,
    diff,
    permutation_for,
    populate,
)

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
