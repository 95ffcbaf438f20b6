"""The embedded default store: one SQLite file in the state directory.

Several processes may use the file at once (the agent, and ``podnet-cni`` when
no agent runs). The database runs in WAL mode, so readers never block the one
writer; every write is a ``BEGIN IMMEDIATE`` transaction, which takes the
write lock before reading, so a compare-and-swap reads and writes under the
same lock and is correct across processes.

Tables: ``kv`` (key, JSON text, mod revision); ``meta``, one row with the
global revision and the compacted revision; ``events`` (revision, kind, key,
value), the history that watch replays, pruned to the last ``history`` events
(whole revisions kept). A watch polls ``events`` every ``poll_interval``
seconds for other processes' writes; writes made in this process wake it at
once through a bell.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from podnet.store import _rules
from podnet.store._bell import bell_for
from podnet.store._rules import Change, Changes, Expectations
from podnet.store.base import DEFAULT_HISTORY, Entry, Event, StoreUnavailable

__all__ = ["SqliteStore"]

_SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL,
        revision INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        revision INTEGER NOT NULL,
        compacted INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (0, 0, 0)",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        revision INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('put', 'delete')),
        key TEXT NOT NULL,
        value TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_revision ON events (revision)",
    f"PRAGMA user_version = {_SCHEMA_VERSION}",
)
_UPSERT = (
    "INSERT INTO kv (key, value, revision) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision"
)
_LOG = "INSERT INTO events (revision, kind, key, value) VALUES (?, ?, ?, ?)"


class SqliteStore(_rules.Writes):
    """A :class:`~podnet.store.base.Store` in one SQLite file; thread- and process-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        history: int = DEFAULT_HISTORY,
        busy_timeout: float = 10.0,
        poll_interval: float = 0.01,
    ) -> None:
        """Open (creating if needed) the store at ``path``.

        Args:
            path: the database file; its directory is created with mode 0700.
            history: how many recent events to keep for watch.
            busy_timeout: seconds to wait for another process's write lock.
            poll_interval: seconds between checks for other processes' writes
                while a watch waits (writes in this process wake it at once).
                A check is one indexed query (~50 µs), so 10 ms costs little
                and keeps a CNI plugin's or a script's write from waiting.

        Raises:
            StoreUnavailable: the file cannot be created or opened, or was
                written by a newer podnet.
        """
        self.path = Path(path)
        self._history = _rules.check_history(history)
        self._busy_timeout = busy_timeout
        self._poll_interval = poll_interval
        self._lock = threading.RLock()
        _create_file(self.path)
        self._bell = bell_for(str(self.path))
        self._pid = os.getpid()
        self._db: sqlite3.Connection | None = None
        with self._translate():
            self._db = self._connect()
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise

    def revision(self) -> int:
        with self._transaction("DEFERRED") as db:
            return _meta(db, "revision")

    def get(self, key: str) -> Entry | None:
        _rules.check_key(key)
        with self._transaction("DEFERRED") as db:
            row = db.execute("SELECT value, revision FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else Entry(key, _rules.decode(row[0]), row[1])

    def list(self, prefix: str) -> list[Entry]:
        return self.snapshot(prefix)[1]

    def snapshot(self, prefix: str) -> tuple[int, builtins.list[Entry]]:
        where, args = _prefix_where(_rules.check_prefix(prefix))
        query = f"SELECT key, value, revision FROM kv WHERE 1 {where} ORDER BY key"
        with self._transaction("DEFERRED") as db:
            revision = _meta(db, "revision")
            rows = db.execute(query, args).fetchall()
        return revision, [Entry(key, _rules.decode(text), rev) for key, text, rev in rows]

    def watch(self, prefix: str, after: int, *, timeout: float) -> builtins.list[Event]:
        _rules.check_watch(prefix, after, timeout)
        deadline = time.monotonic() + timeout
        while True:
            seen = self._bell.generation
            events = self._events_after(prefix, after)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                return events
            self._bell.wait(seen, min(self._poll_interval, remaining))

    def close(self) -> None:
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None
        self._bell.ring()  # watchers in other threads notice at once

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _apply(self, changes: Changes, expect: Expectations) -> tuple[int, int]:
        """Check, then apply under one revision: (revision, number of keys changed)."""
        with self._transaction("IMMEDIATE") as db:
            for key, want in expect:
                actual = _mod_revision(db, key)
                if actual != want:
                    raise _rules.conflict(key, want, actual)
            effective = [c for c in changes if c.text is not None or _mod_revision(db, c.key)]
            revision = _meta(db, "revision")
            if effective:
                revision += 1
                _write(db, effective, revision)
                self._prune(db)
        if effective:
            self._bell.ring()
        return revision, len(effective)

    def _prune(self, db: sqlite3.Connection) -> None:
        oldest_kept = db.execute(
            "SELECT revision FROM events WHERE seq = (SELECT max(seq) FROM events) - ?",
            (self._history - 1,),
        ).fetchone()
        if oldest_kept is None:
            return
        point = _rules.compaction_point(oldest_kept[0], _meta(db, "compacted"))
        if point is not None:
            db.execute("DELETE FROM events WHERE revision <= ?", (point,))
            db.execute("UPDATE meta SET compacted = ?", (point,))

    def _events_after(self, prefix: str, after: int) -> builtins.list[Event]:
        where, args = _prefix_where(prefix)
        query = f"SELECT revision, kind, key, value FROM events WHERE revision > ? {where}"
        with self._transaction("DEFERRED") as db:
            compacted = _meta(db, "compacted")
            if after < compacted:
                raise _rules.compacted(prefix, after, compacted)
            # "revision, seq" (not "seq" alone) lets SQLite walk events_by_revision
            # (whose entries end in the rowid, seq) instead of scanning every event.
            rows = db.execute(query + " ORDER BY revision, seq", (after, *args)).fetchall()
        return [
            Event(kind, key, _rules.decode_optional(text), rev) for rev, kind, key, text in rows
        ]

    def _init_schema(self) -> None:
        """Create the tables; an up-to-date file is only read (no write lock)."""
        with self._transaction("DEFERRED") as db:
            if self._schema_version(db) == _SCHEMA_VERSION:
                return
        with self._transaction("IMMEDIATE") as db:
            if self._schema_version(db) < _SCHEMA_VERSION:
                for statement in _SCHEMA:
                    db.execute(statement)

    def _schema_version(self, db: sqlite3.Connection) -> int:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise StoreUnavailable(
                f"state store {self.path} has schema version {version}, newer than "
                f"this podnet's {_SCHEMA_VERSION}",
                hint="upgrade podnet, or point it at another state directory",
            )
        return version

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # transactions are explicit: BEGIN ... COMMIT
            check_same_thread=False,  # self._lock serialises use of the connection
        )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        return db

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise _rules.closed(f"state store {self.path}")
        if self._pid != os.getpid():
            # A forked child must not touch its parent's connection (SQLite
            # forbids it); it gets its own and leaves the inherited one alone.
            self._db, self._pid = self._connect(), os.getpid()
        return self._db

    @contextmanager
    def _transaction(self, mode: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translate():
            db = self._connection()
            db.execute(f"BEGIN {mode}")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as err:
            raise StoreUnavailable(
                f"state store {self.path}: {err}",
                hint="another process may hold it locked; check the disk and permissions",
            ) from err


def _create_file(path: Path) -> None:
    """Create the state directory (0700) and the database file (0600)."""
    try:
        if not path.parent.is_dir():
            os.makedirs(path.parent, mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as err:
        raise StoreUnavailable(
            f"cannot create state store {path}: {err.strerror}",
            hint="check that the state directory is writable",
        ) from err


def _meta(db: sqlite3.Connection, column: str) -> int:
    value: int = db.execute(f"SELECT {column} FROM meta").fetchone()[0]
    return value


def _mod_revision(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT revision FROM kv WHERE key = ?", (key,)).fetchone()
    return 0 if row is None else int(row[0])


def _write(db: sqlite3.Connection, changes: Changes, revision: int) -> None:
    puts = [(key, text, revision) for key, text in changes if text is not None]
    deletes = [(key,) for key, text in changes if text is None]
    db.executemany(_UPSERT, puts)
    db.executemany("DELETE FROM kv WHERE key = ?", deletes)
    db.executemany(_LOG, [_log_row(revision, change) for change in changes])
    db.execute("UPDATE meta SET revision = ?", (revision,))


def _log_row(revision: int, change: Change) -> tuple[Any, ...]:
    kind = "delete" if change.text is None else "put"
    return (revision, kind, change.key, change.text)


def _prefix_where(prefix: str) -> tuple[str, tuple[str, ...]]:
    """SQL (``AND ...``) and parameters selecting keys that start with ``prefix``."""
    if not prefix:
        return "", ()
    end = _rules.prefix_end(prefix)
    if end is None:
        return "AND key >= ?", (prefix,)
    return "AND key >= ? AND key < ?", (prefix, end)
