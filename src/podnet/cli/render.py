"""Output for people (aligned tables) and for scripts (JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["print_json", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Print a left-aligned table with a header row, like docker ps."""
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(line[i].split("\n")[0]) for line in cells) for i in range(len(headers))]
    for line in cells:
        padded = [c.ljust(w) for c, w in zip(line[:-1], widths[:-1], strict=True)]
        out.write("   ".join([*padded, line[-1]]).rstrip() + "\n")


def print_json(data: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(data, indent=2, sort_keys=True) + "\n")
