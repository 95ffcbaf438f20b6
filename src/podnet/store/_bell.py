"""Wake watchers in this process when a write to a database file lands.

Other processes' writes are found by polling; a bell only shortens the wait for
writes made here. Every store on the same file in one process shares a bell.
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["Bell", "bell_for"]


class Bell:
    """A generation counter with a condition: ring() wakes wait()."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def ring(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Wait until a ring after generation ``seen``, or ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout)


_bells: weakref.WeakValueDictionary[str, Bell] = weakref.WeakValueDictionary()
_bells_lock = threading.Lock()


def bell_for(path: str) -> Bell:
    """The bell of the file at ``path`` (which must exist) in this process."""
    name = os.path.realpath(path)
    with _bells_lock:
        bell = _bells.get(name)
        if bell is None:
            bell = _bells[name] = Bell()
        return bell
