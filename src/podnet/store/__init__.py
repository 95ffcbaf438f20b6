"""podnet's desired-state store: one interface, SQLite (default) and in-memory backends.

See :mod:`podnet.store.base` for the semantics (revisions, compare-and-swap,
commit, list-then-watch).
"""

from __future__ import annotations

from podnet.store.base import (
    DEFAULT_HISTORY,
    JSON,
    Delete,
    Entry,
    Event,
    Put,
    Store,
    StoreUnavailable,
    open_store,
)
from podnet.store.memory import MemoryStore
from podnet.store.sqlite import SqliteStore

__all__ = [
    "DEFAULT_HISTORY",
    "JSON",
    "Delete",
    "Entry",
    "Event",
    "MemoryStore",
    "Put",
    "SqliteStore",
    "Store",
    "StoreUnavailable",
    "open_store",
]
