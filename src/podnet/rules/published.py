"""Destination NAT for published ports (``-p HOST_PORT:POD_PORT``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from podnet.model.network import IPAddress, Network
from podnet.model.pod import Interface, PodSpec
from podnet.model.ports import PortMapping
from podnet.rules.transaction import Rule

__all__ = ["CHAIN", "published_interface", "published_rules"]

CHAIN = "published_ports"


def published_interface(pod: PodSpec, networks: Mapping[str, Network]) -> Interface | None:
    """The interface that receives a pod's published ports: its first
    interface on a network that is not internal."""
    for iface in pod.interfaces:
        net = networks.get(iface.network)
        if net is not None and not net.internal:
            return iface
    return None


def _target(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _rule_for(pod: str, mapping: PortMapping, address: IPAddress) -> str:
    fam = "ip" if address.version == 4 else "ip6"
    match = f"meta nfproto {'ipv4' if address.version == 4 else 'ipv6'}"
    if mapping.host_ip is not None and not mapping.host_ip.is_unspecified:
        match = f"{fam} daddr {mapping.host_ip}"
    return (
        f"{match} {mapping.protocol} dport {mapping.host_port} "
        f"dnat {fam} to {_target(address, mapping.pod_port)}"
    )


def published_rules(pods: Iterable[PodSpec], networks: Mapping[str, Network]) -> list[Rule]:
    """Rules of the ``published_ports`` chain, jumped to from nat prerouting and
    output for packets addressed to the host itself (``fib daddr type local``).

    A mapping without a host IP is published for each IP version the pod has;
    one with a host IP only for that version.
    """
    rules: list[Rule] = []
    for pod in sorted(pods, key=lambda p: p.name):
        iface = published_interface(pod, networks)
        if iface is None or not pod.running:
            continue
        for mapping in pod.ports:
            for version in (4, 6):
                address = iface.ip(version)
                if address is None:
                    continue
                if mapping.host_ip is not None and mapping.host_ip.version != version:
                    continue
                rules.append(Rule(CHAIN, _rule_for(pod.name, mapping, address), f"pod:{pod.name}"))
    return rules
