"""Pods: a named network namespace, its interfaces, ports and process."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from podnet.errors import InvalidInput
from podnet.model.names import check_ifname, check_name
from podnet.model.network import IPAddress
from podnet.model.ports import PortMapping

__all__ = ["RESTART_POLICIES", "Attachment", "Interface", "PodSpec"]

RESTART_POLICIES = ("no", "on-failure", "always")
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True, slots=True)
class Attachment:
    """A pod's wish to be on a network, optionally with fixed addresses."""

    network: str
    ifname: str
    ips: tuple[IPAddress, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "ifname": self.ifname, "ips": [str(i) for i in self.ips]}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Attachment:
        return Attachment(
            network=data["network"],
            ifname=data["ifname"],
            ips=tuple(ipaddress.ip_address(i) for i in data.get("ips", [])),
        )


@dataclass(frozen=True, slots=True)
class Interface:
    """An attachment once IPAM has run: addresses with their prefix length."""

    network: str
    ifname: str
    host_ifname: str
    addresses: tuple[IPInterface, ...]

    def ip(self, version: int) -> IPAddress | None:
        return next((a.ip for a in self.addresses if a.version == version), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "ifname": self.ifname,
            "host_ifname": self.host_ifname,
            "addresses": [str(a) for a in self.addresses],
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Interface:
        return Interface(
            network=data["network"],
            ifname=data["ifname"],
            host_ifname=data["host_ifname"],
            addresses=tuple(ipaddress.ip_interface(a) for a in data["addresses"]),
        )


@dataclass(frozen=True, slots=True)
class PodSpec:
    """Desired state of one pod.

    ``interfaces`` is filled by the agent (IPAM) when the pod is admitted; the
    order of ``attachments`` decides eth0, eth1, ... and the default route.
    """

    name: str
    attachments: tuple[Attachment, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    restart: str = "no"
    running: bool = True
    owner: str = ""
    interfaces: tuple[Interface, ...] = ()

    def validate(self) -> PodSpec:
        """Check names, interface names, restart policy and duplicate ports."""
        check_name("pod", self.name)
        if self.restart not in RESTART_POLICIES:
            raise InvalidInput(
                f"restart policy {self.restart!r} of pod {self.name!r} is unknown",
                hint="use one of " + ", ".join(RESTART_POLICIES),
            )
        seen_nets: set[str] = set()
        seen_ifs: set[str] = set()
        for att in self.attachments:
            check_ifname(att.ifname, what=f"interface name of pod {self.name!r}")
            if att.network in seen_nets:
                raise InvalidInput(
                    f"pod {self.name!r} is attached to network {att.network!r} twice",
                    hint="list each network once",
                )
            if att.ifname in seen_ifs:
                raise InvalidInput(f"pod {self.name!r} uses interface {att.ifname!r} twice")
            seen_nets.add(att.network)
            seen_ifs.add(att.ifname)
        for i, port in enumerate(self.ports):
            for other in self.ports[:i]:
                if port.clashes(other):
                    raise InvalidInput(
                        f"pod {self.name!r} publishes host port "
                        f"{port.host_port}/{port.protocol} twice",
                        hint="publish each host port once",
                    )
        if self.ports and not self.attachments:
            raise InvalidInput(
                f"pod {self.name!r} publishes ports but is on no network",
                hint="attach it with --net NETWORK",
            )
        return self

    def with_interfaces(self, interfaces: tuple[Interface, ...]) -> PodSpec:
        return replace(self, interfaces=interfaces)

    def interface(self, network: str) -> Interface | None:
        return next((i for i in self.interfaces if i.network == network), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "attachments": [a.to_dict() for a in self.attachments],
            "ports": [p.to_dict() for p in self.ports],
            "labels": dict(self.labels),
            "command": list(self.command),
            "env": dict(self.env),
            "restart": self.restart,
            "running": self.running,
            "owner": self.owner,
            "interfaces": [i.to_dict() for i in self.interfaces],
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PodSpec:
        return PodSpec(
            name=data["name"],
            attachments=tuple(Attachment.from_dict(a) for a in data.get("attachments", [])),
            ports=tuple(PortMapping.from_dict(p) for p in data.get("ports", [])),
            labels=dict(data.get("labels", {})),
            command=tuple(data.get("command", [])),
            env=dict(data.get("env", {})),
            restart=str(data.get("restart", "no")),
            running=bool(data.get("running", True)),
            owner=str(data.get("owner", "")),
            interfaces=tuple(Interface.from_dict(i) for i in data.get("interfaces", [])),
        )
