"""Who holds a host port: listening sockets from /proc/net, owners from /proc/*/fd."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["port_holder"]

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column
_UNCONNECTED = "07"  # TCP_CLOSE: how a bound UDP socket shows


def _inodes(protocol: str, port: int) -> set[str]:
    want_state = _LISTEN if protocol == "tcp" else _UNCONNECTED
    found: set[str] = set()
    for table in (protocol, protocol + "6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            if local_port == port and cols[3] == want_state:
                found.add(cols[9])
    return found


def _owner(inodes: set[str]) -> str:
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    return f"process {comm} (pid {pid})"
        except OSError:
            continue
    return "another process"


def port_holder(protocol: str, port: int) -> str | None:
    """Describe what listens on ``port`` in the caller's netns, or None if free.

    /proc/net shows the sockets of the reading thread's network namespace, so
    the agent sees its own host namespace.
    """
    inodes = _inodes(protocol, port)
    return _owner(inodes) if inodes else None
