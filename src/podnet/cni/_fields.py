"""Typed reads from decoded JSON, with errors that name the key path.

Every reader knows where it is (``runtimeConfig.portMappings[0]``) and which
error code a bad value means there (7 in a network configuration, 6 in a
result), so a problem is reported as ``<what>: <path> <problem>`` with a fix in
the details. JSON ``null`` reads as absent, like Go's encoding/json does for
the reference plugins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from podnet.cni.errors import CniError, ErrorCode

__all__ = ["MAX_UINT32", "Fields", "json_type"]

T = TypeVar("T")
MAX_UINT32 = 2**32 - 1

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
}


def json_type(value: object) -> str:
    """How JSON would call the type of ``value``: 'a string', 'an object', ..."""
    if value is None:
        return "null"
    return next((n for t, n in _TYPE_NAMES.items() if isinstance(value, t)), type(value).__name__)


@dataclass(frozen=True, slots=True)
class Fields:
    """One JSON object, read with type checks. ``where`` is its key path."""

    data: Mapping[str, Any]
    where: str = ""
    code: int = ErrorCode.INVALID_NETWORK_CONFIG
    what: str = "invalid network config"

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str, fix: str = "", code: int | None = None) -> NoReturn:
        """Raise the reader's error for ``key``; ``key`` "" means the object itself."""
        where = self.path(key) if key else (self.where or "the document")
        raise CniError(self.code if code is None else code, f"{self.what}: {where} {problem}", fix)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _typed(self, key: str, kind: type[T]) -> T | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            kind_name = _TYPE_NAMES[kind]
            self.fail(
                key, f"must be {kind_name}, not {json_type(value)}", f"write it as {kind_name}"
            )
        return value

    def text(self, key: str) -> str | None:
        """An optional string; "" reads as absent (Go's omitempty)."""
        return self._typed(key, str) or None

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            self.fail(key, "is missing", f"set {self.path(key)!r} to a non-empty string")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._typed(key, bool)
        return default if value is None else value

    def number(self, key: str, low: int = 0, high: int = MAX_UINT32) -> int | None:
        """An optional integer in ``low..high`` (an unsigned int by default)."""
        value = self._typed(key, int)
        if value is not None and not low <= value <= high:
            self.fail(key, f"is {value}, out of range {low}-{high}", f"use {low} to {high}")
        return value

    def items(self, key: str) -> list[Any]:
        """An optional list; absent reads as empty."""
        return self._typed(key, list) or []

    def texts(self, key: str) -> tuple[str, ...]:
        """An optional list of strings."""
        out = []
        for i, item in enumerate(self.items(key)):
            if not isinstance(item, str):
                self.fail(f"{key}[{i}]", f"must be a string, not {json_type(item)}", "quote it")
            out.append(item)
        return tuple(out)

    def child(self, key: str) -> Fields | None:
        """The object under ``key``, as a reader that knows its path."""
        value = self._typed(key, dict)
        return None if value is None else self._at(value, self.path(key))

    def children(self, key: str) -> Iterator[Fields]:
        """The objects of the list under ``key``."""
        for i, item in enumerate(self.items(key)):
            if not isinstance(item, dict):
                self.fail(
                    f"{key}[{i}]", f"must be an object, not {json_type(item)}", "write it as {...}"
                )
            yield self._at(item, f"{self.path(key)}[{i}]")

    def _at(self, data: Mapping[str, Any], where: str) -> Fields:
        return Fields(data, where, self.code, self.what)
