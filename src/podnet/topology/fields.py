"""Typed reads of parsed data, tolerant of values the schema already rejected.

The builders run even when the schema found problems, so that one pass reports
everything. A value of the wrong type reads as "absent" here: the schema check
has already said what is wrong with it.
"""

from __future__ import annotations

from typing import Any

from podnet.errors import InvalidInput
from podnet.model import check_name
from podnet.topology.problems import Path, Problems

__all__ = ["flag", "integer", "mapping", "name_ok", "string_map", "text"]


def mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def flag(value: object, default: bool) -> bool:
    return value if isinstance(value, bool) else default


def integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def string_map(value: object) -> dict[str, str]:
    """Labels or environment: text and integer values, integers as text."""
    out: dict[str, str] = {}
    for key, item in mapping(value).items():
        if isinstance(item, str) or integer(item) is not None:
            out[key] = str(item)
    return out


def name_ok(kind: str, name: str, path: Path, problems: Problems, *, key: bool = True) -> bool:
    """Check a DNS-label name; report the model's own message at ``path``."""
    try:
        check_name(kind, name)
    except InvalidInput as exc:
        problems.add(path, exc.message, exc.hint, key=key)
        return False
    return True
