"""Problems found in a topology file, and the one error that carries them all.

The loader never stops at the first mistake: every stage adds what it finds to
a :class:`Problems` collector (with a position taken from the YAML nodes), and
the file is rejected once, listing everything, before anything is created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from podnet.errors import InvalidInput

__all__ = ["Locator", "Path", "Problem", "Problems", "TopologyError", "dotted"]

#: Where a value sits in the parsed file: mapping keys and list indices.
Path = tuple[str | int, ...]


def dotted(path: Path) -> str:
    """A path as a person writes it: ``pods.web.networks[0].ip``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "the file"


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in a topology file: where it is, what is wrong, how to fix it."""

    file: str
    line: int
    column: int
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "hint": self.hint,
        }


class TopologyError(InvalidInput):
    """A topology file has one or more problems; nothing was changed.

    ``str()`` lists every problem on its own line as ``file:line:col: message (hint)``.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(super().to_dict())
        out["problems"] = [p.to_dict() for p in self.problems]
        return out


class Locator(Protocol):
    """Turns a path in the parsed data into a 1-based (line, column)."""

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]: ...


class Problems:
    """Collects problems as the loader finds them.

    A *weak* problem (a schema pattern or length rule) is dropped when a precise
    check reported something at the same position: the schema carries those
    rules for editors, the loader explains them better.
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.locator: Locator | None = None
        self._found: list[tuple[Problem, bool]] = []

    def add(
        self,
        path: Path,
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        weak: bool = False,
    ) -> None:
        """Report a problem at the value (or, with ``key``, the key) at ``path``."""
        line, column = self.locator.position(path, key=key) if self.locator else (1, 1)
        self.add_at(line, column, message, hint, weak=weak)

    def add_at(
        self, line: int, column: int, message: str, hint: str | None = None, *, weak: bool = False
    ) -> None:
        """Report a problem at an explicit 1-based position."""
        problem = Problem(self.filename, line, column, message, hint)
        if all(problem != seen for seen, _ in self._found):
            self._found.append((problem, weak))

    def __len__(self) -> int:
        return len(self._found)

    def result(self) -> list[Problem]:
        """The problems in file order, weak ones shadowed by precise ones removed."""
        strong = {(p.line, p.column) for p, weak in self._found if not weak}
        kept = [p for p, weak in self._found if not (weak and (p.line, p.column) in strong)]
        return sorted(kept, key=lambda p: (p.line, p.column))

    def raise_if_any(self) -> None:
        """Raise :class:`TopologyError` listing every problem, if there is one."""
        if self._found:
            raise TopologyError(self.result())
