"""Checks across pods and networks: the mistakes that otherwise surface as
kernel errors halfway through ``podnet up``.

- pod names, with the replica suffix, are DNS labels and unique;
- every network a pod lists is defined in the file;
- fixed addresses sit inside an explicit subnet, off its reserved addresses,
  on a single pod, and are not given twice;
- no host port is published twice, including by the replicas of one pod.
"""

from __future__ import annotations

from podnet.model import IPAddress, IPNetwork, PortMapping
from podnet.topology.fields import name_ok
from podnet.topology.networks import NetworkDraft
from podnet.topology.pods import AttachmentDraft, PodDraft
from podnet.topology.problems import Path, Problems
from podnet.topology.schema import did_you_mean

__all__ = ["check_pods"]

_MAX_NAME = 63


def check_pods(pods: list[PodDraft], networks: dict[str, NetworkDraft], problems: Problems) -> None:
    """Run every cross-check, reporting each problem where it was written."""
    _check_names(pods, problems)
    _check_references(pods, networks, problems)
    _check_addresses(pods, networks, problems)
    _check_ports(pods, problems)


def _check_names(pods: list[PodDraft], problems: Problems) -> None:
    defined: dict[str, str] = {}
    for pod in pods:
        if not name_ok("pod", pod.name, pod.path, problems) or not _suffix_fits(pod, problems):
            continue
        for name in pod.names():
            if name in defined:
                problems.add(
                    pod.path,
                    f"pod name {name!r} is used twice: "
                    f"by {defined[name]} and by {_origin(pod, name)}",
                    "rename one of the pods",
                    key=True,
                )
            defined.setdefault(name, _origin(pod, name))


def _origin(pod: PodDraft, name: str) -> str:
    return f"pod {pod.name!r}" if name == pod.name else f"replica {name!r} of pod {pod.name!r}"


def _suffix_fits(pod: PodDraft, problems: Problems) -> bool:
    if not pod.replicas:
        return True
    longest = f"{pod.name}-{pod.replicas}"
    if len(longest) <= _MAX_NAME:
        return True
    problems.add(
        pod.path,
        f"pod name {longest!r} (with replica suffix) is {len(longest)} characters; "
        f"names are at most {_MAX_NAME}",
        f"shorten {pod.name!r} to at most {_MAX_NAME - len(longest) + len(pod.name)} characters",
        key=True,
    )
    return False


def _check_references(
    pods: list[PodDraft], networks: dict[str, NetworkDraft], problems: Problems
) -> None:
    for pod in pods:
        for att in pod.attachments:
            if att.network in networks:
                continue
            defined = ", ".join(sorted(networks)) or "none"
            guess = did_you_mean(att.network, networks)
            hint = f"networks defined here: {defined}"
            problems.add(
                _network_path(att),
                f"pod {pod.name!r} is on unknown network {att.network!r}",
                f"{guess} {hint}" if guess else hint,
            )


def _network_path(att: AttachmentDraft) -> Path:
    return att.path if not att.ips and att.ifname is None else (*att.path, "network")


def _check_addresses(
    pods: list[PodDraft], networks: dict[str, NetworkDraft], problems: Problems
) -> None:
    users: dict[tuple[str, IPAddress], str] = {}
    for pod in pods:
        for att in pod.attachments:
            network = networks.get(att.network)
            for address, where in att.ips.items():
                if network is None or not _address_ok(pod, network, address, where, problems):
                    continue
                first = users.setdefault((att.network, address), pod.name)
                if first != pod.name:
                    problems.add(
                        where,
                        f"fixed IP {address} on network {att.network!r} is given to both "
                        f"{first!r} and {pod.name!r}",
                        "give each pod its own address",
                    )


def _address_ok(
    pod: PodDraft, network: NetworkDraft, address: IPAddress, where: Path, problems: Problems
) -> bool:
    if pod.replicas is not None and pod.replicas > 1:
        problems.add(
            where,
            f"pod {pod.name!r} has {pod.replicas} replicas but a fixed IP {address}",
            "a fixed address fits one pod: drop replicas or the address",
        )
        return False
    subnet = network.subnet(address.version)
    if subnet is None:
        problems.add(where, *_no_subnet(network, address))
        return False
    trouble = _placement(subnet, address)
    if trouble:
        problems.add(
            where,
            f"fixed IP {address} {trouble} of network {network.name!r}",
            f"pick an address such as {_example(subnet)}",
        )
    return not trouble


def _no_subnet(network: NetworkDraft, address: IPAddress) -> tuple[str, str]:
    v = address.version
    key = "subnet" if v == 4 else "ipv6"
    if network.request.wants_auto(v):
        return (
            f"fixed IP {address} is on network {network.name!r}, "
            f"whose IPv{v} subnet is picked automatically",
            f"give network {network.name!r} an explicit {key}: that contains {address}",
        )
    return (
        f"fixed IP {address} is on network {network.name!r}, which has no IPv{v}",
        f"give network {network.name!r} an IPv{v} subnet ({key}:) that contains {address}",
    )


def _placement(subnet: IPNetwork, address: IPAddress) -> str | None:
    if address not in subnet:
        return f"is outside the subnet {subnet}"
    if address == subnet.network_address:
        return f"is the network address of {subnet}"
    if address == subnet.network_address + 1:
        return f"is the gateway (first address) of {subnet}"
    if address.version == 4 and address == subnet.broadcast_address:
        return f"is the broadcast address of {subnet}"
    return None


def _example(subnet: IPNetwork) -> IPAddress:
    return subnet.network_address + (10 if subnet.num_addresses > 16 else 2)


def _check_ports(pods: list[PodDraft], problems: Problems) -> None:
    published: list[tuple[PortMapping, str]] = []
    for pod in pods:
        if pod.ports and not pod.attachments:
            problems.add(
                (*pod.path, "ports"),
                f"pod {pod.name!r} publishes ports but is on no network",
                "add networks: [NETWORK] to the pod",
                key=True,
            )
        names = pod.names()
        if names:
            _check_pod_ports(pod, names, published, problems)
            published.extend((port, names[0]) for port, _ in pod.ports)


def _check_pod_ports(
    pod: PodDraft,
    names: list[str],
    published: list[tuple[PortMapping, str]],
    problems: Problems,
) -> None:
    """One pod's ports against each other, its replicas, and earlier pods."""
    for i, (port, where) in enumerate(pod.ports):
        if len(names) > 1:
            problems.add(where, *_replica_clash(port, names))
        _clash_within(pod, port, pod.ports[:i], where, problems)
        for other, owner in published:
            if port.clashes(other):
                problems.add(
                    where,
                    f"host port {_port(port)} is published by both {owner} and {names[0]}",
                    "publish it from one pod only, or use another host port",
                )


def _replica_clash(port: PortMapping, names: list[str]) -> tuple[str, str]:
    return (
        f"host port {_port(port)} is published by both {names[0]} and {names[1]}",
        "a pod with replicas cannot publish a fixed host port; drop replicas or the port",
    )


def _clash_within(
    pod: PodDraft,
    port: PortMapping,
    earlier: list[tuple[PortMapping, Path]],
    where: Path,
    problems: Problems,
) -> None:
    if any(port.clashes(other) for other, _ in earlier):
        problems.add(
            where,
            f"pod {pod.name!r} publishes host port {_port(port)} twice",
            "publish each host port once",
        )


def _port(port: PortMapping) -> str:
    return f"{port.host_port}/{port.protocol}"
