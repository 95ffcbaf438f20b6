"""Admission: turn requests into desired state (subnets and addresses resolved),
refusing conflicts with an error that names the other party. Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from podnet.errors import Conflict, InvalidInput, NotFound
from podnet.ipam import allocate, find_overlap, pick_subnet, reserved_addresses
from podnet.model.names import host_veth_name
from podnet.model.network import IPAddress, IPNetwork, Network, NetworkRequest
from podnet.model.pod import Attachment, Interface, PodSpec
from podnet.settings import Settings

__all__ = ["Allocations", "PortChecker", "admit_pod", "check_ports", "resolve_network"]

#: Given (protocol, port), describe who holds it on the host, or None.
PortChecker = Callable[[str, int], str | None]


def resolve_network(
    req: NetworkRequest,
    existing: Mapping[str, Network],
    host_routes: Iterable[tuple[IPNetwork, str]],
    settings: Settings,
) -> Network:
    """Resolve a request into a Network: explicit subnets checked, auto ones picked.

    Raises:
        Conflict: an explicit subnet overlaps a network or a route of the host.
    """
    taken: dict[str, list[IPNetwork]] = {
        f"network {n.name!r}": list(n.subnets) for n in existing.values() if n.name != req.name
    }
    for route, where in host_routes:
        taken.setdefault(f"the host's route {route} ({where})", []).append(route)
    for subnet in req.subnets:
        clash = find_overlap(subnet, taken)
        if clash:
            raise Conflict(
                f"subnet {subnet} of network {req.name!r} overlaps {clash}",
                hint="pick a subnet that overlaps nothing, or leave --subnet out to get a free one",
            )
    avoid = [s for subnets in taken.values() for s in subnets]
    subnets = list(req.subnets)
    if req.wants_auto(4):
        subnets.insert(0, pick_subnet(settings.pool4, settings.subnet_size, avoid))
    if req.wants_auto(6):
        subnets.append(pick_subnet(settings.pool6, 64, avoid))
    return Network.build(
        req.name,
        subnets,
        bridge=req.bridge,
        internal=req.internal,
        masquerade=req.masquerade,
        mtu=req.mtu,
        labels=req.labels,
        owner=req.owner,
    )


@dataclass(slots=True)
class Allocations:
    """Addresses and ports already handed out, updated as pods are admitted."""

    holders: dict[tuple[str, IPAddress], str] = field(default_factory=dict)
    cursors: dict[tuple[str, int], IPAddress] = field(default_factory=dict)
    ports: dict[tuple[str, int], list[tuple[str, PodSpec]]] = field(default_factory=dict)
    #: How messages name holders that are not pods (a runtime's containers), by name.
    aliases: dict[str, str] = field(default_factory=dict)

    def who(self, name: str) -> str:
        """The holder called ``name`` as a person knows it: a pod, or a container."""
        return self.aliases.get(name, f"pod {name!r}")

    @staticmethod
    def of(pods: Iterable[PodSpec], cursors: Mapping[str, Mapping[str, str]]) -> Allocations:
        alloc = Allocations()
        for net, cursor in cursors.items():
            for version, ip in cursor.items():
                alloc.cursors[(net, int(version))] = ipaddress.ip_address(ip)
        for pod in pods:
            alloc.add(pod)
        return alloc

    def add(self, pod: PodSpec) -> None:
        for iface in pod.interfaces:
            for addr in iface.addresses:
                self.holders[(iface.network, addr.ip)] = pod.name
                self.cursors[(iface.network, addr.version)] = addr.ip
        for mapping in pod.ports:
            self.ports.setdefault(mapping.key(), []).append((pod.name, pod))

    def remove(self, pod: PodSpec) -> None:
        for iface in pod.interfaces:
            for addr in iface.addresses:
                self.holders.pop((iface.network, addr.ip), None)
        for mapping in pod.ports:
            holders = self.ports.get(mapping.key(), [])
            self.ports[mapping.key()] = [h for h in holders if h[0] != pod.name]


def _address(
    pod: PodSpec, net: Network, subnet: IPNetwork, fixed: IPAddress | None, alloc: Allocations
) -> IPAddress:
    gateway = net.gateway_for(subnet.version)
    reserved = reserved_addresses(subnet, gateway)
    if fixed is None:
        used = {ip for (n, ip) in alloc.holders if n == net.name}
        return allocate(
            subnet,
            used=used,
            reserved=reserved,
            after=alloc.cursors.get((net.name, subnet.version)),
        )
    if fixed in reserved:
        raise InvalidInput(
            f"address {fixed} for pod {pod.name!r} is reserved in network {net.name!r}",
            hint="the network address, broadcast and gateway cannot be given to a pod",
        )
    holder = alloc.holders.get((net.name, fixed))
    if holder is not None and holder != pod.name:
        raise Conflict(
            f"address {fixed} on network {net.name!r} is already used by {alloc.who(holder)}",
            hint="pick another --ip or leave it out to get a free one",
        )
    return fixed


def _check_networks(pod: PodSpec, networks: Mapping[str, Network]) -> None:
    for att in pod.attachments:
        if att.network not in networks:
            known = ", ".join(sorted(networks)) or "none yet"
            raise NotFound(
                f"network {att.network!r} of pod {pod.name!r} does not exist",
                hint=f"create it with 'podnet network create {att.network}' (networks: {known})",
            )


def _check_fixed(pod: PodSpec, att: Attachment, net: Network) -> None:
    versions = [ip.version for ip in att.ips]
    if len(versions) != len(set(versions)):
        raise InvalidInput(
            f"pod {pod.name!r} asks for two addresses of one IP version on network {net.name!r}",
            hint="give at most one IPv4 and one IPv6 address per network",
        )
    for ip in att.ips:
        subnet = net.subnet_for(ip.version)
        if subnet is None or ip not in subnet:
            raise InvalidInput(
                f"address {ip} for pod {pod.name!r} is outside network {net.name!r} "
                f"({', '.join(map(str, net.subnets))})",
                hint="pick an address inside the network's subnet",
            )


def _interfaces(
    pod: PodSpec, networks: Mapping[str, Network], alloc: Allocations
) -> list[Interface]:
    interfaces = []
    for att in pod.attachments:
        net = networks[att.network]
        _check_fixed(pod, att, net)
        addresses = []
        for subnet in net.subnets:
            fixed = next((ip for ip in att.ips if ip.version == subnet.version), None)
            ip = _address(pod, net, subnet, fixed, alloc)
            alloc.holders[(net.name, ip)] = pod.name
            alloc.cursors[(net.name, subnet.version)] = ip
            addresses.append(ipaddress.ip_interface(f"{ip}/{subnet.prefixlen}"))
        host_if = host_veth_name(pod.name, att.ifname)
        interfaces.append(Interface(net.name, att.ifname, host_if, tuple(addresses)))
    return interfaces


def check_ports(
    pod: PodSpec, networks: Mapping[str, Network], alloc: Allocations, holder: PortChecker
) -> None:
    public = [networks[a.network] for a in pod.attachments if not networks[a.network].internal]
    if pod.ports and not public:
        raise InvalidInput(
            f"pod {pod.name!r} publishes ports but is only on internal networks",
            hint="attach it to a network that is not --internal, or drop -p",
        )
    for mapping in pod.ports:
        if mapping.host_ip is not None and public[0].subnet_for(mapping.host_ip.version) is None:
            raise InvalidInput(
                f"pod {pod.name!r} publishes {mapping} on an IPv{mapping.host_ip.version} "
                f"address but has no IPv{mapping.host_ip.version} address on {public[0].name!r}",
                hint="publish on an address of the pod's IP version, or leave the host IP out",
            )
        for other_name, other in alloc.ports.get(mapping.key(), []):
            if other_name == pod.name:
                continue
            if any(mapping.clashes(o) for o in other.ports):
                raise Conflict(
                    f"host port {mapping.host_port}/{mapping.protocol} is already published "
                    f"by {alloc.who(other_name)}",
                    hint=f"pick another host port, or remove {alloc.who(other_name)} first",
                )
        user = holder(mapping.protocol, mapping.host_port)
        if user is not None:
            raise Conflict(
                f"host port {mapping.host_port}/{mapping.protocol} is in use by {user}",
                hint="pick another host port, or stop that process",
            )


def admit_pod(
    spec: PodSpec, networks: Mapping[str, Network], alloc: Allocations, holder: PortChecker
) -> PodSpec:
    """Validate a pod, give it addresses, check its ports; record it in ``alloc``."""
    spec.validate()
    _check_networks(spec, networks)
    check_ports(spec, networks, alloc, holder)
    pod = spec.with_interfaces(tuple(_interfaces(spec, networks, alloc)))
    alloc.add(pod)
    return pod
