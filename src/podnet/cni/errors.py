"""CNI errors: the spec's well-known codes and the error result a plugin prints.

CNI spec 1.1.0, section 5 "Error": a failing plugin prints ``{cniVersion, code,
msg, details}`` and exits non-zero. Codes 0-99 are reserved for the well-known
errors below; 100 and up are free for plugin-specific errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from podnet.errors import PodnetError

__all__ = ["CniError", "ErrorCode"]


class ErrorCode(IntEnum):
    """The well-known error codes of CNI spec 1.1.0, section 5 "Error"."""

    #: Incompatible CNI version.
    INCOMPATIBLE_VERSION = 1
    #: Unsupported field in network configuration; the message must carry the
    #: key and value of the field.
    UNSUPPORTED_FIELD = 2
    #: Container unknown or does not exist: the runtime need not clean up (DEL).
    UNKNOWN_CONTAINER = 3
    #: Invalid necessary environment variables; the message must name them.
    INVALID_ENVIRONMENT = 4
    #: I/O failure, e.g. reading the network configuration from stdin.
    IO_FAILURE = 5
    #: Failed to decode content (network configuration, version info, result).
    DECODING_FAILURE = 6
    #: Invalid network configuration.
    INVALID_NETWORK_CONFIG = 7
    #: A transient condition: the runtime should retry the operation later.
    TRY_AGAIN_LATER = 11
    #: STATUS: the plugin is not available (cannot service ADD requests).
    PLUGIN_NOT_AVAILABLE = 50
    #: STATUS: not available, and existing containers may have limited connectivity.
    LIMITED_CONNECTIVITY = 51


class CniError(PodnetError):
    """An error a CNI plugin reports to its runtime.

    Args:
        code: one of :class:`ErrorCode`, or 100+ for a plugin-specific error.
        msg: a short message characterizing the error.
        details: a longer message; podnet puts the fix here.
    """

    kind = "cni"

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg, hint=details or None)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def __repr__(self) -> str:
        return f"CniError(code={self.code}, msg={self.msg!r}, details={self.details!r})"

    def to_json(self, version: str) -> dict[str, Any]:
        """The error result of section 5, stamped with the protocol ``version``."""
        return {"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details}

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "code": self.code}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> CniError:
        """Read the error result of a delegated plugin (e.g. an IPAM plugin).

        Tolerant by design: whatever the delegate printed is passed on, with
        code 999 standing in for a missing or non-numeric code.
        """
        code = data.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            code = 999
        return CniError(code, str(data.get("msg", "")), str(data.get("details", "") or ""))
