"""CNI protocol versions: which podnet speaks, and the VERSION command's output.

Spec 1.1.0 section 2 ("VERSION") and section 5 ("VERSION Success"): the plugin
answers ``{cniVersion, supportedVersions}``, where ``cniVersion`` echoes the
version given on input. A configuration in any other version is refused with
code 1 and the supported list in the details, as libcni's reconciler does (an
exact match against the list).

podnet does not speak 0.1.0 or 0.2.0: their result format (``ip4``/``ip6``)
cannot carry more than one address per family, and every runtime podnet
targets (podman, containerd, CRI-O) speaks 0.3.1 or later.
"""

from __future__ import annotations

import json
from typing import Any

from podnet.cni._fields import json_type
from podnet.cni.errors import CniError, ErrorCode

__all__ = [
    "CURRENT_VERSION",
    "SUPPORTED_VERSIONS",
    "check_version",
    "reply_version",
    "requested_version",
    "version_at_least",
    "version_info",
]

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT_VERSION = SUPPORTED_VERSIONS[-1]
_ORDER = {v: i for i, v in enumerate(SUPPORTED_VERSIONS)}


def version_info(cni_version: str | None = None) -> dict[str, Any]:
    """The VERSION command's output.

    Args:
        cni_version: the ``cniVersion`` of the VERSION request, echoed back as
            section 5 asks; the newest version podnet speaks when there was none.
    """
    return {
        "cniVersion": cni_version or CURRENT_VERSION,
        "supportedVersions": list(SUPPORTED_VERSIONS),
    }


def _supported_list() -> str:
    return "podnet supports CNI versions " + ", ".join(SUPPORTED_VERSIONS)


def check_version(value: object, where: str = "cniVersion") -> str:
    """Return ``value`` when it is a version podnet speaks.

    A missing version means 0.1.0 to libcni (``create.DecodeVersion``), which
    podnet does not speak either, so every failure here is code 1.

    Raises:
        CniError: code 1, with the supported versions in the details.
    """
    if value is None or value == "":
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f"incompatible CNI version: {where} is missing (that means 0.1.0)",
            _supported_list(),
        )
    if not isinstance(value, str):
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f"incompatible CNI version: {where} must be a string, not {json_type(value)}",
            _supported_list(),
        )
    if value not in _ORDER:
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f"incompatible CNI version: {where} is {value!r}",
            _supported_list(),
        )
    return value


def version_at_least(version: str, minimum: str) -> bool:
    """True when supported ``version`` is ``minimum`` or newer."""
    return _ORDER[check_version(version)] >= _ORDER[check_version(minimum)]


def requested_version(data: bytes) -> str | None:
    """The ``cniVersion`` string of stdin, or None; never raises.

    VERSION needs no input (libcni sends ``{"cniVersion": ...}``), and an error
    reply wants a version even when stdin is not valid JSON.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    version = doc.get("cniVersion") if isinstance(doc, dict) else None
    return version if isinstance(version, str) and version else None


def reply_version(data: bytes) -> str:
    """The version to stamp on a reply to stdin ``data``: its own when podnet
    speaks it, else the newest podnet speaks."""
    version = requested_version(data)
    return version if version in _ORDER else CURRENT_VERSION
