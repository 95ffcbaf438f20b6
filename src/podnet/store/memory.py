"""An in-memory store with the same semantics as the SQLite one, for unit tests.

Values are kept as JSON text, exactly as the SQLite backend keeps them, so both
refuse the same values and both hand out fresh copies. One condition variable
guards everything and wakes watchers when a write lands.
"""

from __future__ import annotations

import bisect
import builtins
import threading
import time
from types import TracebackType
from typing import NamedTuple, Self

from podnet.store import _rules
from podnet.store._rules import Changes, Expectations
from podnet.store.base import DEFAULT_HISTORY, Entry, Event

__all__ = ["MemoryStore"]


class _Logged(NamedTuple):
    revision: int
    key: str
    text: str | None  # None: a delete


class MemoryStore(_rules.Writes):
    """A thread-safe :class:`~podnet.store.base.Store` that lives in this process."""

    def __init__(self, *, history: int = DEFAULT_HISTORY) -> None:
        """Args: history: how many recent events to keep for watch."""
        self._history = _rules.check_history(history)
        self._cond = threading.Condition()
        self._data: dict[str, tuple[str, int]] = {}  # key -> (JSON text, mod revision)
        self._log: list[_Logged] = []
        self._revision = 0
        self._compacted = 0  # events up to this revision were dropped
        self._closed = False

    def revision(self) -> int:
        with self._cond:
            self._check_open()
            return self._revision

    def get(self, key: str) -> Entry | None:
        _rules.check_key(key)
        with self._cond:
            self._check_open()
            found = self._data.get(key)
        return None if found is None else Entry(key, _rules.decode(found[0]), found[1])

    def list(self, prefix: str) -> list[Entry]:
        return self.snapshot(prefix)[1]

    def snapshot(self, prefix: str) -> tuple[int, builtins.list[Entry]]:
        _rules.check_prefix(prefix)
        with self._cond:
            self._check_open()
            rows = sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))
            revision = self._revision
        return revision, [Entry(k, _rules.decode(text), rev) for k, (text, rev) in rows]

    def watch(self, prefix: str, after: int, *, timeout: float) -> builtins.list[Event]:
        _rules.check_watch(prefix, after, timeout)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._check_open()
                events = self._events_after(prefix, after)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return events
                self._cond.wait(remaining)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._data.clear()
            self._log.clear()
            self._cond.notify_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _apply(self, changes: Changes, expect: Expectations) -> tuple[int, int]:
        """Check, then apply under one revision: (revision, number of keys changed)."""
        with self._cond:
            self._check_open()
            for key, want in expect:
                actual = self._data.get(key, ("", 0))[1]
                if actual != want:
                    raise _rules.conflict(key, want, actual)
            effective = [c for c in changes if c.text is not None or c.key in self._data]
            if effective:
                self._write(effective)
            return self._revision, len(effective)

    def _write(self, changes: Changes) -> None:
        self._revision += 1
        for key, text in changes:
            if text is None:
                del self._data[key]
            else:
                self._data[key] = (text, self._revision)
            self._log.append(_Logged(self._revision, key, text))
        self._prune()
        self._cond.notify_all()

    def _prune(self) -> None:
        if len(self._log) <= self._history:
            return
        point = _rules.compaction_point(self._log[-self._history].revision, self._compacted)
        if point is not None:
            del self._log[: bisect.bisect_right(self._log, point, key=_revision_of)]
            self._compacted = point

    def _events_after(self, prefix: str, after: int) -> builtins.list[Event]:
        if after < self._compacted:
            raise _rules.compacted(prefix, after, self._compacted)
        start = bisect.bisect_right(self._log, after, key=_revision_of)
        return [_event(e) for e in self._log[start:] if e.key.startswith(prefix)]

    def _check_open(self) -> None:
        if self._closed:
            raise _rules.closed("memory store")


def _revision_of(logged: _Logged) -> int:
    return logged.revision


def _event(logged: _Logged) -> Event:
    if logged.text is None:
        return Event("delete", logged.key, None, logged.revision)
    return Event("put", logged.key, _rules.decode(logged.text), logged.revision)
