"""The reconcile planner (desired + observed -> steps) and the steps' descriptions."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace

import pytest

from podnet.controller import steps as s
from podnet.controller.plan import (
    BRIDGE_LINK_LOCAL,
    FORWARDING,
    LinkState,
    Observed,
    PodObserved,
    plan,
    tag,
)
from podnet.errors import Conflict
from podnet.model import Attachment, Interface, Network, PodSpec, host_veth_name

TABLE = "podnet"
PREFIX = "podnet-"

FRONT = Network.build(
    "front", [ipaddress.ip_network("10.89.0.0/24"), ipaddress.ip_network("fd00:89::/64")]
)
BACK = Network.build("back", [ipaddress.ip_network("10.89.1.0/24")], internal=True)
NETWORKS = {"front": FRONT, "back": BACK}


def ifc(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(text)


def make_pod(name: str, *attached: tuple[str, str, tuple[str, ...]]) -> PodSpec:
    interfaces = tuple(
        Interface(network, ifname, host_veth_name(name, ifname), tuple(ifc(a) for a in addrs))
        for network, ifname, addrs in attached
    )
    attachments = tuple(Attachment(i.network, i.ifname) for i in interfaces)
    return PodSpec(name, attachments, interfaces=interfaces)


WEB = make_pod(
    "web",
    ("front", "eth0", ("10.89.0.2/24", "fd00:89::2/64")),
    ("back", "eth1", ("10.89.1.2/24",)),
)
PODS = {"web": WEB}
WEB_NS = PREFIX + "web"
VETH0 = host_veth_name("web", "eth0")
VETH1 = host_veth_name("web", "eth1")


def localnet(bridge: str) -> tuple[str, ...]:
    return ("net", "ipv4", "conf", bridge, "route_localnet")


def converged(
    networks: Mapping[str, Network] = NETWORKS, pods: Mapping[str, PodSpec] = PODS
) -> Observed:
    """What the kernel looks like once every step of a plan has been carried out."""
    observed = Observed(sysctls=dict.fromkeys(FORWARDING, "1"))
    for net in networks.values():
        addresses = {
            ifc(f"{gw}/{sub.prefixlen}") for gw, sub in zip(net.gateways, net.subnets, strict=True)
        }
        if net.subnet_for(6):
            addresses.add(BRIDGE_LINK_LOCAL)
        observed.host_links[net.bridge] = LinkState(
            net.bridge, "bridge", tag(TABLE, "network", net.name), None, True, frozenset(addresses)
        )
        if net.subnet_for(4):
            observed.sysctls[localnet(net.bridge)] = "1"
    for pod in pods.values():
        ns = PREFIX + pod.name
        observed.netns.add(ns)
        inside = PodObserved(links={"lo": LinkState("lo", None, None, None, True)})
        for index, iface in enumerate(pod.interfaces):
            net = networks[iface.network]
            observed.host_links[iface.host_ifname] = LinkState(
                iface.host_ifname,
                "veth",
                tag(TABLE, "pod", f"{pod.name}/{iface.ifname}"),
                net.bridge,
                True,
            )
            inside.links[iface.ifname] = LinkState(
                iface.ifname, "veth", None, None, True, frozenset(iface.addresses)
            )
            if index == 0 and not net.internal:
                inside.gateways |= {g for g in net.gateways if iface.ip(g.version)}
        observed.pods[ns] = inside
    return observed


def run(
    observed: Observed,
    *,
    networks: Mapping[str, Network] = NETWORKS,
    pods: Mapping[str, PodSpec] = PODS,
    owned: Mapping[str, str] | None = None,
) -> list[s.Step]:
    if owned is None:
        owned = {PREFIX + p: p for p in pods}
    return plan(networks, pods, observed, table=TABLE, netns_prefix=PREFIX, owned_netns=owned)


def test_tag() -> None:
    assert tag("podnet", "network", "front") == "podnet:podnet:network:front"
    assert tag("n2", "pod", "web/eth0") == "podnet:n2:pod:web/eth0"


# -- from nothing ----------------------------------------------------------


def test_empty_kernel_full_creation_order() -> None:
    front_alias = "podnet:podnet:network:front"
    back_alias = "podnet:podnet:network:back"
    assert run(Observed(), owned={}) == [
        s.SetSysctl(None, ("net", "ipv4", "ip_forward"), "1"),
        s.SetSysctl(None, ("net", "ipv6", "conf", "all", "forwarding"), "1"),
        # network front: bridge, gateways (sorted), IPv6 link-local, up, route_localnet
        s.AddBridge("pn-front", 1500, front_alias),
        s.AddAddress(None, "pn-front", ifc("10.89.0.1/24")),
        s.AddAddress(None, "pn-front", ifc("fd00:89::1/64")),
        s.AddAddress(None, "pn-front", ifc("fe80::1/64")),
        s.SetLinkUp(None, "pn-front"),
        s.SetSysctl(None, localnet("pn-front"), "1"),
        # network back: IPv4 only, so no link-local
        s.AddBridge("pn-back", 1500, back_alias),
        s.AddAddress(None, "pn-back", ifc("10.89.1.1/24")),
        s.SetLinkUp(None, "pn-back"),
        s.SetSysctl(None, localnet("pn-back"), "1"),
        # pod web
        s.CreateNetns(WEB_NS, "web"),
        s.SetLinkUp(WEB_NS, "lo"),
        s.AddVeth(WEB_NS, "eth0", VETH0, 1500, "podnet:podnet:pod:web/eth0"),
        s.SetMaster(VETH0, "pn-front"),
        s.SetHairpin(VETH0),
        s.SetLinkUp(None, VETH0),
        s.AddAddress(WEB_NS, "eth0", ifc("10.89.0.2/24")),
        s.AddAddress(WEB_NS, "eth0", ifc("fd00:89::2/64")),
        s.SetLinkUp(WEB_NS, "eth0"),
        s.AddDefaultRoute(WEB_NS, ipaddress.ip_address("10.89.0.1"), "eth0"),
        s.AddDefaultRoute(WEB_NS, ipaddress.ip_address("fd00:89::1"), "eth0"),
        s.AddVeth(WEB_NS, "eth1", VETH1, 1500, "podnet:podnet:pod:web/eth1"),
        s.SetMaster(VETH1, "pn-back"),
        s.SetHairpin(VETH1),
        s.SetLinkUp(None, VETH1),
        s.AddAddress(WEB_NS, "eth1", ifc("10.89.1.2/24")),
        s.SetLinkUp(WEB_NS, "eth1"),
    ]


def test_empty_kernel_plan_has_no_nft_step() -> None:
    assert not any(isinstance(step, s.ApplyNft) for step in run(Observed(), owned={}))


def test_bridges_come_before_pods_and_ports_after_their_bridge() -> None:
    steps = run(Observed(), owned={})
    bridges = {step.name: i for i, step in enumerate(steps) if isinstance(step, s.AddBridge)}
    first_netns = next(i for i, step in enumerate(steps) if isinstance(step, s.CreateNetns))
    assert max(bridges.values()) < first_netns
    for i, step in enumerate(steps):
        if isinstance(step, s.SetMaster):
            assert bridges[step.bridge] < i
        if isinstance(step, s.AddVeth):
            assert first_netns < i


def test_veth_mtu_follows_the_network() -> None:
    jumbo = Network.build("front", [ipaddress.ip_network("10.89.0.0/24")], mtu=9000)
    pod = make_pod("web", ("front", "eth0", ("10.89.0.2/24",)))
    steps = run(Observed(), networks={"front": jumbo}, pods={"web": pod}, owned={})
    assert s.AddBridge("pn-front", 9000, "podnet:podnet:network:front") in steps
    veth = next(step for step in steps if isinstance(step, s.AddVeth))
    assert veth.mtu == 9000


def test_nothing_wanted_nothing_there() -> None:
    assert run(converged({}, {}), networks={}, pods={}) == []


# -- already there ---------------------------------------------------------


def test_everything_present_means_no_steps() -> None:
    assert run(converged()) == []


def test_forwarding_off_is_turned_on() -> None:
    observed = converged()
    observed.sysctls[FORWARDING[1]] = "0"
    assert run(observed) == [s.SetSysctl(None, FORWARDING[1], "1")]


def test_missing_bridge_address_only_that_step() -> None:
    observed = converged()
    link = observed.host_links["pn-front"]
    observed.host_links["pn-front"] = replace(
        link, addresses=link.addresses - {ifc("fd00:89::1/64")}
    )
    assert run(observed) == [s.AddAddress(None, "pn-front", ifc("fd00:89::1/64"))]


def test_missing_bridge_link_local_only_that_step() -> None:
    observed = converged()
    link = observed.host_links["pn-front"]
    observed.host_links["pn-front"] = replace(link, addresses=link.addresses - {BRIDGE_LINK_LOCAL})
    assert run(observed) == [s.AddAddress(None, "pn-front", BRIDGE_LINK_LOCAL)]


def test_extra_bridge_address_is_removed() -> None:
    observed = converged()
    link = observed.host_links["pn-back"]
    stale = ifc("10.77.0.1/24")
    observed.host_links["pn-back"] = replace(link, addresses=link.addresses | {stale})
    assert run(observed) == [s.DelAddress(None, "pn-back", stale)]


def test_changed_gateway_prefix_replaces_the_address() -> None:
    observed = converged()
    link = observed.host_links["pn-back"]
    observed.host_links["pn-back"] = replace(link, addresses=frozenset({ifc("10.89.1.1/16")}))
    assert run(observed) == [
        s.DelAddress(None, "pn-back", ifc("10.89.1.1/16")),
        s.AddAddress(None, "pn-back", ifc("10.89.1.1/24")),
    ]


def test_bridge_down_is_brought_up_only() -> None:
    observed = converged()
    observed.host_links["pn-front"] = replace(observed.host_links["pn-front"], up=False)
    assert run(observed) == [s.SetLinkUp(None, "pn-front")]


def test_missing_pod_address_only_that_step() -> None:
    observed = converged()
    inside = observed.pods[WEB_NS]
    link = inside.links["eth0"]
    inside.links["eth0"] = replace(link, addresses=link.addresses - {ifc("10.89.0.2/24")})
    assert run(observed) == [s.AddAddress(WEB_NS, "eth0", ifc("10.89.0.2/24"))]


@pytest.mark.parametrize("gateway", ["10.89.0.1", "fd00:89::1"])
def test_missing_default_route_only_that_step(gateway: str) -> None:
    observed = converged()
    gw = ipaddress.ip_address(gateway)
    observed.pods[WEB_NS].gateways.discard(gw)
    assert run(observed) == [s.AddDefaultRoute(WEB_NS, gw, "eth0")]


def test_missing_veth_only_that_interface() -> None:
    observed = converged()
    del observed.pods[WEB_NS].links["eth1"]
    del observed.host_links[VETH1]
    assert run(observed) == [
        s.AddVeth(WEB_NS, "eth1", VETH1, 1500, "podnet:podnet:pod:web/eth1"),
        s.SetMaster(VETH1, "pn-back"),
        s.SetHairpin(VETH1),
        s.SetLinkUp(None, VETH1),
        s.AddAddress(WEB_NS, "eth1", ifc("10.89.1.2/24")),
        s.SetLinkUp(WEB_NS, "eth1"),
    ]


def test_host_end_missing_recreates_the_pair() -> None:
    observed = converged()
    del observed.host_links[VETH1]
    steps = run(observed)
    assert steps[:2] == [
        s.DeleteLink(WEB_NS, "eth1"),
        s.AddVeth(WEB_NS, "eth1", VETH1, 1500, "podnet:podnet:pod:web/eth1"),
    ]
    assert s.AddAddress(WEB_NS, "eth1", ifc("10.89.1.2/24")) in steps


def test_host_end_off_the_bridge_is_reattached() -> None:
    observed = converged()
    observed.host_links[VETH0] = replace(observed.host_links[VETH0], master=None)
    assert run(observed) == [
        s.SetMaster(VETH0, "pn-front"),
        s.SetHairpin(VETH0),
        s.SetLinkUp(None, VETH0),
    ]


def test_host_end_down_is_reattached_and_brought_up() -> None:
    observed = converged()
    observed.host_links[VETH0] = replace(observed.host_links[VETH0], up=False)
    assert run(observed)[-1] == s.SetLinkUp(None, VETH0)


def test_pod_interface_down_is_brought_up_only() -> None:
    observed = converged()
    inside = observed.pods[WEB_NS]
    inside.links["eth0"] = replace(inside.links["eth0"], up=False)
    assert run(observed) == [s.SetLinkUp(WEB_NS, "eth0")]


def test_pod_loopback_down_is_brought_up_only() -> None:
    observed = converged()
    inside = observed.pods[WEB_NS]
    inside.links["lo"] = replace(inside.links["lo"], up=False)
    assert run(observed) == [s.SetLinkUp(WEB_NS, "lo")]


def test_unwanted_veth_inside_the_pod_is_deleted_other_links_kept() -> None:
    observed = converged()
    inside = observed.pods[WEB_NS]
    inside.links["eth9"] = LinkState("eth9", "veth", None, None, True)
    inside.links["dummy0"] = LinkState("dummy0", "dummy", None, None, True)
    assert run(observed) == [s.DeleteLink(WEB_NS, "eth9")]


def test_missing_netns_is_created_and_filled() -> None:
    observed = converged()
    observed.netns.discard(WEB_NS)
    del observed.pods[WEB_NS]
    del observed.host_links[VETH0], observed.host_links[VETH1]
    steps = run(observed)
    assert steps[:2] == [s.CreateNetns(WEB_NS, "web"), s.SetLinkUp(WEB_NS, "lo")]
    assert not any(isinstance(step, s.DeleteLink) for step in steps)
    assert sum(isinstance(step, s.AddVeth) for step in steps) == 2


def test_netns_listed_but_unreadable_is_created_again() -> None:
    observed = converged()
    del observed.pods[WEB_NS]  # observe() could not look inside
    assert run(observed)[0] == s.CreateNetns(WEB_NS, "web")


def test_internal_first_network_gets_no_default_route() -> None:
    pod = make_pod("db", ("back", "eth0", ("10.89.1.5/24",)), ("front", "eth1", ("10.89.0.5/24",)))
    steps = run(Observed(), pods={"db": pod}, owned={})
    assert not any(isinstance(step, s.AddDefaultRoute) for step in steps)


def test_ipv4_only_pod_on_dual_stack_network_gets_only_the_ipv4_route() -> None:
    pod = make_pod("v4", ("front", "eth0", ("10.89.0.9/24",)))
    routes = [
        step
        for step in run(Observed(), pods={"v4": pod}, owned={})
        if isinstance(step, s.AddDefaultRoute)
    ]
    assert routes == [s.AddDefaultRoute(PREFIX + "v4", ipaddress.ip_address("10.89.0.1"), "eth0")]


# -- removal and ownership -------------------------------------------------


def test_stale_owned_netns_is_deleted_first() -> None:
    observed = converged()
    observed.netns.add(PREFIX + "old")
    owned = {WEB_NS: "web", PREFIX + "old": "old"}
    assert run(observed, owned=owned) == [s.DeleteNetns(PREFIX + "old")]


def test_recorded_netns_of_a_wanted_pod_is_kept_under_another_prefix() -> None:
    """A standalone podnet-cni plans with the default prefix, not the agent's."""
    observed = converged()
    owned = {WEB_NS: "web", "node1-p-web": "web", "node1-p-gone": "gone"}
    steps = run(observed, owned=owned)
    assert steps == [s.DeleteNetns("node1-p-gone")]


def test_unrecorded_netns_with_the_prefix_is_left_alone() -> None:
    observed = converged()
    observed.netns.add(PREFIX + "stray")
    assert run(observed) == []


def test_removed_pod_netns_deleted_before_anything_is_created() -> None:
    observed = Observed(netns={PREFIX + "gone"})
    steps = run(observed, owned={PREFIX + "gone": "gone"})
    assert steps[0] == s.DeleteNetns(PREFIX + "gone")
    assert steps.count(s.DeleteNetns(PREFIX + "gone")) == 1


def test_foreign_link_with_the_bridge_name_is_a_conflict() -> None:
    observed = converged()
    observed.host_links["pn-front"] = LinkState("pn-front", "bridge", None, None, True)
    with pytest.raises(Conflict) as info:
        run(observed)
    assert info.value.message == (
        "a link named 'pn-front' already exists and is not network 'front''s bridge"
    )
    assert info.value.hint is not None
    assert "never takes over" in info.value.hint


def test_another_tables_bridge_with_the_name_is_a_conflict() -> None:
    observed = converged()
    observed.host_links["pn-front"] = replace(
        observed.host_links["pn-front"], alias=tag("node2", "network", "front")
    )
    with pytest.raises(Conflict, match="pn-front"):
        run(observed)


def test_stale_tagged_bridge_is_removed() -> None:
    observed = converged()
    alias = tag(TABLE, "network", "old")
    observed.host_links["pn-old"] = LinkState("pn-old", "bridge", alias, None, True)
    assert run(observed) == [s.DeleteLink(None, "pn-old")]


def test_bridges_podnet_does_not_own_are_left_alone() -> None:
    observed = converged()
    observed.host_links["docker0"] = LinkState("docker0", "bridge", None, None, True)
    observed.host_links["pn-x"] = LinkState("pn-x", "bridge", "made by hand", None, True)
    observed.host_links["pn-y"] = LinkState(
        "pn-y", "bridge", tag("node2", "network", "y"), None, True
    )
    observed.host_links["eth0"] = LinkState(
        "eth0", "ether", tag(TABLE, "pod", "x/eth0"), None, True
    )
    assert run(observed) == []


def test_removal_order_netns_then_bridges_then_creation() -> None:
    observed = Observed(sysctls=dict.fromkeys(FORWARDING, "1"))
    observed.netns.add(PREFIX + "old")
    observed.host_links["pn-old"] = LinkState(
        "pn-old", "bridge", tag(TABLE, "network", "old"), None, True
    )
    steps = run(observed, owned={PREFIX + "old": "old"})
    assert steps[0] == s.DeleteNetns(PREFIX + "old")
    assert steps[1] == s.DeleteLink(None, "pn-old")
    assert isinstance(steps[2], s.AddBridge)


def test_route_localnet_is_recovered_after_a_crash() -> None:
    observed = converged()
    observed.sysctls[localnet("pn-front")] = "0"
    assert run(observed) == [s.SetSysctl(None, localnet("pn-front"), "1")]


# -- describe() ------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "text"),
    [
        (
            s.AddBridge("pn-front", 1500, "podnet:podnet:network:front"),
            "ip link add pn-front type bridge mtu 1500 alias 'podnet:podnet:network:front'",
        ),
        (s.SetLinkUp(None, "pn-front"), "ip link set pn-front up"),
        (s.SetLinkUp("ns1", "lo"), "ip -n ns1 link set lo up"),
        (
            s.AddAddress(None, "pn-front", ifc("10.89.0.1/24")),
            "ip addr add 10.89.0.1/24 dev pn-front",
        ),
        (
            s.AddAddress("ns1", "eth0", ifc("fd00:89::2/64")),
            "ip -n ns1 addr add fd00:89::2/64 dev eth0",
        ),
        (s.DelAddress(None, "br", ifc("10.0.0.1/8")), "ip addr del 10.0.0.1/8 dev br"),
        (
            s.SetSysctl(None, ("net", "ipv4", "ip_forward"), "1"),
            "sysctl -w net.ipv4.ip_forward=1",
        ),
        (
            s.SetSysctl("ns1", ("net", "ipv6", "conf", "all", "forwarding"), "0"),
            "ip netns exec ns1 sysctl -w net.ipv6.conf.all.forwarding=0",
        ),
        (s.DeleteLink(None, "pn-old"), "ip link del pn-old"),
        (s.DeleteLink("ns1", "eth9"), "ip -n ns1 link del eth9"),
        (s.CreateNetns("podnet-web", "web"), "ip netns add podnet-web"),
        (s.DeleteNetns("podnet-web"), "ip netns del podnet-web"),
        (
            s.AddVeth("ns1", "eth0", "pnv123", 9000, "alias"),
            "ip -n ns1 link add eth0 mtu 9000 type veth peer name pnv123 netns <host>",
        ),
        (s.SetMaster("pnv123", "pn-front"), "ip link set pnv123 master pn-front"),
        (s.SetHairpin("pnv123"), "bridge link set dev pnv123 hairpin on"),
        (
            s.AddDefaultRoute("ns1", ipaddress.ip_address("10.89.0.1"), "eth0"),
            "ip -n ns1 route replace default via 10.89.0.1 dev eth0",
        ),
        (
            s.AddDefaultRoute("ns1", ipaddress.ip_address("fd00:89::1"), "eth0"),
            "ip -6 -n ns1 route replace default via fd00:89::1 dev eth0",
        ),
        (
            s.ApplyNft("add table inet podnet\n"),
            "nft -f - <<EOF\nadd table inet podnet\nEOF",
        ),
    ],
)
def test_describe(step: s.Step, text: str) -> None:
    assert step.describe() == text


def test_every_planned_step_describes_itself_in_one_line() -> None:
    for step in run(Observed(), owned={PREFIX + "old": "old"}):
        text = step.describe()
        assert text
        assert "\n" not in text
