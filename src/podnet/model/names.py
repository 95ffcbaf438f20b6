"""Names users give and the kernel names derived from them.

Linux interface names hold at most 15 bytes (IFNAMSIZ - 1). Users name networks
and pods freely (DNS labels, up to 63 characters), so every kernel name podnet
derives is checked here, in one place, and made to fit by hashing when the
readable form is too long.
"""

from __future__ import annotations

import hashlib
import re

from podnet.errors import InvalidInput

__all__ = [
    "IFNAMSIZ",
    "bridge_name",
    "check_ifname",
    "check_name",
    "host_veth_name",
    "netns_name",
]

IFNAMSIZ = 15
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(kind: str, name: str) -> str:
    """Check that ``name`` is a DNS label (it becomes a DNS name later).

    Raises:
        InvalidInput: naming the kind of object and the rule it broke.
    """
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"{kind} name {name!r} is not valid",
            hint="use 1-63 lower-case letters, digits and '-', starting and ending "
            "with a letter or digit",
        )
    return name


def check_ifname(name: str, *, what: str = "interface name") -> str:
    """Check a kernel interface name: 1-15 bytes, no '/' or whitespace."""
    if not name or len(name.encode()) > IFNAMSIZ or not _IFNAME.fullmatch(name):
        raise InvalidInput(
            f"{what} {name!r} is not a valid Linux interface name",
            hint=f"use 1-{IFNAMSIZ} characters from letters, digits, '_', '.' and '-'",
        )
    if name in {".", ".."}:
        raise InvalidInput(f"{what} {name!r} is reserved", hint="choose another name")
    return name


def _short_hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def bridge_name(network: str, prefix: str = "pn-") -> str:
    """The bridge of a network: ``pn-<network>`` when it fits, else a stable hash."""
    readable = prefix + network
    if len(readable) <= IFNAMSIZ:
        return readable
    return prefix + _short_hash(network, IFNAMSIZ - len(prefix))


def host_veth_name(pod: str, ifname: str, prefix: str = "pnv") -> str:
    """The host end of a pod's veth: stable for (pod, ifname), always 15 bytes."""
    return prefix + _short_hash(f"{pod}/{ifname}", IFNAMSIZ - len(prefix))


def netns_name(pod: str, prefix: str) -> str:
    """The named network namespace of a pod (visible to ``ip netns``)."""
    return prefix + pod
