"""Reading and writing sysctls under ``/proc/sys``, in a chosen netns.

``/proc/sys/net`` shows the network namespace of the thread that opens the
file, so a write for a netns happens on a thread moved there by
:func:`podnet.kernel.netns.run_in`; with ``netns=None`` it happens on the
calling thread.

Keys are dotted (``net.ipv4.ip_forward``) or slashed
(``net/ipv4/conf/pn-front.1/route_localnet``), or given as a tuple of path
parts to :func:`get_path` / :func:`set_path`. Interface names may contain
dots, so in the per-interface subtrees ``net.ipv4.conf``, ``net.ipv6.conf``,
``net.ipv4.neigh`` and ``net.ipv6.neigh`` a dotted key keeps the middle
together: ``net.ipv4.conf.pn-front.1.route_localnet`` names interface
``pn-front.1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from podnet.errors import InvalidInput, NotFound
from podnet.kernel import netns as _netns
from podnet.kernel._errors import error_for, where

__all__ = ["PROC_SYS", "get", "get_path", "parse_key", "set", "set_path"]

T = TypeVar("T")

PROC_SYS = Path("/proc/sys")
_PER_INTERFACE = frozenset(
    (
        ("net", "ipv4", "conf"),
        ("net", "ipv6", "conf"),
        ("net", "ipv4", "neigh"),
        ("net", "ipv6", "neigh"),
    )
)


def parse_key(key: str) -> tuple[str, ...]:
    """Split a sysctl key into path parts (see the module docstring for dots)."""
    if "/" in key:
        return tuple(key.strip("/").split("/"))
    parts = tuple(key.split("."))
    if len(parts) > 5 and parts[:3] in _PER_INTERFACE:
        return (*parts[:3], ".".join(parts[3:-1]), parts[-1])
    return parts


def _file(parts: Sequence[str]) -> Path:
    if not parts or any(p in {"", ".", ".."} or "/" in p or "\0" in p for p in parts):
        raise InvalidInput(f"sysctl key {parts!r} is not valid", hint="e.g. net.ipv4.ip_forward")
    return PROC_SYS.joinpath(*parts)


def _in_netns(netns: str | None, fn: Callable[[], T], key: str, what: str) -> T:
    # run_in raises NotFound itself when the netns is missing; a missing
    # file under /proc/sys means the key (or its interface) does not exist.
    try:
        return _netns.run_in(netns, fn)
    except FileNotFoundError as exc:
        raise _no_such_key(key, netns) from exc
    except OSError as exc:
        raise error_for(exc.errno, f"{what} in {where(netns)}") from exc


def _read(file: Path, key: str, netns: str | None) -> str:
    return _in_netns(netns, file.read_text, key, f"reading sysctl {key}").strip()


def _write(file: Path, key: str, value: str, netns: str | None) -> None:
    _in_netns(netns, lambda: file.write_text(value), key, f"setting sysctl {key}={value}")


def _no_such_key(key: str, netns: str | None) -> NotFound:
    return NotFound(
        f"sysctl {key} does not exist in {where(netns)}",
        hint="check the key; per-interface keys need the interface to exist",
    )


def get_path(parts: Sequence[str], *, netns: str | None = None) -> str:
    """The value of the sysctl at ``/proc/sys/<parts...>``, stripped.

    Raises:
        NotFound: no such key (or no such netns).
        KernelError: the read failed.
    """
    return _read(_file(parts), "/".join(parts), netns)


def set_path(parts: Sequence[str], value: str, *, netns: str | None = None) -> None:
    """Write ``value`` to the sysctl at ``/proc/sys/<parts...>``.

    Raises:
        NotFound: no such key (or no such netns).
        KernelError: the kernel refused the value, or not root.
    """
    _write(_file(parts), "/".join(parts), value, netns)


def get(key: str, *, netns: str | None = None) -> str:
    """The value of sysctl ``key`` (e.g. ``net.ipv4.ip_forward``) in ``netns``."""
    return _read(_file(parse_key(key)), key, netns)


def set(key: str, value: str, *, netns: str | None = None) -> None:
    """Set sysctl ``key`` to ``value`` in ``netns`` (None: the calling thread's)."""
    _write(_file(parse_key(key)), key, value, netns)
