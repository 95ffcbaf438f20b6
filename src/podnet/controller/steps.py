"""The steps a reconcile takes, as data.

The planner (pure) turns desired and observed state into a list of steps; the
executor (``apply.py``) carries them out through the kernel adapters. Keeping
steps as data is what lets ``podnet up --dry-run`` print exactly what a real
run would do, and lets unit tests assert on plans without root.
"""

from __future__ import annotations

from dataclasses import dataclass

from podnet.model.network import IPAddress, IPNetwork
from podnet.model.pod import IPInterface

__all__ = [
    "AddAddress",
    "AddBridge",
    "AddDefaultRoute",
    "AddRoute",
    "AddVeth",
    "AddVipLink",
    "ApplyNft",
    "CreateNetns",
    "DelAddress",
    "DeleteLink",
    "DeleteNetns",
    "SetHairpin",
    "SetLinkUp",
    "SetMaster",
    "SetSysctl",
    "Step",
]


def _ns(netns: str | None) -> str:
    return f"-n {netns} " if netns else ""


@dataclass(frozen=True, slots=True)
class AddBridge:
    name: str
    mtu: int
    alias: str

    def describe(self) -> str:
        return f"ip link add {self.name} type bridge mtu {self.mtu} alias {self.alias!r}"


@dataclass(frozen=True, slots=True)
class AddVipLink:
    """The interface the host routes service VIPs through (nft DNATs them)."""

    name: str
    alias: str

    def describe(self) -> str:
        return f"ip link add {self.name} type bridge alias {self.alias!r}"


@dataclass(frozen=True, slots=True)
class AddRoute:
    netns: str | None
    dst: IPNetwork
    ifname: str

    def describe(self) -> str:
        flag = "-6 " if self.dst.version == 6 else ""
        return f"ip {flag}{_ns(self.netns)}route replace {self.dst} dev {self.ifname}"


@dataclass(frozen=True, slots=True)
class SetLinkUp:
    netns: str | None
    name: str

    def describe(self) -> str:
        return f"ip {_ns(self.netns)}link set {self.name} up"


@dataclass(frozen=True, slots=True)
class AddAddress:
    netns: str | None
    ifname: str
    address: IPInterface

    def describe(self) -> str:
        return f"ip {_ns(self.netns)}addr add {self.address} dev {self.ifname}"


@dataclass(frozen=True, slots=True)
class DelAddress:
    netns: str | None
    ifname: str
    address: IPInterface

    def describe(self) -> str:
        return f"ip {_ns(self.netns)}addr del {self.address} dev {self.ifname}"


@dataclass(frozen=True, slots=True)
class SetSysctl:
    netns: str | None
    path: tuple[str, ...]
    value: str

    def describe(self) -> str:
        where = f"ip netns exec {self.netns} " if self.netns else ""
        return f"{where}sysctl -w {'.'.join(self.path)}={self.value}"


@dataclass(frozen=True, slots=True)
class DeleteLink:
    netns: str | None
    name: str

    def describe(self) -> str:
        return f"ip {_ns(self.netns)}link del {self.name}"


@dataclass(frozen=True, slots=True)
class CreateNetns:
    name: str
    pod: str

    def describe(self) -> str:
        return f"ip netns add {self.name}"


@dataclass(frozen=True, slots=True)
class DeleteNetns:
    name: str

    def describe(self) -> str:
        return f"ip netns del {self.name}"


@dataclass(frozen=True, slots=True)
class AddVeth:
    netns: str
    ifname: str
    host_ifname: str
    mtu: int
    alias: str

    def describe(self) -> str:
        return (
            f"ip -n {self.netns} link add {self.ifname} mtu {self.mtu} type veth "
            f"peer name {self.host_ifname} netns <host>"
        )


@dataclass(frozen=True, slots=True)
class SetMaster:
    name: str
    bridge: str

    def describe(self) -> str:
        return f"ip link set {self.name} master {self.bridge}"


@dataclass(frozen=True, slots=True)
class SetHairpin:
    """A pod reaching its own published port leaves and re-enters one bridge port."""

    name: str

    def describe(self) -> str:
        return f"bridge link set dev {self.name} hairpin on"


@dataclass(frozen=True, slots=True)
class AddDefaultRoute:
    netns: str
    gateway: IPAddress
    ifname: str

    def describe(self) -> str:
        flag = "-6 " if self.gateway.version == 6 else ""
        return (
            f"ip {flag}-n {self.netns} route replace default via {self.gateway} dev {self.ifname}"
        )


@dataclass(frozen=True, slots=True)
class ApplyNft:
    script: str

    def describe(self) -> str:
        return "nft -f - <<EOF\n" + self.script + "EOF"


Step = (
    AddBridge
    | AddVipLink
    | AddRoute
    | SetLinkUp
    | AddAddress
    | DelAddress
    | SetSysctl
    | DeleteLink
    | CreateNetns
    | DeleteNetns
    | AddVeth
    | SetMaster
    | SetHairpin
    | AddDefaultRoute
    | ApplyNft
)
