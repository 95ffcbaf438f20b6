"""nftables transactions as typed objects, rendered to one ``nft -f -`` script.

Theory of operation: a :class:`Transaction` is a list of commands against one
table podnet owns. It is built in memory, validated as commands are added (names,
comments), and rendered as flat commands, one per line, which nft applies
all-or-nothing. Nothing here runs nft; ``podnet.kernel.nft`` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from podnet.errors import InvalidInput

__all__ = ["BaseChain", "Rule", "Transaction"]

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_COMMENT_BAD = re.compile(r'["\\\n]')


def _ident(kind: str, name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise InvalidInput(f"nft {kind} name {name!r} is not valid", hint="letters, digits, _ -")
    return name


def _positive(what: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"nft {what} {value!r} is not a positive whole number")
    return value


def comment(text: str) -> str:
    """An nft comment clause; nft comments hold at most 128 bytes, no quotes."""
    clean = _COMMENT_BAD.sub("_", text).encode()[:128].decode(errors="ignore")
    return f'comment "{clean}"'


_clause = comment  # for methods whose ``comment`` argument shadows the function


@dataclass(frozen=True, slots=True)
class BaseChain:
    """The hook spec of a base chain, e.g. nat/postrouting/srcnat."""

    type: str
    hook: str
    priority: str
    policy: str = "accept"

    def render(self, comment: str | None = None) -> str:
        tail = f" {_clause(comment)};" if comment else ""
        return (
            f"{{ type {self.type} hook {self.hook} priority {self.priority}; "
            f"policy {self.policy};{tail} }}"
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a chain: match and verdict expression, and who it is for."""

    chain: str
    expr: str
    comment: str | None = None

    def render(self, family: str, table: str) -> str:
        tail = f" {comment(self.comment)}" if self.comment else ""
        return f"add rule {family} {table} {self.chain} {self.expr}{tail}"


@dataclass(slots=True)
class Transaction:
    """Commands against one table, applied atomically by one ``nft -f -``."""

    table: str
    family: str = "inet"
    commands: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _ident("table", self.table)

    def _add(self, command: str) -> Transaction:
        self.commands.append(command)
        return self

    def add_table(self) -> Transaction:
        """Declare the table (a no-op when it exists, as nft's ``add`` is)."""
        return self._add(f"add table {self.family} {self.table}")

    def delete_table(self) -> Transaction:
        return self._add(f"delete table {self.family} {self.table}")

    def add_chain(
        self, name: str, base: BaseChain | None = None, *, comment: str | None = None
    ) -> Transaction:
        """Declare a chain (a no-op when it exists), with an optional comment."""
        if base is not None:
            spec = f" {base.render(comment)}"
        else:
            spec = f" {{ {_clause(comment)}; }}" if comment else ""
        return self._add(f"add chain {self.family} {self.table} {_ident('chain', name)}{spec}")

    def flush_chain(self, name: str) -> Transaction:
        return self._add(f"flush chain {self.family} {self.table} {_ident('chain', name)}")

    def delete_chain(self, name: str) -> Transaction:
        return self._add(f"delete chain {self.family} {self.table} {_ident('chain', name)}")

    def add_set(
        self,
        name: str,
        type_: str,
        flags: Iterable[str] = (),
        *,
        timeout: int | None = None,
        size: int | None = None,
        comment: str | None = None,
    ) -> Transaction:
        """Declare a set of ``type_`` (a no-op when it exists, even if its
        flags or timeout differ: nft keeps the old ones, so encode those in
        the name when they can change). ``timeout`` is in seconds."""
        flag_text = ", ".join(flags)
        extra = f" flags {flag_text};" if flag_text else ""
        if timeout is not None:
            extra += f" timeout {_positive('set timeout', timeout)}s;"
        if size is not None:
            extra += f" size {_positive('set size', size)};"
        if comment:
            extra += f" {_clause(comment)};"
        return self._add(
            f"add set {self.family} {self.table} {_ident('set', name)} {{ type {type_};{extra} }}"
        )

    def add_map(
        self, name: str, key: str, value: str, *, typeof: bool = False, comment: str | None = None
    ) -> Transaction:
        """Declare a map ``key : value`` (a no-op when it exists).

        With ``typeof`` the key is an expression whose type nft infers, for keys
        that have no type name (the 32-bit integer of ``numgen`` or ``jhash``).
        """
        kind = "typeof" if typeof else "type"
        extra = f" {_clause(comment)};" if comment else ""
        return self._add(
            f"add map {self.family} {self.table} {_ident('map', name)} "
            f"{{ {kind} {key} : {value};{extra} }}"
        )

    def flush_set(self, name: str) -> Transaction:
        return self._add(f"flush set {self.family} {self.table} {_ident('set', name)}")

    def flush_map(self, name: str) -> Transaction:
        return self._add(f"flush map {self.family} {self.table} {_ident('map', name)}")

    def delete_set(self, name: str) -> Transaction:
        return self._add(f"delete set {self.family} {self.table} {_ident('set', name)}")

    def delete_map(self, name: str) -> Transaction:
        return self._add(f"delete map {self.family} {self.table} {_ident('map', name)}")

    def add_elements(self, set_name: str, elements: Iterable[str]) -> Transaction:
        items = ", ".join(elements)
        if not items:
            return self
        name = _ident("set", set_name)
        return self._add(f"add element {self.family} {self.table} {name} {{ {items} }}")

    def delete_elements(self, set_name: str, keys: Iterable[str]) -> Transaction:
        """Remove elements of a set, or keys of a map; they must exist (nft
        refuses the whole transaction otherwise). No keys: no command."""
        items = ", ".join(keys)
        if not items:
            return self
        name = _ident("set", set_name)
        return self._add(f"delete element {self.family} {self.table} {name} {{ {items} }}")

    def add_rules(self, rules: Iterable[Rule]) -> Transaction:
        for rule in rules:
            _ident("chain", rule.chain)
            self._add(rule.render(self.family, self.table))
        return self

    def render(self) -> str:
        """The script for ``nft -f -``: one command per line."""
        return "".join(line + "\n" for line in self.commands)

    def __bool__(self) -> bool:
        return bool(self.commands)
