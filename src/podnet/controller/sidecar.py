"""Sidecar interception tables in pods' netns: applied, kept, removed.

The rules themselves are rendered by :mod:`podnet.rules.sidecar`. Applying
costs one ``nft`` run, so what was applied is remembered per netns together
with the netns file's inode: a pod recreated under the same name has a new
netns (new inode) and gets its table again; an unchanged one costs nothing.
The memory is per agent process; a restarted agent re-applies once, which is
harmless (the script replaces the table atomically).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable

from podnet.errors import NotFound
from podnet.kernel import netns as _netns
from podnet.kernel.nft import Nft, NftRunner
from podnet.model.network import IPNetwork
from podnet.rules.sidecar import (
    SIDECAR_CHAIN,
    SIDECAR_TABLE,
    render_sidecar,
    render_sidecar_removal,
)

__all__ = ["SidecarRules", "netns_inode"]


def netns_inode(netns: str) -> int | None:
    """The netns file's inode: a recreated netns of the same name has another."""
    try:
        return os.stat(_netns.path(netns)).st_ino
    except OSError:
        return None


class SidecarRules:
    """The sidecar tables this agent keeps, by netns name."""

    def __init__(self, nft: Callable[[str], NftRunner] = Nft) -> None:
        self._nft = nft
        self._applied: dict[str, tuple[int | None, str]] = {}

    def ensure(self, netns: str, proxy: str, listen_port: int, pools: Iterable[IPNetwork]) -> bool:
        """Make the netns hold the sidecar table; True if nft ran."""
        script = render_sidecar(proxy, listen_port, pools)
        inode = netns_inode(netns)
        if self._applied.get(netns) == (inode, script):
            return False
        self._nft(netns).apply(script)
        self._applied[netns] = (inode, script)
        return True

    def remove(self, netns: str) -> None:
        """Delete the table; a netns that is gone took it along (not an error)."""
        self._applied.pop(netns, None)
        if not _netns.exists(netns):
            return
        with contextlib.suppress(NotFound):  # gone since the check
            self._nft(netns).apply(render_sidecar_removal())

    def present(self, netns: str) -> bool:
        """Whether the kernel has the table's chain in that netns (for inspect/tests)."""
        if not _netns.exists(netns):
            return False
        return self._nft(netns).chain_rules("inet", SIDECAR_TABLE, SIDECAR_CHAIN) is not None

    def forget(self, keep: Iterable[str]) -> list[str]:
        """Netns names with a remembered table that are not in ``keep``."""
        wanted = set(keep)
        return [ns for ns in self._applied if ns not in wanted]
