"""Structured access log: one JSON object per request, one per line.

Fields: ``time`` (RFC 3339 UTC, milliseconds), ``client``, ``method``,
``path``, ``host``, ``status``, ``bytes`` (response body bytes sent),
``duration`` (seconds), ``route``, ``backend``, ``endpoint``, ``attempts``,
``error`` (why the last failed try failed; "" when none did) and ``worker``
(the worker's pid: with ``--workers N`` they share one file).
Lines are buffered and written at most every :data:`FLUSH_EVERY` seconds (and
at close), so logging costs one ``json.dumps`` per request and no syscall.
When the log is off the engine builds nothing at all.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any, Final

__all__ = ["FLUSH_EVERY", "AccessLog"]

FLUSH_EVERY: Final = 0.5
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


def _rfc3339(now: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{seconds}.{int(now % 1 * 1000):03d}Z"


class AccessLog:
    """Write access log lines to ``path`` ("-": standard output)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._out: IO[str] = sys.stdout if path == "-" else open(path, "a", encoding="utf-8")  # noqa: SIM115
        self._lines: list[str] = []
        self._last = time.monotonic()
        self._worker = os.getpid()

    def record(self, **fields: Any) -> None:
        fields = {"time": _rfc3339(time.time()), **fields, "worker": self._worker}
        self._lines.append(_ENCODER.encode(fields))
        now = time.monotonic()
        if now - self._last > FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if self._lines:
            self._out.write("\n".join(self._lines) + "\n")
            self._lines.clear()
            self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._out is not sys.stdout:
            self._out.close()
