"""The planner: desired state and observed kernel state in, steps out. Pure.

Order of a plan: pods that are no longer wanted go first (their netns, and with
it their veths), then bridges no longer wanted, then bridges and pods that are
wanted, then one nft transaction. Every object podnet creates carries a tag
(bridge and veth alias ``podnet:<table>:...``; netns recorded in the store), and
only tagged or recorded objects are ever removed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_interface

from podnet.controller import steps as s
from podnet.errors import Conflict
from podnet.model.names import netns_name
from podnet.model.network import IPAddress, IPNetwork, Network
from podnet.model.pod import Interface, IPInterface, PodSpec

__all__ = ["LinkState", "Observed", "PodObserved", "plan", "tag"]

BRIDGE_LINK_LOCAL = ip_interface("fe80::1/64")
FORWARDING = (("net", "ipv4", "ip_forward"), ("net", "ipv6", "conf", "all", "forwarding"))


def tag(table: str, kind: str, name: str) -> str:
    """The alias podnet puts on a link it owns."""
    return f"podnet:{table}:{kind}:{name}"


@dataclass(frozen=True, slots=True)
class LinkState:
    name: str
    kind: str | None
    alias: str | None
    master: str | None
    up: bool
    addresses: frozenset[IPInterface] = frozenset()


@dataclass(slots=True)
class PodObserved:
    links: dict[str, LinkState] = field(default_factory=dict)
    gateways: set[IPAddress] = field(default_factory=set)


@dataclass(slots=True)
class Observed:
    """What the kernel has, as read by ``observe.py``."""

    host_links: dict[str, LinkState] = field(default_factory=dict)
    netns: set[str] = field(default_factory=set)
    pods: dict[str, PodObserved] = field(default_factory=dict)
    sysctls: dict[tuple[str, ...], str] = field(default_factory=dict)
    host_routes: set[tuple[str, str]] = field(default_factory=set)  # (dst, device)


@dataclass(frozen=True, slots=True)
class Context:
    table: str
    netns_prefix: str
    owned_netns: Mapping[str, str]
    sysctls: Mapping[tuple[str, ...], str]


def plan(
    networks: Mapping[str, Network],
    pods: Mapping[str, PodSpec],
    observed: Observed,
    *,
    table: str,
    netns_prefix: str,
    owned_netns: Mapping[str, str],
    trusted: Collection[str] = (),
    service_pools: Sequence[IPNetwork] = (),
) -> list[s.Step]:
    """Every step that brings the kernel to the desired state (no nft).

    Pods named in ``trusted`` are taken to be as the last pass left them (a
    scoped reconcile after one API call); the periodic full pass checks all.
    """
    ctx = Context(table, netns_prefix, owned_netns, observed.sysctls)
    out: list[s.Step] = []
    wanted_ns = {netns_name(p, netns_prefix) for p in pods}
    # A recorded netns goes with its pod, not by name: a standalone podnet-cni
    # may not know the agent's netns prefix, and must not take pods' netns.
    out += [
        s.DeleteNetns(ns)
        for ns, pod in sorted(owned_netns.items())
        if ns not in wanted_ns and pod not in pods
    ]
    out += _stale_bridges(networks, observed, table)
    out += _service_routes(service_pools, observed, table)
    out += [s.SetSysctl(None, p, "1") for p in FORWARDING if observed.sysctls.get(p) != "1"]
    for net in networks.values():
        out += _network(net, observed.host_links.get(net.bridge), ctx)
    for pod in pods.values():
        if pod.name not in trusted:
            out += _pod(pod, networks, observed, ctx)
    return out


#: The dummy interface through which the host routes service VIPs: a locally
#: generated packet needs a route before nft's output hook can DNAT it.
VIP_LINK = "pnvip0"


def _service_routes(pools: Sequence[IPNetwork], observed: Observed, table: str) -> list[s.Step]:
    alias = tag(table, "services", "vips")
    link = observed.host_links.get(VIP_LINK)
    if not pools:
        return [s.DeleteLink(None, VIP_LINK)] if link and link.alias == alias else []
    if link is not None and link.alias != alias:
        raise Conflict(
            f"a link named {VIP_LINK!r} exists and is not podnet's",
            hint="remove it; podnet routes service addresses through it",
        )
    out: list[s.Step] = [] if link else [s.AddVipLink(VIP_LINK, alias)]
    if link is None or not link.up:
        out.append(s.SetLinkUp(None, VIP_LINK))
    out += [
        s.AddRoute(None, pool, VIP_LINK)
        for pool in pools
        if (str(pool), VIP_LINK) not in observed.host_routes
    ]
    return out


def _stale_bridges(networks: Mapping[str, Network], observed: Observed, table: str) -> list[s.Step]:
    wanted = {tag(table, "network", n.name) for n in networks.values()}
    prefix = tag(table, "network", "")
    return [
        s.DeleteLink(None, link.name)
        for link in observed.host_links.values()
        if link.alias and link.alias.startswith(prefix) and link.alias not in wanted
    ]


def _network(net: Network, link: LinkState | None, ctx: Context) -> list[s.Step]:
    alias = tag(ctx.table, "network", net.name)
    out: list[s.Step] = []
    if link is not None and link.alias != alias and _is_ours(link, ctx.table):
        link = None  # another network's stale bridge: removed earlier in this plan
    if link is None:
        out.append(s.AddBridge(net.bridge, net.mtu, alias))
        have: frozenset[IPInterface] = frozenset()
    elif link.alias != alias:
        raise Conflict(
            f"a link named {net.bridge!r} already exists and is not network {net.name!r}'s bridge",
            hint="choose another network name or bridge name; podnet never takes over links",
        )
    else:
        # Link-local addresses the kernel made itself are not podnet's to remove.
        have = frozenset(a for a in link.addresses if not _kernel_link_local(a))
    want = {_gateway_interface(net, gw) for gw in net.gateways}
    if net.subnet_for(6) is not None:
        # The kernel solicits neighbours for forwarded IPv6 packets from a
        # link-local address; a bridge that came up without carrier has none.
        want.add(BRIDGE_LINK_LOCAL)
    out += [s.DelAddress(None, net.bridge, a) for a in sorted(have - want, key=str)]
    out += [s.AddAddress(None, net.bridge, a) for a in sorted(want - have, key=str)]
    if link is None or not link.up:
        out.append(s.SetLinkUp(None, net.bridge))
    if net.subnet_for(4) is not None:
        path = route_localnet(net.bridge)
        if link is None or ctx.sysctls.get(path) != "1":
            out.append(s.SetSysctl(None, path, "1"))
    return out


def route_localnet(bridge: str) -> tuple[str, ...]:
    """The sysctl that lets 127.0.0.1 be DNATed out of ``bridge``."""
    return ("net", "ipv4", "conf", bridge, "route_localnet")


def _is_ours(link: LinkState, table: str) -> bool:
    return bool(link.alias and link.alias.startswith(tag(table, "network", "")))


def _kernel_link_local(address: IPInterface) -> bool:
    return address.version == 6 and address.is_link_local and address != BRIDGE_LINK_LOCAL


def _gateway_interface(net: Network, gateway: IPAddress) -> IPInterface:
    subnet = net.subnet_for(gateway.version)
    assert subnet is not None
    return ip_interface(f"{gateway}/{subnet.prefixlen}")


def _pod(
    pod: PodSpec, networks: Mapping[str, Network], observed: Observed, ctx: Context
) -> list[s.Step]:
    ns = netns_name(pod.name, ctx.netns_prefix)
    out: list[s.Step] = []
    seen = observed.pods.get(ns)
    if ns in observed.netns and ns not in ctx.owned_netns:
        raise Conflict(
            f"network namespace {ns!r} exists but podnet did not create it",
            hint=f"remove it ('ip netns del {ns}') or name the pod differently; "
            "podnet never takes over namespaces",
        )
    if ns not in observed.netns or seen is None:
        out.append(s.CreateNetns(ns, pod.name))
        out.append(s.SetLinkUp(ns, "lo"))
        seen = PodObserved()
    elif not seen.links.get("lo", LinkState("lo", None, None, None, False)).up:
        out.append(s.SetLinkUp(ns, "lo"))
    wanted_ifs = {i.ifname for i in pod.interfaces}
    for name, link in seen.links.items():
        if link.kind == "veth" and name not in wanted_ifs:
            out.append(s.DeleteLink(ns, name))
    for index, iface in enumerate(pod.interfaces):
        net = networks[iface.network]
        host = observed.host_links.get(iface.host_ifname)
        out += _interface(ns, pod, iface, net, seen=seen, host=host, ctx=ctx)
        if index == 0 and not net.internal:
            out += _default_routes(ns, iface, net, seen)
    return out


def _interface(
    ns: str,
    pod: PodSpec,
    iface: Interface,
    net: Network,
    *,
    seen: PodObserved,
    host: LinkState | None,
    ctx: Context,
) -> list[s.Step]:
    out: list[s.Step] = []
    inside = seen.links.get(iface.ifname)
    if inside is None or host is None:
        if inside is not None:
            out.append(s.DeleteLink(ns, iface.ifname))
        alias = tag(ctx.table, "pod", f"{pod.name}/{iface.ifname}")
        out.append(s.AddVeth(ns, iface.ifname, iface.host_ifname, net.mtu, alias))
        have: frozenset[IPInterface] = frozenset()
        host_ok = False
    else:
        have = inside.addresses
        host_ok = host.master == net.bridge and host.up
    if not host_ok:
        out.append(s.SetMaster(iface.host_ifname, net.bridge))
        out.append(s.SetHairpin(iface.host_ifname))
        out.append(s.SetLinkUp(None, iface.host_ifname))
    out += [s.AddAddress(ns, iface.ifname, a) for a in iface.addresses if a not in have]
    if inside is None or not inside.up:
        out.append(s.SetLinkUp(ns, iface.ifname))
    return out


def _default_routes(ns: str, iface: Interface, net: Network, seen: PodObserved) -> list[s.Step]:
    out: list[s.Step] = []
    for gateway in net.gateways:
        if gateway not in seen.gateways and iface.ip(gateway.version) is not None:
            out.append(s.AddDefaultRoute(ns, gateway, iface.ifname))
    return out
