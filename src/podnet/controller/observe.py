"""Read what the kernel has into an :class:`Observed` snapshot for the planner."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from podnet.controller.plan import (
    FORWARDING,
    LinkState,
    Observed,
    PodObserved,
    route_localnet,
)
from podnet.errors import PodnetError
from podnet.kernel import netns, sysctl
from podnet.kernel.netlink import Netlink
from podnet.model.network import IPNetwork
from podnet.model.pod import IPInterface

__all__ = ["device_routes", "observe"]


def device_routes(nl: Netlink, names: Mapping[int, str]) -> list[tuple[IPNetwork, str]]:
    """Every main-table route with a destination, as (destination, device name)."""
    return [
        (r.dst, names.get(r.ifindex or -1, "?"))
        for v in (4, 6)
        for r in nl.routes(v)
        if r.dst is not None
    ]


def _link_states(nl: Netlink) -> tuple[dict[str, LinkState], dict[int, str]]:
    """The links with their addresses, and index -> name (one dump of each)."""
    links = nl.links()
    names = {link.index: link.name for link in links}
    addrs: dict[int, set[IPInterface]] = defaultdict(set)
    for addr in nl.addresses():
        addrs[addr.ifindex].add(addr.interface)
    states = {
        link.name: LinkState(
            name=link.name,
            kind=link.kind,
            alias=link.alias,
            master=names.get(link.master) if link.master else None,
            up=link.up,
            addresses=frozenset(addrs.get(link.index, ())),
        )
        for link in links
    }
    return states, names


def _pod_state(name: str) -> PodObserved:
    with Netlink(name) as nl:
        gateways = {r.gateway for v in (4, 6) for r in nl.routes(v) if r.dst is None and r.gateway}
        return PodObserved(links=_link_states(nl)[0], gateways=gateways)


def observe(host: Netlink, netns_prefix: str, pod_netns: Iterable[str]) -> Observed:
    """Snapshot of the host's links, podnet's netns and each wanted pod's insides."""
    present = set(netns.list_names(netns_prefix))
    pods: dict[str, PodObserved] = {}
    for name in pod_netns:
        if name in present:
            try:
                pods[name] = _pod_state(name)
            except PodnetError:
                present.discard(name)  # vanished while we looked: plan re-creates it
    host_links, names = _link_states(host)
    sysctls: dict[tuple[str, ...], str] = {}
    bridges = [n for n, link in host_links.items() if link.kind == "bridge" and link.alias]
    for path in (*FORWARDING, *(route_localnet(b) for b in bridges)):
        try:
            sysctls[path] = sysctl.get_path(path).strip()
        except PodnetError:
            sysctls[path] = ""
    routes = {(str(dst), dev) for dst, dev in device_routes(host, names)}
    return Observed(
        host_links=host_links, netns=present, pods=pods, sysctls=sysctls, host_routes=routes
    )
