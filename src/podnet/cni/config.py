"""The request configuration: the JSON a runtime writes to the plugin's stdin.

Spec 1.1.0 section 1 ("Plugin configuration objects") and section 3 ("Deriving
request configuration from plugin configuration"). The protocol's keys are
typed here; every other key belongs to the plugin and is handed over untouched
in :attr:`NetConf.plugin` (see :mod:`podnet.cni.plugin` for podnet's own).
Unknown keys are never an error: the spec lets a plugin refuse them, and
podnet chooses not to.

Error codes: stdin that is not a JSON object is 6 (decode); a version podnet
does not speak is 1; anything else wrong with a key is 7 (invalid network
config), with the key path in the message and a fix in the details.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.cni._fields import Fields
from podnet.cni.env import Command, Invocation
from podnet.cni.errors import CniError, ErrorCode
from podnet.cni.result import DNS, Result
from podnet.cni.runtime import (
    ConfArgs,
    RequestedIP,
    RuntimeConfig,
    parse_args,
    parse_runtime_config,
)
from podnet.cni.version import check_version, version_at_least

__all__ = [
    "GC_ATTACHMENTS_KEYS",
    "IpamConf",
    "NetConf",
    "check_request",
    "parse_config",
    "requested_ips",
    "valid_attachments",
]

#: Where GC finds the still-valid attachments: the spec's key, then the name the
#: spec-v1.1.0 tag printed by mistake (libcni writes both, cni#1101).
GC_ATTACHMENTS_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")

# Keys of the protocol (section 1 and 3), never part of ``NetConf.plugin``;
# every key starting with "cni.dev/" is reserved too.
_PROTOCOL_KEYS = frozenset(
    {
        "cniVersion",
        "cniVersions",
        "name",
        "type",
        "disableCheck",
        "disableGC",
        "loadOnlyInlinedPlugins",
        "capabilities",
        "runtimeConfig",
        "prevResult",
        "args",
        "ipam",
        "dns",
    }
)
# Section 1: a network name starts alphanumeric, then alphanumerics, '_', '.', '-'.
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MIN_VERSION = {Command.CHECK: "0.4.0", Command.GC: "1.1.0", Command.STATUS: "1.1.0"}


@dataclass(frozen=True, slots=True)
class IpamConf:
    """The ``ipam`` section: its ``type`` ("" when absent) and all of it, raw."""

    type: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NetConf:
    """One plugin's request configuration, parsed.

    ``valid_attachments`` is None when the request carried no GC list;
    ``plugin`` holds the keys that are not the protocol's; ``raw`` is the whole
    document, which delegated plugins receive unchanged (section 4).
    """

    cni_version: str
    name: str
    type: str
    disable_check: bool = False
    disable_gc: bool = False
    runtime_config: RuntimeConfig = field(default_factory=RuntimeConfig)
    prev_result: Result | None = None
    args: ConfArgs = field(default_factory=ConfArgs)
    ipam: IpamConf | None = None
    dns: DNS | None = None
    valid_attachments: frozenset[tuple[str, str]] | None = None
    plugin: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise CniError(
            ErrorCode.DECODING_FAILURE,
            f"cannot decode network config: {exc}",
            "the runtime must write one JSON object to stdin",
        ) from None
    if not isinstance(doc, dict):
        raise CniError(
            ErrorCode.DECODING_FAILURE,
            "cannot decode network config: it is not a JSON object",
            "the runtime must write one JSON object to stdin",
        )
    return doc


def parse_config(data: bytes) -> NetConf:
    """Parse and validate the request configuration read from stdin.

    Raises:
        CniError: 6 for stdin that is not a JSON object, 1 for an unsupported
            ``cniVersion`` (supported list in the details), 7 for a bad key, 6
            for a malformed ``prevResult``.
    """
    doc = _decode(data)
    f = Fields(doc)
    version = check_version(doc.get("cniVersion"))
    prev = f.child("prevResult")
    ipam = f.child("ipam")
    dns = f.child("dns")
    return NetConf(
        cni_version=version,
        name=_network_name(f),
        type=_executable(f, "type"),
        disable_check=f.flag("disableCheck"),
        disable_gc=f.flag("disableGC"),
        runtime_config=parse_runtime_config(f.child("runtimeConfig")),
        prev_result=None if prev is None else Result.from_json(prev.data, version, "prevResult"),
        args=parse_args(f.child("args")),
        ipam=None if ipam is None else IpamConf(_executable(ipam, "type", ""), dict(ipam.data)),
        dns=None if dns is None else DNS.from_fields(dns),
        valid_attachments=_attachments(f),
        plugin={
            k: v for k, v in doc.items() if k not in _PROTOCOL_KEYS and not k.startswith("cni.dev/")
        },
        raw=doc,
    )


def _network_name(f: Fields) -> str:
    name = f.required_text("name")
    if not _NETWORK_NAME.fullmatch(name):
        f.fail(
            "name",
            f"is {name!r}",
            "a network name starts with a letter or digit, followed by letters, digits, "
            "'_', '.' or '-'",
        )
    return name


def _executable(f: Fields, key: str, default: str | None = None) -> str:
    """A plugin binary's name (``type``, ``ipam.type``): no path separators."""
    value = f.text(key)
    if value is None:
        if default is None:
            f.fail(key, "is missing", "set it to the name of the plugin binary, e.g. podnet")
        return default
    if any(c in value for c in "/\\\0"):
        f.fail(key, f"is {value!r}", "name the plugin binary without a path (no '/' or '\\\\')")
    return value


def _attachments(f: Fields) -> frozenset[tuple[str, str]] | None:
    if not any(f.has(key) for key in GC_ATTACHMENTS_KEYS):
        return None
    found: set[tuple[str, str]] = set()
    for key in GC_ATTACHMENTS_KEYS:
        found.update(
            (a.required_text("containerID"), a.required_text("ifname")) for a in f.children(key)
        )
    return frozenset(found)


def valid_attachments(conf: NetConf) -> set[tuple[str, str]]:
    """The ``(containerID, ifname)`` pairs a GC must keep.

    Both keys count (their union: GC keeps whatever either lists). A GC request
    without either is refused rather than read as "nothing is valid": the spec
    says the runtime must provide the key, and guessing wrong would free every
    address of the network.

    Raises:
        CniError: code 7 when the request lists no valid attachments at all.
    """
    if conf.valid_attachments is None:
        raise CniError(
            ErrorCode.INVALID_NETWORK_CONFIG,
            f"invalid network config: GC request has no {GC_ATTACHMENTS_KEYS[0]}",
            "the runtime must list the attachments still in use (CNI spec section 2, GC); "
            "podnet does not garbage-collect without that list",
        )
    return set(conf.valid_attachments)


def check_request(invocation: Invocation, conf: NetConf) -> None:
    """Check that the command fits the configuration's version and content.

    CHECK exists from 0.4.0 and needs ``prevResult`` (section 2, CHECK: "A
    runtime must include a prevResult"); GC and STATUS exist from 1.1.0.

    Raises:
        CniError: 1 when the version lacks the command, 7 when CHECK has no
            ``prevResult``.
    """
    minimum = _MIN_VERSION.get(invocation.command)
    if minimum and not version_at_least(conf.cni_version, minimum):
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f"incompatible CNI version: config version {conf.cni_version} "
            f"does not allow {invocation.command}",
            f"{invocation.command} needs cniVersion {minimum} or later",
        )
    if invocation.command is Command.CHECK and conf.prev_result is None:
        raise CniError(
            ErrorCode.INVALID_NETWORK_CONFIG,
            "invalid network config: CHECK without prevResult",
            "the runtime must pass the result of the last ADD as prevResult",
        )


def requested_ips(conf: NetConf, invocation: Invocation) -> tuple[RequestedIP, ...]:
    """The addresses the runtime asked for, from the first source that has any.

    Order: ``runtimeConfig.ips`` (a capability the configuration declared),
    then ``args.cni.ips``, then CNI_ARGS ``IP`` (comma-separated), which
    CONVENTIONS.md says to ignore when ``args`` carries the same thing.

    Raises:
        CniError: code 4 for a malformed CNI_ARGS ``IP``.
    """
    if conf.runtime_config.ips:
        return conf.runtime_config.ips
    if conf.args.ips:
        return conf.args.ips
    text = invocation.args.get("IP", "")
    try:
        return tuple(RequestedIP.parse(part) for part in text.split(",") if part)
    except ValueError:
        raise CniError(
            ErrorCode.INVALID_ENVIRONMENT,
            f"invalid CNI_ARGS value IP={text!r}",
            "write IP=<ip>[/<prefix>], several separated by ',', e.g. IP=10.1.0.5/24",
        ) from None
