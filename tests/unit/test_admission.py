"""Admission: network requests resolved against the pool, pods given addresses and ports."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podnet.agent.admission import Allocations, PortChecker, admit_pod, resolve_network
from podnet.errors import Conflict, InvalidInput, NotFound
from podnet.ipam import reserved_addresses
from podnet.model import (
    Attachment,
    IPAddress,
    IPNetwork,
    Network,
    NetworkRequest,
    PodSpec,
    PortMapping,
    host_veth_name,
)
from podnet.settings import Settings

SETTINGS = Settings()


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


FRONT = Network.build("front", [net("10.89.0.0/24"), net("fd00:89::/64")])
BACK = Network.build("back", [net("10.89.1.0/24")], internal=True)
SMALL = Network.build("small", [net("10.89.2.0/28")])
NETWORKS = {n.name: n for n in (FRONT, BACK, SMALL)}


def nobody(protocol: str, port: int) -> str | None:
    return None


def spec(
    name: str,
    *networks: str,
    ports: Iterable[str] = (),
    ips: Iterable[str] = (),
) -> PodSpec:
    fixed = tuple(ip(i) for i in ips)
    attachments = tuple(
        Attachment(n, f"eth{i}", fixed if i == 0 else ()) for i, n in enumerate(networks)
    )
    return PodSpec(name, attachments, tuple(PortMapping.parse(p) for p in ports))


def admit(pod: PodSpec, alloc: Allocations | None = None, holder: PortChecker = nobody) -> PodSpec:
    return admit_pod(pod, NETWORKS, Allocations() if alloc is None else alloc, holder)


def addresses(pod: PodSpec, network: str) -> list[str]:
    iface = pod.interface(network)
    assert iface is not None
    return [str(a) for a in iface.addresses]


# -- resolve_network -------------------------------------------------------


def test_resolve_picks_the_first_free_ipv4_subnet() -> None:
    got = resolve_network(NetworkRequest("new"), {}, [], SETTINGS)
    assert got.subnets == (net("10.89.0.0/24"),)
    assert got.gateways == (ip("10.89.0.1"),)
    assert got.bridge == "pn-new"


def test_resolve_skips_subnets_of_existing_networks() -> None:
    got = resolve_network(NetworkRequest("new"), NETWORKS, [], SETTINGS)
    assert got.subnets == (net("10.89.3.0/24"),)


def test_resolve_auto_subnet_avoids_host_routes() -> None:
    routes = [(net("10.89.3.0/24"), "eth0"), (net("10.89.4.0/23"), "wg0")]
    got = resolve_network(NetworkRequest("new"), NETWORKS, routes, SETTINGS)
    assert got.subnets == (net("10.89.6.0/24"),)


def test_resolve_auto_ipv6_slash_64_after_ipv4() -> None:
    got = resolve_network(NetworkRequest("new", ipv6=True), {}, [], SETTINGS)
    assert got.subnets == (net("10.89.0.0/24"), net("fd00:89::/64"))
    assert got.gateways == (ip("10.89.0.1"), ip("fd00:89::1"))


def test_resolve_auto_ipv6_skips_taken_slash_64s() -> None:
    got = resolve_network(NetworkRequest("new", ipv4=False, ipv6=True), NETWORKS, [], SETTINGS)
    assert got.subnets == (net("fd00:89:0:1::/64"),)


def test_resolve_explicit_ipv6_and_auto_ipv4_puts_ipv4_first() -> None:
    req = NetworkRequest("new", (net("fd00:aa::/64"),), ipv4=True, ipv6=True)
    got = resolve_network(req, {}, [], SETTINGS)
    assert got.subnets == (net("10.89.0.0/24"), net("fd00:aa::/64"))


def test_resolve_explicit_subnets_are_kept() -> None:
    req = NetworkRequest("new", (net("192.168.50.0/24"),))
    assert resolve_network(req, NETWORKS, [], SETTINGS).subnets == (net("192.168.50.0/24"),)


def test_resolve_explicit_subnet_overlapping_a_network_names_it() -> None:
    req = NetworkRequest("new", (net("10.89.0.128/25"),))
    with pytest.raises(Conflict) as info:
        resolve_network(req, NETWORKS, [], SETTINGS)
    assert info.value.message == (
        "subnet 10.89.0.128/25 of network 'new' overlaps network 'front' (10.89.0.0/24)"
    )
    assert info.value.hint is not None
    assert "leave --subnet out" in info.value.hint


def test_resolve_explicit_ipv6_subnet_overlapping_a_network() -> None:
    req = NetworkRequest("new", (net("fd00:89::/48"),), ipv4=False)
    with pytest.raises(Conflict, match=re.escape("overlaps network 'front' (fd00:89::/64)")):
        resolve_network(req, NETWORKS, [], SETTINGS)


def test_resolve_explicit_subnet_overlapping_a_host_route_names_route_and_device() -> None:
    req = NetworkRequest("lan", (net("192.168.1.0/24"),))
    routes = [(net("192.168.0.0/16"), "eth0")]
    with pytest.raises(Conflict) as info:
        resolve_network(req, {}, routes, SETTINGS)
    assert info.value.message.startswith(
        "subnet 192.168.1.0/24 of network 'lan' overlaps the host's route 192.168.0.0/16 (eth0)"
    )
    assert info.value.hint is not None


def test_resolve_ignores_the_network_of_the_same_name() -> None:
    # Re-resolving a network (topology re-apply) must not clash with itself.
    req = NetworkRequest("front", (net("10.89.0.0/24"),))
    assert resolve_network(req, NETWORKS, [], SETTINGS).subnets == (net("10.89.0.0/24"),)


def test_resolve_pool_exhausted() -> None:
    settings = Settings(subnet_pool="10.89.0.0/23", subnet_size=24)
    existing = {"a": Network.build("a", [net("10.89.0.0/24")])}
    routes = [(net("10.89.1.0/24"), "eth1")]
    with pytest.raises(Conflict, match=re.escape("no free /24 subnet left in pool 10.89.0.0/23")):
        resolve_network(NetworkRequest("new"), existing, routes, settings)


def test_resolve_uses_the_configured_pool_and_size() -> None:
    settings = Settings(subnet_pool="172.30.0.0/16", subnet_size=26, ipv6_pool="fd12::/56")
    got = resolve_network(NetworkRequest("new", ipv6=True), {}, [], settings)
    assert got.subnets == (net("172.30.0.0/26"), net("fd12::/64"))


def test_resolve_no_version_at_all() -> None:
    with pytest.raises(InvalidInput, match=re.escape("network 'none' has no subnet")):
        resolve_network(NetworkRequest("none", ipv4=False), {}, [], SETTINGS)


def test_resolve_passes_every_option_through() -> None:
    req = NetworkRequest(
        "opts",
        internal=True,
        masquerade=True,
        mtu=9000,
        bridge="br-opts",
        labels={"a": "b"},
        owner="topo",
    )
    got = resolve_network(req, {}, [], SETTINGS)
    assert (got.internal, got.masquerade, got.mtu, got.bridge, dict(got.labels), got.owner) == (
        True,
        False,
        9000,
        "br-opts",
        {"a": "b"},
        "topo",
    )


def test_resolve_checks_the_name() -> None:
    with pytest.raises(InvalidInput, match=re.escape("network name 'Bad' is not valid")):
        resolve_network(NetworkRequest("Bad"), {}, [], SETTINGS)


# -- admit_pod: addresses --------------------------------------------------


def test_admit_gives_one_address_per_subnet() -> None:
    alloc = Allocations()
    pod = admit(spec("web", "front", "back"), alloc)
    assert addresses(pod, "front") == ["10.89.0.2/24", "fd00:89::2/64"]
    assert addresses(pod, "back") == ["10.89.1.2/24"]
    eth0 = pod.interface("front")
    assert eth0 is not None
    assert eth0.ifname == "eth0"
    assert eth0.host_ifname == host_veth_name("web", "eth0")
    assert alloc.holders[("front", ip("10.89.0.2"))] == "web"
    assert alloc.holders[("front", ip("fd00:89::2"))] == "web"
    assert alloc.cursors[("front", 4)] == ip("10.89.0.2")


def test_admit_keeps_the_spec_and_fills_interfaces() -> None:
    original = spec("web", "front", ports=["8080:80"])
    pod = admit(original)
    assert original.interfaces == ()
    assert pod.ports == original.ports
    assert [i.network for i in pod.interfaces] == ["front"]


def test_admit_next_pod_gets_the_next_address() -> None:
    alloc = Allocations()
    admit(spec("a", "front"), alloc)
    b = admit(spec("b", "front"), alloc)
    assert addresses(b, "front") == ["10.89.0.3/24", "fd00:89::3/64"]


def test_admit_resumes_after_the_stored_cursor() -> None:
    alloc = Allocations.of([], {"front": {"4": "10.89.0.40", "6": "fd00:89::9"}})
    pod = admit(spec("web", "front"), alloc)
    assert addresses(pod, "front") == ["10.89.0.41/24", "fd00:89::a/64"]


def test_admit_does_not_reuse_a_just_removed_address() -> None:
    alloc = Allocations()
    a = admit(spec("a", "front"), alloc)
    alloc.remove(a)
    b = admit(spec("b", "front"), alloc)
    assert addresses(b, "front")[0] == "10.89.0.3/24"


def test_allocations_of_existing_pods() -> None:
    first = admit(spec("a", "front", ports=["80:80"]))
    alloc = Allocations.of([first], {})
    assert alloc.holders[("front", ip("10.89.0.2"))] == "a"
    assert alloc.ports[("tcp", 80)] == [("a", first)]
    second = admit(spec("b", "front"), alloc)
    assert addresses(second, "front")[0] == "10.89.0.3/24"


def test_admit_fixed_address() -> None:
    pod = admit(spec("web", "front", ips=["10.89.0.77", "fd00:89::77"]))
    assert addresses(pod, "front") == ["10.89.0.77/24", "fd00:89::77/64"]


def test_admit_fixed_ipv4_and_allocated_ipv6() -> None:
    pod = admit(spec("web", "front", ips=["10.89.0.77"]))
    assert addresses(pod, "front") == ["10.89.0.77/24", "fd00:89::2/64"]


@pytest.mark.parametrize(
    "fixed", ["10.89.0.0", "10.89.0.1", "10.89.0.255", "fd00:89::", "fd00:89::1"]
)
def test_admit_fixed_address_reserved(fixed: str) -> None:
    with pytest.raises(InvalidInput) as info:
        admit(spec("web", "front", ips=[fixed]))
    assert info.value.message == (f"address {fixed} for pod 'web' is reserved in network 'front'")
    assert info.value.hint is not None
    assert "gateway" in info.value.hint


@pytest.mark.parametrize(
    ("network", "fixed", "subnets"),
    [
        ("front", "10.90.0.5", "10.89.0.0/24, fd00:89::/64"),
        ("front", "fd00:90::5", "10.89.0.0/24, fd00:89::/64"),
        ("back", "fd00:89::5", "10.89.1.0/24"),  # no IPv6 subnet at all
    ],
)
def test_admit_fixed_address_outside_the_network(network: str, fixed: str, subnets: str) -> None:
    with pytest.raises(InvalidInput) as info:
        admit(spec("web", network, ips=[fixed]))
    assert info.value.message == (
        f"address {fixed} for pod 'web' is outside network {network!r} ({subnets})"
    )
    assert info.value.hint == "pick an address inside the network's subnet"


def test_admit_fixed_address_taken_names_the_holder() -> None:
    alloc = Allocations()
    admit(spec("first", "front"), alloc)
    with pytest.raises(Conflict) as info:
        admit(spec("second", "front", ips=["10.89.0.2"]), alloc)
    assert (
        info.value.message == "address 10.89.0.2 on network 'front' is already used by pod 'first'"
    )
    assert info.value.hint is not None
    assert "--ip" in info.value.hint


def test_admit_fixed_address_held_by_the_same_pod_is_fine() -> None:
    alloc = Allocations()
    first = admit(spec("web", "front", ips=["10.89.0.50"]), alloc)
    again = admit(spec("web", "front", ips=["10.89.0.50"]), alloc)
    assert addresses(again, "front")[0] == addresses(first, "front")[0]


def test_admit_allocation_skips_fixed_addresses_of_others() -> None:
    alloc = Allocations()
    admit(spec("fixed", "front", ips=["10.89.0.2"]), alloc)
    alloc.cursors.clear()
    pod = admit(spec("auto", "front"), alloc)
    assert addresses(pod, "front")[0] == "10.89.0.3/24"


def test_admit_refuses_two_fixed_addresses_of_one_version() -> None:
    with pytest.raises(InvalidInput):
        admit(spec("web", "front", ips=["10.89.0.10", "10.89.0.11"]))


def test_admit_network_full() -> None:
    alloc = Allocations()
    for i in range(13):  # a /28 has 16 addresses: network, gateway, broadcast, 13 for pods
        admit(spec(f"p{i}", "small"), alloc)
    with pytest.raises(Conflict) as info:
        admit(spec("one-too-many", "small"), alloc)
    assert info.value.message == "subnet 10.89.2.0/28 has no free address left"
    assert info.value.hint is not None


def test_admit_unknown_network_lists_the_networks() -> None:
    with pytest.raises(NotFound) as info:
        admit(spec("web", "nowhere"))
    assert info.value.message == "network 'nowhere' of pod 'web' does not exist"
    assert info.value.hint == (
        "create it with 'podnet network create nowhere' (networks: back, front, small)"
    )


def test_admit_unknown_network_when_there_are_none() -> None:
    with pytest.raises(NotFound) as info:
        admit_pod(spec("web", "nowhere"), {}, Allocations(), nobody)
    assert info.value.hint is not None
    assert "(networks: none yet)" in info.value.hint


def test_admit_validates_the_spec_first() -> None:
    alloc = Allocations()
    with pytest.raises(InvalidInput, match=re.escape("pod name 'Web' is not valid")):
        admit(spec("Web", "front"), alloc)
    assert alloc.holders == {}


# -- admit_pod: ports ------------------------------------------------------


def test_admit_records_ports() -> None:
    alloc = Allocations()
    pod = admit(spec("web", "front", ports=["8080:80", "53:53/udp"]), alloc)
    assert alloc.ports[("tcp", 8080)] == [("web", pod)]
    assert alloc.ports[("udp", 53)] == [("web", pod)]


def test_port_clash_names_a_container_by_its_alias() -> None:
    """A runtime's container is a pod to IPAM, under a hashed name nobody knows."""
    alloc = Allocations()
    admit(spec("cni-0123456789", "front", ports=["8080:80"]), alloc)
    alloc.aliases["cni-0123456789"] = "container abc/eth0"
    with pytest.raises(Conflict) as info:
        admit(spec("second", "front", ports=["8080:81"]), alloc)
    assert info.value.message == "host port 8080/tcp is already published by container abc/eth0"
    assert info.value.hint == "pick another host port, or remove container abc/eth0 first"


def test_admit_port_clash_names_the_holder_pod() -> None:
    alloc = Allocations()
    admit(spec("first", "front", ports=["8080:80"]), alloc)
    with pytest.raises(Conflict) as info:
        admit(spec("second", "front", ports=["127.0.0.1:8080:8080"]), alloc)
    assert info.value.message == "host port 8080/tcp is already published by pod 'first'"
    assert info.value.hint == "pick another host port, or remove pod 'first' first"


@pytest.mark.parametrize(
    ("first", "second"),
    [("8080:80", "8080:80/udp"), ("127.0.0.1:8080:80", "127.0.0.2:8080:80"), ("80:80", "81:80")],
)
def test_admit_ports_that_do_not_clash(first: str, second: str) -> None:
    alloc = Allocations()
    admit(spec("a", "front", ports=[first]), alloc)
    admit(spec("b", "front", ports=[second]), alloc)


def test_admit_same_pod_again_does_not_clash_with_itself() -> None:
    alloc = Allocations()
    admit(spec("web", "front", ports=["8080:80"]), alloc)
    admit(spec("web", "front", ports=["8080:80"]), alloc)


def test_removed_pod_frees_its_port() -> None:
    alloc = Allocations()
    first = admit(spec("first", "front", ports=["8080:80"]), alloc)
    alloc.remove(first)
    admit(spec("second", "front", ports=["8080:80"]), alloc)
    assert [name for name, _ in alloc.ports[("tcp", 8080)]] == ["second"]


def test_admit_port_held_on_the_host_names_the_holder() -> None:
    asked: list[tuple[str, int]] = []

    def holder(protocol: str, port: int) -> str | None:
        asked.append((protocol, port))
        return "process nginx (pid 42)" if port == 8080 else None

    with pytest.raises(Conflict) as info:
        admit(spec("web", "front", ports=["53:53/udp", "8080:80"]), holder=holder)
    assert info.value.message == "host port 8080/tcp is in use by process nginx (pid 42)"
    assert info.value.hint == "pick another host port, or stop that process"
    assert asked == [("udp", 53), ("tcp", 8080)]


def test_admit_checks_ports_before_taking_addresses() -> None:
    alloc = Allocations()
    with pytest.raises(Conflict):
        admit(spec("web", "front", ports=["80:80"]), alloc, holder=lambda p, n: "someone")
    assert alloc.holders == {}


def test_admit_ports_only_on_internal_networks_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        admit(spec("db", "back", ports=["5432:5432"]))
    assert info.value.message == "pod 'db' publishes ports but is only on internal networks"
    assert info.value.hint is not None
    assert "--internal" in info.value.hint


def test_admit_ports_on_internal_and_external_network_allowed() -> None:
    pod = admit(spec("db", "back", "front", ports=["5432:5432"]))
    assert [i.network for i in pod.interfaces] == ["back", "front"]


def test_admit_ports_on_unknown_network_says_it_does_not_exist() -> None:
    with pytest.raises(NotFound, match=re.escape("network 'nowhere' of pod 'web' does not exist")):
        admit(spec("web", "nowhere", ports=["8080:80"]))


def test_admit_ports_internal_then_unknown_network_is_not_found() -> None:
    with pytest.raises(NotFound, match=re.escape("network 'nowhere'")):
        admit(spec("web", "back", "nowhere", ports=["8080:80"]))


def test_admit_refuses_host_ip_of_a_version_the_pod_lacks() -> None:
    with pytest.raises(InvalidInput):
        admit(spec("web", "small", ports=["[::1]:8080:80"]))


# -- properties ------------------------------------------------------------


@given(st.lists(st.booleans(), max_size=40))
def test_admitted_addresses_stay_unique_and_unreserved(ops: list[bool]) -> None:
    """Any sequence of admissions (True) and removals of the oldest pod (False)."""
    alloc = Allocations()
    live: list[PodSpec] = []
    for n, add in enumerate(ops):
        if add:
            try:
                live.append(admit(spec(f"p{n}", "small", "front"), alloc))
            except Conflict:
                assert len(live) == 13  # only when the /28 is full
        elif live:
            alloc.remove(live.pop(0))
        held = [a.ip for p in live for i in p.interfaces for a in i.addresses]
        assert len(held) == len(set(held))
        for pod in live:
            for iface in pod.interfaces:
                network = NETWORKS[iface.network]
                for a in iface.addresses:
                    subnet = network.subnet_for(a.version)
                    assert subnet is not None
                    assert a.ip in subnet
                    assert a.ip not in reserved_addresses(subnet, network.gateway_for(a.version))
