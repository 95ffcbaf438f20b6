"""podnet's own exceptions.

Every layer raises these (or subclasses of them) rather than leaking the error
types of the libraries and tools underneath. The message is for a person: it
names the thing that went wrong; ``hint`` says how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Conflict",
    "InvalidInput",
    "KernelError",
    "NotFound",
    "PodnetError",
    "StoreConflict",
    "StoreUnavailable",
]


class PodnetError(Exception):
    """Base of every error podnet reports to a user."""

    #: Short machine-readable kind, used by the API and ``--json`` output.
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message

    def to_dict(self) -> dict[str, str]:
        out = {"kind": self.kind, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class NotFound(PodnetError):
    """A named object (network, pod, link, netns, key) does not exist."""

    kind = "not-found"


class AlreadyExists(PodnetError):
    """An object with that name already exists."""

    kind = "already-exists"


class Conflict(PodnetError):
    """The request clashes with something that exists: a port, a subnet, a user."""

    kind = "conflict"


class InvalidInput(PodnetError):
    """The request or file is malformed; nothing was changed."""

    kind = "invalid"


class KernelError(PodnetError):
    """The kernel (netlink, nft, sysctl) refused an operation."""

    kind = "kernel"


class StoreUnavailable(PodnetError):
    """The store's backend failed: file locked too long, disk full, closed store."""

    kind = "store-unavailable"


class StoreConflict(PodnetError):
    """A compare-and-swap write lost: the key changed since it was read."""

    kind = "store-conflict"
