"""The ``pods:`` section -> drafts of pods, expanded into PodSpecs later.

A draft keeps where each part was written so that the cross-checks in
:mod:`podnet.topology.checks` can point at the offending line. Parsing here is
per pod: the command, published ports, interface names and fixed addresses.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import InvalidInput
from podnet.model import (
    RESTART_POLICIES,
    Attachment,
    IPAddress,
    PodSpec,
    PortMapping,
    check_ifname,
)
from podnet.topology.fields import integer, mapping, string_map, text
from podnet.topology.problems import Path, Problems

__all__ = ["AttachmentDraft", "PodDraft", "build_pods"]


@dataclass
class AttachmentDraft:
    """One entry of a pod's ``networks:`` list."""

    network: str
    path: Path
    ifname: str | None = None
    ips: dict[IPAddress, Path] = field(default_factory=dict)


@dataclass
class PodDraft:
    """One entry of ``pods:``; with ``replicas`` it stands for several pods."""

    name: str
    path: Path
    replicas: int | None = None
    attachments: list[AttachmentDraft] = field(default_factory=list)
    ports: list[tuple[PortMapping, Path]] = field(default_factory=list)
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    restart: str = "no"

    def names(self) -> list[str]:
        """The pods this entry becomes: ``web`` or ``web-1``, ``web-2``, ..."""
        if self.replicas is None:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(1, self.replicas + 1)]

    def specs(self, owner: str) -> list[PodSpec]:
        """The PodSpecs of every replica (validated by the caller)."""
        attachments = tuple(
            Attachment(a.network, a.ifname or "", tuple(a.ips)) for a in self.attachments
        )
        return [
            PodSpec(
                name=name,
                attachments=attachments,
                ports=tuple(port for port, _ in self.ports),
                labels=dict(self.labels),
                command=self.command,
                env=dict(self.env),
                restart=self.restart,
                owner=owner,
            )
            for name in self.names()
        ]


def build_pods(section: object, problems: Problems) -> list[PodDraft]:
    """Parse every pod of the ``pods:`` section (names are checked later)."""
    return [
        _build(name, mapping(spec), ("pods", name), problems)
        for name, spec in mapping(section).items()
    ]


def _build(name: str, spec: dict[str, Any], path: Path, problems: Problems) -> PodDraft:
    restart = text(spec.get("restart"))
    draft = PodDraft(
        name=name,
        path=path,
        replicas=integer(spec.get("replicas")),
        command=_command(spec.get("command"), (*path, "command"), problems),
        env=string_map(spec.get("env")),
        labels=string_map(spec.get("labels")),
        restart=restart if restart in RESTART_POLICIES else "no",
    )
    if draft.replicas is not None and not 0 <= draft.replicas <= 1000:
        draft.replicas = None
    draft.ports = _ports(spec.get("ports"), (*path, "ports"), problems)
    draft.attachments = _attachments(spec.get("networks"), (*path, "networks"), problems)
    return draft


def _command(value: object, path: Path, problems: Problems) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    if not isinstance(value, str):
        return ()
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        problems.add(
            path,
            f"command {value!r} cannot be split into arguments: {exc}",
            "close the quote, or write the command as a list",
        )
        return ()


def _ports(value: object, path: Path, problems: Problems) -> list[tuple[PortMapping, Path]]:
    ports: list[tuple[PortMapping, Path]] = []
    for i, spec in enumerate(value if isinstance(value, list) else []):
        if not isinstance(spec, str):
            continue
        try:
            ports.append((PortMapping.parse(spec), (*path, i)))
        except InvalidInput as exc:
            problems.add((*path, i), exc.message, exc.hint)
    return ports


def _attachments(value: object, path: Path, problems: Problems) -> list[AttachmentDraft]:
    drafts: list[AttachmentDraft] = []
    for i, entry in enumerate(value if isinstance(value, list) else []):
        draft = _attachment(entry, (*path, i), problems)
        if draft is None:
            continue
        if any(d.network == draft.network for d in drafts):
            problems.add(
                draft.path, f"network {draft.network!r} is listed twice", "list each network once"
            )
            continue
        drafts.append(draft)
    _name_interfaces(drafts, problems)
    return drafts


def _attachment(entry: object, path: Path, problems: Problems) -> AttachmentDraft | None:
    if isinstance(entry, str):
        return AttachmentDraft(entry, path)
    spec = mapping(entry)
    network = text(spec.get("network"))
    if network is None:
        return None
    draft = AttachmentDraft(network, path, _ifname(spec, path, problems))
    for key, version in (("ip", 4), ("ipv6", 6)):
        address = _address(spec, key, version, (*path, key), problems)
        if address is not None:
            draft.ips[address] = (*path, key)
    return draft


def _ifname(spec: dict[str, Any], path: Path, problems: Problems) -> str | None:
    name = text(spec.get("interface"))
    if name is None:
        return None
    try:
        return check_ifname(name)
    except InvalidInput as exc:
        problems.add((*path, "interface"), exc.message, exc.hint)
        return None


def _address(
    spec: dict[str, Any], key: str, version: int, path: Path, problems: Problems
) -> IPAddress | None:
    written = text(spec.get(key))
    if written is None:
        return None
    try:
        address = ipaddress.ip_address(written)
    except ValueError:
        example = "10.89.0.10" if version == 4 else "fd00:89::10"
        problems.add(path, f"{key} {written!r} is not an IPv{version} address", f"e.g. {example}")
        return None
    if address.version != version:
        problems.add(
            path,
            f"{key} {address} is an IPv{address.version} address",
            "put IPv4 addresses under ip: and IPv6 addresses under ipv6:",
        )
        return None
    return address


def _name_interfaces(drafts: list[AttachmentDraft], problems: Problems) -> None:
    """Give unnamed attachments the lowest free ethN, in list order."""
    taken: set[str] = set()
    for draft in drafts:
        if draft.ifname is None:
            continue
        if draft.ifname in taken:
            problems.add(
                (*draft.path, "interface"),
                f"interface {draft.ifname!r} is used twice in this pod",
                "give each network its own interface name",
            )
        taken.add(draft.ifname)
    index = 0
    for draft in drafts:
        while draft.ifname is None:
            if f"eth{index}" not in taken:
                draft.ifname = f"eth{index}"
                taken.add(draft.ifname)
            index += 1
