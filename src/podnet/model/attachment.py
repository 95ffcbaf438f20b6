"""CNI attachments: a container runtime's interface on a podnet network.

An attachment is keyed by (network, container id, ifname), as the CNI spec
identifies them; its namespace belongs to the runtime, not to podnet. It shares
IPAM and published-port bookkeeping with pods, so no address or host port is
ever handed out twice between the two.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podnet.model.names import host_veth_name
from podnet.model.pod import Interface, IPInterface, PodSpec
from podnet.model.ports import PortMapping

__all__ = ["CniAttachment"]


@dataclass(frozen=True, slots=True)
class CniAttachment:
    network: str
    container_id: str
    ifname: str
    netns: str
    addresses: tuple[IPInterface, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    mac: str | None = None
    ipam_plugin: str | None = None

    @property
    def host_ifname(self) -> str:
        """Stable for (network, container, ifname); always 15 bytes."""
        return host_veth_name(f"{self.network}/{self.container_id}", self.ifname, prefix="pnc")

    @property
    def owner(self) -> str:
        """How leases and messages name the attachment."""
        return f"container {self.container_id[:12]}/{self.ifname}"

    def as_pod(self) -> PodSpec:
        """The attachment seen as a pod, for IPAM, port clashes and nft rules."""
        digest = hashlib.sha256(f"{self.container_id}/{self.ifname}".encode()).hexdigest()[:10]
        iface = Interface(self.network, self.ifname, self.host_ifname, self.addresses)
        return PodSpec(
            name=f"cni-{digest}",
            ports=self.ports,
            interfaces=(iface,),
            owner=f"cni:{self.network}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "container_id": self.container_id,
            "ifname": self.ifname,
            "netns": self.netns,
            "addresses": [str(a) for a in self.addresses],
            "ports": [p.to_dict() for p in self.ports],
            "mac": self.mac,
            "ipam_plugin": self.ipam_plugin,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> CniAttachment:
        return CniAttachment(
            network=data["network"],
            container_id=data["container_id"],
            ifname=data["ifname"],
            netns=data["netns"],
            addresses=tuple(ipaddress.ip_interface(a) for a in data.get("addresses", [])),
            ports=tuple(PortMapping.from_dict(p) for p in data.get("ports", [])),
            mac=data.get("mac"),
            ipam_plugin=data.get("ipam_plugin"),
        )
