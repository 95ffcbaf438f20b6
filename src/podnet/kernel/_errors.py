"""Turning errno values from netlink and the kernel into podnet's exceptions.

Every adapter in this package names what it was doing ("creating bridge
'pn-front' in netns 'x'") and lets :func:`translated` add the kernel's reason,
so a user reads one sentence instead of "RTNETLINK answers: File exists".
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2.netlink.exceptions import NetlinkError

from podnet.errors import AlreadyExists, KernelError, NotFound, PodnetError

__all__ = ["error_for", "translated", "where"]

_NOT_FOUND = frozenset({errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL})

# Hints for the errno values that have one obvious fix.
_HINTS = {
    errno.EPERM: "podnet needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)",
    errno.EACCES: "podnet needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)",
    errno.EOPNOTSUPP: "the kernel lacks this feature; is the module loaded?",
    errno.EBUSY: "something else is using it; retry, or find the user with `ip link`",
}


def where(netns: str | None) -> str:
    """How messages name a namespace: ``netns 'x'`` or the process's own."""
    return f"netns {netns!r}" if netns is not None else "this process's netns"


def error_for(code: int | None, what: str, *, hint: str | None = None) -> PodnetError:
    """The podnet exception for an errno ``code`` met while doing ``what``."""
    reason = os.strerror(code) if code else "unknown error"
    message = f"{what}: {reason}"
    if code == errno.EEXIST:
        return AlreadyExists(message, hint=hint)
    if code in _NOT_FOUND:
        return NotFound(message, hint=hint)
    return KernelError(message, hint=hint or _HINTS.get(code or 0))


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise netlink and OS errors from the block as podnet errors about ``what``."""
    try:
        yield
    except NetlinkError as exc:
        raise error_for(exc.code, what) from exc
    except OSError as exc:
        raise error_for(exc.errno, what) from exc
