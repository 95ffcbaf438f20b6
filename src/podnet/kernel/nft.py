"""Running nft: transactions in, JSON out, inside a chosen netns.

Theory of operation: podnet renders nftables changes as text elsewhere (pure
code); this module only runs them. One :meth:`Nft.apply` is one ``nft -f -``
call, which the kernel applies as one transaction: all of it or none of it.
Scripts are flat commands, one per line, as nft 1.0.6 parses them reliably::

    add table inet podnet
    add chain inet podnet post { type nat hook postrouting priority srcnat; }
    add rule inet podnet post ip saddr 10.1.0.0/24 masquerade comment "network:front"

The only read is ``nft -j list table FAMILY NAME`` of the table the caller
names: podnet never lists or flushes the whole ruleset or anyone else's table.
In a named netns nft runs under ``nsenter --net=/run/netns/NAME``.
:class:`FakeNft` is the stand-in for tests without root.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any, Protocol

from podnet.errors import InvalidInput, KernelError, NotFound
from podnet.kernel import netns as _netns
from podnet.kernel._errors import where

__all__ = ["FAMILIES", "FakeNft", "Nft", "NftRunner"]

FAMILIES = frozenset({"ip", "ip6", "inet", "arp", "bridge", "netdev"})
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,255}$")
_MISSING = "No such file or directory"
_MAX_LINES = 12


class NftRunner(Protocol):
    """What podnet needs from nftables: apply a transaction, read one table."""

    def apply(self, script: str) -> None:
        """Apply ``script`` as one all-or-nothing transaction."""
        ...

    def list_json(self, family: str, table: str) -> dict[str, Any] | None:
        """The table as nft's JSON, or None if it does not exist."""
        ...

    def chain_rules(self, family: str, table: str, chain: str) -> int | None:
        """How many rules a chain of the table holds; None if it does not exist."""
        ...

    def has_set(self, family: str, table: str, name: str) -> bool:
        """Whether the table has set ``name`` (cheap for a small set at any scale)."""
        ...


def _check_table(family: str, table: str) -> None:
    if family not in FAMILIES:
        raise InvalidInput(f"nft family {family!r} is not valid", hint=f"use one of {FAMILIES}")
    if not _TABLE.match(table):
        raise InvalidInput(f"nft table name {table!r} is not valid")


def _trim(stderr: str) -> str:
    """nft's error lines without the caret markers, at most a dozen."""
    lines = [ln.rstrip() for ln in stderr.splitlines()]
    kept = [ln for ln in lines if ln.strip() and set(ln.strip()) != {"^"}]
    if len(kept) > _MAX_LINES:
        kept = [*kept[:_MAX_LINES], f"... ({len(kept) - _MAX_LINES} more lines)"]
    return "\n".join("  " + ln for ln in kept)


def _apply_hint(stderr: str) -> str:
    if _MISSING in stderr:
        return "a table, chain, set or map the script refers to does not exist; nothing was applied"
    return "nothing was applied; write flat nft commands, one per line"


class Nft(NftRunner):
    """The real runner: executes the ``nft`` binary, in ``netns`` if given.

    ``Nft(None)`` runs nft in the netns of the calling thread (a child process
    inherits its parent thread's netns).
    """

    def __init__(self, netns: str | None = None, *, timeout: float = 30.0) -> None:
        self.netns = netns
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Nft(netns={self.netns!r})"

    def _argv(self, args: list[str]) -> list[str]:
        if self.netns is None:
            return ["nft", *args]
        return ["nsenter", f"--net={_netns.path(self.netns)}", "nft", *args]

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        if self.netns is not None and not _netns.exists(self.netns):
            raise NotFound(f"netns {self.netns!r} does not exist", hint="see `ip netns list`")
        argv = self._argv(args)
        try:
            return subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except FileNotFoundError as exc:
            raise KernelError(
                f"cannot run {argv[0]}: {exc.strerror}", hint="install nftables"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise KernelError(
                f"nft took longer than {self.timeout:g}s in {where(self.netns)}"
            ) from exc

    def apply(self, script: str) -> None:
        """Apply ``script`` with one ``nft -f -`` (an empty script does nothing).

        Raises:
            KernelError: nft refused it; the message quotes nft's errors and
                nothing was applied.
            NotFound: the netns does not exist.
        """
        if not script.strip():
            return
        done = self._run(["-f", "-"], stdin=script)
        if done.returncode != 0:
            raise KernelError(
                f"nft rejected the transaction in {where(self.netns)}:\n{_trim(done.stderr)}",
                hint=_apply_hint(done.stderr),
            )

    def list_json(self, family: str, table: str) -> dict[str, Any] | None:
        """``nft -j list table FAMILY TABLE`` parsed; None if there is no such table.

        Raises:
            KernelError: nft failed otherwise, or printed something not JSON.
        """
        _check_table(family, table)
        done = self._run(["-j", "list", "table", family, table])
        if done.returncode != 0:
            if _MISSING in done.stderr:
                return None
            raise KernelError(
                f"listing nft table {family} {table} in {where(self.netns)} failed:\n"
                f"{_trim(done.stderr)}"
            )
        return _parse_json(done.stdout, f"{family} {table}")

    def has_set(self, family: str, table: str, name: str) -> bool:
        """``nft -j list set``: nft fetches that set alone, so a small set is
        milliseconds even beside 100,000 elements elsewhere in the table."""
        _check_table(family, table)
        done = self._run(["-j", "list", "set", family, table, name])
        if done.returncode == 0:
            return True
        if _MISSING in done.stderr:
            return False
        raise KernelError(f"listing nft set {family} {table} {name} failed:\n{_trim(done.stderr)}")

    def chain_rules(self, family: str, table: str, chain: str) -> int | None:
        """``nft -j list chain`` counted. nft 1.0.6 loads the whole table (set
        elements included) to do it: seconds with 10,000 services."""
        _check_table(family, table)
        done = self._run(["-j", "list", "chain", family, table, chain])
        if done.returncode != 0:
            if _MISSING in done.stderr:
                return None
            raise KernelError(
                f"listing nft chain {family} {table} {chain} failed:\n{_trim(done.stderr)}"
            )
        items = _parse_json(done.stdout, f"{family} {table}").get("nftables", [])
        return sum(1 for item in items if "rule" in item)


def _parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KernelError(f"nft printed invalid JSON for table {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise KernelError(f"nft printed unexpected JSON for table {what}")
    return data


class FakeNft(NftRunner):
    """An in-memory runner for unit tests.

    ``applied`` holds the scripts applied so far, in order. :meth:`fail_next`
    arms a failure: the next :meth:`apply` raises KernelError and records
    nothing, as the kernel applies a failed transaction not at all.
    """

    def __init__(self) -> None:
        self.applied: list[str] = []
        self._failure: KernelError | None = None

    def fail_next(self, message: str = "nft rejected the transaction (injected)") -> None:
        """Make the next :meth:`apply` fail with KernelError(``message``)."""
        self._failure = KernelError(message, hint="nothing was applied")

    def apply(self, script: str) -> None:
        """Record ``script`` (empty ones are ignored), or raise an armed failure."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        if script.strip():
            self.applied.append(script)

    def list_json(self, family: str, table: str) -> dict[str, Any] | None:
        """Always None: the fake keeps no ruleset (validates the names, though)."""
        _check_table(family, table)
        return None

    def chain_rules(self, family: str, table: str, chain: str) -> int | None:
        """Always None, like :meth:`list_json`."""
        _check_table(family, table)
        return None

    def has_set(self, family: str, table: str, name: str) -> bool:
        """Always False, like :meth:`list_json`."""
        _check_table(family, table)
        return False
