"""The desired-state store: one small interface, shaped like etcd's.

Theory of operation. The store maps string keys to JSON objects. Every change
bumps one global ``revision`` (0 for an empty store); each key remembers the
revision that last modified it (its "mod revision", ``Entry.revision``). Writes
are compare-and-swap: pass the revision you read as ``expect`` and the write
fails with :class:`~podnet.errors.StoreConflict` if someone changed the key in
between (``expect=0`` means "the key must not exist"). :meth:`Store.commit`
checks any number of such expectations and then applies any number of puts and
deletes under one new revision, all or nothing.

Readers follow changes with list-then-watch::

    revision, entries = store.snapshot("/pods/")
    while True:
        events = store.watch("/pods/", revision, timeout=30)
        if events:
            revision = events[-1].revision

A watch replays every change with a revision greater than ``after``, from a
bounded history of recent events. When ``after`` is older than that history the
watch raises ``StoreConflict`` ("compacted") and the reader must list again.

A change that changes nothing (deleting a missing key, an empty commit) does not
bump the revision and produces no event, as in etcd.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

from podnet.errors import InvalidInput, StoreUnavailable

__all__ = [
    "DEFAULT_HISTORY",
    "JSON",
    "Delete",
    "Entry",
    "Event",
    "Put",
    "Store",
    "StoreUnavailable",
    "open_store",
]

JSON = dict[str, Any]

#: How many recent events a store keeps for :meth:`Store.watch`.
DEFAULT_HISTORY = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    """A key, its value and its mod revision (the revision that last wrote it)."""

    key: str
    value: JSON
    revision: int


@dataclass(frozen=True, slots=True)
class Put:
    """In :meth:`Store.commit`: set ``key`` to ``value``."""

    key: str
    value: JSON


@dataclass(frozen=True, slots=True)
class Delete:
    """In :meth:`Store.commit`: remove ``key`` (nothing happens if it is missing)."""

    key: str


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by :meth:`Store.watch`; ``value`` is None for a delete."""

    kind: Literal["put", "delete"]
    key: str
    value: JSON | None
    revision: int


class Store(Protocol):
    """What every backend (SQLite, in-memory, later etcd) provides.

    Keys are non-empty strings without NUL; values are JSON objects, and what
    you read back is always a fresh copy. Every method may raise
    :class:`StoreUnavailable` when the backend fails or the store is closed, and
    :class:`~podnet.errors.InvalidInput` for a malformed key, value or argument.
    """

    def revision(self) -> int:
        """The current global revision (0 when nothing was ever written)."""
        ...

    def get(self, key: str) -> Entry | None:
        """The entry under ``key``, or None."""
        ...

    def list(self, prefix: str) -> list[Entry]:
        """Entries whose key starts with ``prefix`` (plain string prefix), by key."""
        ...

    def snapshot(self, prefix: str) -> tuple[int, builtins.list[Entry]]:
        """``(revision(), list(prefix))`` read atomically: where a watch starts."""
        ...

    def put(self, key: str, value: JSON, *, expect: int | None = None) -> int:
        """Set ``key`` to ``value``.

        Args:
            expect: None writes unconditionally; 0 requires the key to be
                missing; N requires the key's revision to be N.

        Returns:
            The new global revision, which is also the key's revision.

        Raises:
            StoreConflict: ``expect`` did not match; the message names the key,
                the expected and the actual revision. Nothing was written.
        """
        ...

    def delete(self, key: str, *, expect: int | None = None) -> bool:
        """Remove ``key``; True if it existed, False if it was already missing.

        Raises:
            StoreConflict: ``expect`` (as for :meth:`put`) did not match.
        """
        ...

    def commit(
        self, ops: Sequence[Put | Delete], *, expect: Mapping[str, int] | None = None
    ) -> int:
        """Check every expectation, then apply every op under one new revision.

        Args:
            ops: puts and deletes, each key at most once.
            expect: key -> required revision (0: must be missing), for any
                keys, not only those in ``ops``.

        Returns:
            The new revision, or the current one if nothing changed.

        Raises:
            StoreConflict: an expectation failed; nothing was applied.
            InvalidInput: a key appears twice in ``ops``; nothing was applied.
        """
        ...

    def watch(self, prefix: str, after: int, *, timeout: float) -> builtins.list[Event]:
        """Events for keys under ``prefix`` with revision > ``after``.

        Returns at once if there are any, else waits up to ``timeout`` seconds
        for the first and returns what is there then; ``[]`` on timeout. Events
        come in revision order (within one commit, in the order of its ops).

        Raises:
            StoreConflict: history after ``after`` was compacted; list again
                with :meth:`snapshot` and watch from its revision.
        """
        ...

    def close(self) -> None:
        """Release the backend; later calls raise :class:`StoreUnavailable`."""
        ...

    def __enter__(self) -> Store: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_store(url_or_path: str) -> Store:
    """Open the store named by a URL or a path.

    Args:
        url_or_path: ``sqlite:///abs/state.db`` (after ``sqlite://`` comes the
            path), a plain file path (SQLite), or ``memory:`` (a fresh
            in-memory store, for tests). ``etcd://...`` is reserved.

    Raises:
        InvalidInput: unknown scheme, empty path, or etcd (not available yet).
    """
    from podnet.store.memory import MemoryStore
    from podnet.store.sqlite import SqliteStore

    if url_or_path == "memory:":
        return MemoryStore()
    if url_or_path.startswith("sqlite://"):
        return SqliteStore(_nonempty(url_or_path.removeprefix("sqlite://"), url_or_path))
    if url_or_path.startswith("etcd"):
        raise InvalidInput(
            "etcd backend not available yet",
            hint="use sqlite:///PATH or a plain file path for the state store",
        )
    if "://" in url_or_path:
        raise InvalidInput(
            f"state store URL {url_or_path!r} has an unknown scheme",
            hint="use sqlite:///PATH, a plain file path, or memory:",
        )
    return SqliteStore(_nonempty(url_or_path, url_or_path))


def _nonempty(path: str, given: str) -> str:
    if not path:
        raise InvalidInput(
            f"state store {given!r} names no file",
            hint="use e.g. sqlite:///var/lib/podnet/state.db",
        )
    return path
