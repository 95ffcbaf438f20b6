"""YAML text -> plain data that remembers where every key and value came from.

``yaml.safe_load`` forgets positions and silently keeps the last of two equal
keys. This module composes the node graph (which has marks) and walks it
itself, so that:

- every value and key has a line and column for error messages;
- duplicate keys in a mapping are reported, not silently dropped;
- plain scalars follow the YAML 1.2 core schema, as editors and docker compose
  read them: ``restart: no`` is the string "no", ``8080:80`` is a string (not
  the YAML 1.1 base-60 integer 484880), only ``true``/``false`` are booleans;
- ``<<`` merge keys work, so ``x-`` anchors can be reused as in compose files.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from podnet.topology.problems import Path, Problems, dotted

__all__ = ["Document", "parse"]

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"

#: Nodes visited before giving up: aliases can expand a small file enormously.
_MAX_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """A SafeLoader whose implicit tags are those of the YAML 1.2 core schema."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 (PyYAML's own class attribute)


_RESOLVERS = [
    (_BOOL, r"true|True|TRUE|false|False|FALSE", "tTfF"),
    (_INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        _FLOAT,
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+.0123456789",
    ),
    (_NULL, r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    (_MERGE, r"<<", "<"),
]
for _tag, _regexp, _first in _RESOLVERS:
    _Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_regexp})$"), list(_first))


@dataclass
class Document:
    """A parsed file: plain data plus the node of every value and key by path."""

    data: Any
    values: dict[Path, yaml.Node] = field(default_factory=dict)
    keys: dict[Path, yaml.Node] = field(default_factory=dict)

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of ``path``, or of its nearest known ancestor."""
        node = self.keys.get(path) if key else None
        while node is None:
            node = self.values.get(path)
            if node is None and not path:
                return (1, 1)
            path = path[:-1]
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def raw(self, path: Path) -> str | None:
        """The text of the scalar at ``path`` as written (before typing)."""
        node = self.values.get(path)
        return node.value if isinstance(node, yaml.ScalarNode) else None


class _TooBig(Exception):
    pass


def parse(text: str, problems: Problems) -> Document | None:
    """Parse ``text``; syntax errors go to ``problems`` and give None."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        _syntax_error(exc, problems)
        return None
    except yaml.YAMLError as exc:
        problems.add_at(1, 1, f"YAML error: {exc}", "check that the file is UTF-8 text")
        return None
    finally:
        loader.dispose()
    if root is None:
        return Document(None)
    walker = _Walker(problems)
    try:
        data = walker.value(root, ())
    except _TooBig:
        problems.add_at(1, 1, "the file expands to too many values", "use fewer aliases")
        return None
    return Document(data, walker.values, walker.keys)


def _syntax_error(exc: yaml.MarkedYAMLError, problems: Problems) -> None:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = f"YAML syntax error: {exc.problem or exc.context}"
    if exc.context and exc.problem and exc.context_mark and exc.context_mark is not mark:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    problems.add_at(line, column, message, _syntax_hint(exc.problem or ""))


def _syntax_hint(problem: str) -> str:
    if "'\\t'" in problem:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return "quote a value that contains ': ', or check the indentation of this line"
    if "another document" in problem:
        return "a topology file holds one document: remove the extra '---'"
    return "check the indentation and quoting on this line and the one before"


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Walker:
    """Turns nodes into plain values, recording each node under its path."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.values: dict[Path, yaml.Node] = {}
        self.keys: dict[Path, yaml.Node] = {}
        self._active: set[int] = set()
        self._budget = _MAX_NODES

    def value(self, node: yaml.Node, path: Path) -> Any:
        self._spend()
        self.values[path] = node
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if not self._enter(node):
            return None
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
            out: dict[str, Any] = {}
            for key, key_node, value_node in self._pairs(node, path):
                self.keys[(*path, key)] = key_node
                out[key] = self.value(value_node, (*path, key))
            return out
        finally:
            self._active.discard(id(node))

    def _spend(self) -> None:
        self._budget -= 1
        if self._budget < 0:
            raise _TooBig

    def _enter(self, node: yaml.Node) -> bool:
        if id(node) in self._active:
            self.problems.add_at(*_mark(node), "an alias refers to itself", "remove the loop")
            return False
        self._active.add(id(node))
        return True

    def _pairs(self, node: yaml.Node, path: Path) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """Key/value pairs of a mapping, duplicates reported, ``<<`` merges applied.

        Keys written in the mapping win over merged ones; among merged mappings
        the earlier wins, as the YAML merge-key spec says.
        """
        explicit: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            self._spend()
            if key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node))
            elif (key := self._key(key_node)) is None:
                continue
            elif key in explicit:
                self._duplicate(path, key, explicit[key][0], key_node)
            else:
                explicit[key] = (key_node, value_node)
        pairs = [(k, kn, vn) for k, (kn, vn) in explicit.items()]
        for source in merged:
            self._merge_into(pairs, source, path)
        return pairs

    def _merge_into(
        self, pairs: list[tuple[str, yaml.Node, yaml.Node]], source: yaml.Node, path: Path
    ) -> None:
        if not self._enter(source):
            return
        try:
            have = {key for key, _, _ in pairs}
            pairs.extend(pair for pair in self._pairs(source, path) if pair[0] not in have)
        finally:
            self._active.discard(id(source))

    def _merge_sources(self, node: yaml.Node) -> list[yaml.Node]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if all(isinstance(item, yaml.MappingNode) for item in items):
            return list(items)
        self.problems.add_at(
            *_mark(node),
            "'<<' must be given a mapping or a list of mappings",
            "merge an anchor: <<: *name",
        )
        return []

    def _key(self, node: yaml.Node) -> str | None:
        if isinstance(node, yaml.ScalarNode):
            return str(node.value)
        self.problems.add_at(*_mark(node), "a mapping key must be plain text", "use a simple name")
        return None

    def _duplicate(self, path: Path, key: str, first: yaml.Node, again: yaml.Node) -> None:
        where = f" in {dotted(path)}" if path else ""
        self.problems.add_at(
            *_mark(again),
            f"duplicate key {key!r}{where} (first at line {first.start_mark.line + 1})",
            "YAML would silently keep only the last one: merge the two or rename one",
        )

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        text: str = node.value
        try:
            return _typed_scalar(node.tag, text)
        except ValueError:
            self.problems.add_at(
                *_mark(node), f"{text!r} is not a valid {node.tag}", "remove the tag"
            )
            return text
        except LookupError:
            self.problems.add_at(
                *_mark(node), f"YAML tag {node.tag} is not supported here", "remove the tag"
            )
            return text


def _typed_scalar(tag: str, text: str) -> Any:
    if tag == _STR:
        return text
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return _bool(text)
    if tag == _INT:
        return _int(text)
    if tag == _FLOAT:
        return _float(text)
    raise LookupError(tag)


def _bool(text: str) -> bool:
    if text.lower() not in {"true", "false"}:
        raise ValueError(text)
    return text.lower() == "true"


def _int(text: str) -> int:
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if body.startswith(("0o", "0x")):
        return sign * int(body[2:], 8 if body[1] == "o" else 16)
    return sign * int(body, 10)


def _float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(text)
