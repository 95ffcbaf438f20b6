"""Small parsers shared by CLI commands."""

from __future__ import annotations

import argparse

__all__ = ["key_values"]


def key_values(items: list[str] | None, what: str) -> dict[str, str]:
    """Parse repeated ``KEY=VALUE`` options (``-l app=web``, ``-e K=V``)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{what} {item!r} is not KEY=VALUE")
        out[key] = value
    return out
