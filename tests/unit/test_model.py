"""The pure model: names, networks, network requests, published ports, pods."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podnet.errors import InvalidInput
from podnet.model import (
    PROTOCOLS,
    RESTART_POLICIES,
    Attachment,
    Interface,
    IPAddress,
    IPNetwork,
    Network,
    NetworkRequest,
    PodSpec,
    PortMapping,
    bridge_name,
    check_ifname,
    check_name,
    host_veth_name,
    netns_name,
    parse_subnet,
)
from podnet.model.names import IFNAMSIZ

PORT_HINT = "HOST_PORT:POD_PORT"

dns_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)
ifnames = st.from_regex(r"[A-Za-z0-9_-]{1,15}", fullmatch=True)


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def raises_invalid(match: str) -> Any:
    return pytest.raises(InvalidInput, match=re.escape(match))


# -- names -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "0", "web-1", "a" * 63, "1-2-3", "x9"])
def test_check_name_accepts_dns_labels(name: str) -> None:
    assert check_name("pod", name) == name


@pytest.mark.parametrize(
    "name", ["", "-a", "a-", "A", "Web", "a_b", "a.b", "a b", "a" * 64, "é", "a/b"]
)
def test_check_name_refuses_what_is_not_a_dns_label(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_name("network", name)
    assert info.value.message == f"network name {name!r} is not valid"
    assert info.value.hint is not None
    assert "1-63 lower-case letters" in info.value.hint


def test_check_name_refuses_trailing_newline() -> None:
    with pytest.raises(InvalidInput):
        check_name("pod", "web\n")


@pytest.mark.parametrize("name", ["eth0", "a" * 15, "br_0.1", "veth-a", "A.B_c-9", "e"])
def test_check_ifname_accepts_kernel_names(name: str) -> None:
    assert check_ifname(name) == name


@pytest.mark.parametrize("name", ["", "a" * 16, "a b", "a/b", "eth\t0", "é", "ethé"])
def test_check_ifname_refuses_what_the_kernel_refuses(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_ifname(name, what="bridge name")
    assert info.value.message == f"bridge name {name!r} is not a valid Linux interface name"
    assert info.value.hint is not None
    assert "1-15 characters" in info.value.hint


def test_check_ifname_counts_bytes_not_characters() -> None:
    # Fourteen ASCII letters and one two-byte letter: 15 characters, 16 bytes.
    with raises_invalid("not a valid Linux interface name"):
        check_ifname("a" * 14 + "é")


@pytest.mark.parametrize("name", [".", ".."])
def test_check_ifname_refuses_dot_names(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_ifname(name)
    assert info.value.message == f"interface name {name!r} is reserved"
    assert info.value.hint == "choose another name"


def test_check_ifname_refuses_colon() -> None:
    with pytest.raises(InvalidInput):
        check_ifname("eth0:1")


def test_check_ifname_refuses_trailing_newline() -> None:
    with pytest.raises(InvalidInput):
        check_ifname("eth0\n")


def test_bridge_name_is_readable_when_it_fits() -> None:
    assert bridge_name("front") == "pn-front"
    assert bridge_name("a" * 12) == "pn-" + "a" * 12  # exactly 15 bytes
    assert bridge_name("front", prefix="x-") == "x-front"


def test_bridge_name_hashes_long_names_stably() -> None:
    long_name = "a" * 13
    name = bridge_name(long_name)
    assert len(name) == IFNAMSIZ
    assert name.startswith("pn-")
    assert name != "pn-" + long_name[:12]
    assert name == bridge_name(long_name)
    assert bridge_name("b" * 13) != name


@given(dns_labels)
def test_bridge_name_always_fits_and_is_a_valid_ifname(name: str) -> None:
    derived = bridge_name(name)
    assert len(derived.encode()) <= IFNAMSIZ
    assert check_ifname(derived) == derived
    assert bridge_name(name) == derived


@given(dns_labels, ifnames)
def test_host_veth_name_is_always_15_bytes_and_stable(pod: str, ifname: str) -> None:
    derived = host_veth_name(pod, ifname)
    assert len(derived.encode()) == IFNAMSIZ
    assert derived.startswith("pnv")
    assert check_ifname(derived) == derived
    assert host_veth_name(pod, ifname) == derived


@given(dns_labels, ifnames, ifnames)
def test_host_veth_name_differs_per_interface(pod: str, a: str, b: str) -> None:
    if a != b:
        assert host_veth_name(pod, a) != host_veth_name(pod, b)


def test_host_veth_name_differs_per_pod() -> None:
    assert host_veth_name("web-1", "eth0") != host_veth_name("web-2", "eth0")


def test_host_veth_name_honours_prefix() -> None:
    derived = host_veth_name("web", "eth0", prefix="x")
    assert derived.startswith("x")
    assert len(derived) == IFNAMSIZ


def test_netns_name_is_prefix_and_pod() -> None:
    assert netns_name("web", "podnet-") == "podnet-web"
    assert netns_name("web", "n2-") == "n2-web"


# -- subnets and networks --------------------------------------------------


@pytest.mark.parametrize(
    "text", ["10.89.0.0/24", "10.0.0.0/8", "10.0.0.0/30", "fd00:89::/64", "fd00::/126"]
)
def test_parse_subnet_accepts_cidr(text: str) -> None:
    assert parse_subnet(text) == net(text)


@pytest.mark.parametrize("text", ["10.89.0.1/24", "fd00::1/64", "nonsense", "10.89.0/24", ""])
def test_parse_subnet_refuses_bad_cidr(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_subnet(text)
    assert info.value.message.startswith(f"subnet {text!r} is not valid")
    assert info.value.hint is not None
    assert "CIDR" in info.value.hint


@pytest.mark.parametrize(("text", "limit"), [("10.0.0.0/31", 30), ("10.0.0.1/32", 30)])
def test_parse_subnet_refuses_too_small_ipv4(text: str, limit: int) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_subnet(text)
    assert info.value.message == f"subnet {text} is too small for a gateway and pods"
    assert info.value.hint == f"use a prefix of /{limit} or shorter"


def test_parse_subnet_refuses_too_small_ipv6() -> None:
    with raises_invalid("too small"):
        parse_subnet("fd00::/127")


def test_network_build_fills_defaults() -> None:
    n = Network.build("front", [net("10.89.0.0/24")])
    assert n.name == "front"
    assert n.subnets == (net("10.89.0.0/24"),)
    assert n.gateways == (ip("10.89.0.1"),)
    assert n.bridge == "pn-front"
    assert (n.internal, n.masquerade, n.mtu, dict(n.labels), n.owner) == (
        False,
        True,
        1500,
        {},
        "",
    )


def test_network_build_dual_stack() -> None:
    n = Network.build("dual", [net("10.89.0.0/24"), net("fd00:89::/64")])
    assert n.gateways == (ip("10.89.0.1"), ip("fd00:89::1"))
    assert n.subnet_for(4) == net("10.89.0.0/24")
    assert n.subnet_for(6) == net("fd00:89::/64")
    assert n.gateway_for(4) == ip("10.89.0.1")
    assert n.gateway_for(6) == ip("fd00:89::1")


def test_network_single_stack_has_no_other_version() -> None:
    n = Network.build("v6", [net("fd00:89::/64")])
    assert n.subnet_for(4) is None
    assert n.gateway_for(4) is None


@pytest.mark.parametrize(
    "subnets",
    [
        ["10.89.0.0/24", "10.90.0.0/24"],
        ["fd00:1::/64", "fd00:2::/64"],
        ["10.89.0.0/24", "fd00::/64", "10.90.0.0/24"],
    ],
)
def test_network_build_refuses_two_subnets_of_one_version(subnets: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        Network.build("twice", [net(s) for s in subnets])
    assert info.value.message == "network 'twice' has two subnets of one IP version"
    assert info.value.hint == "give at most one IPv4 and one IPv6 subnet"


def test_network_build_refuses_no_subnet() -> None:
    with pytest.raises(InvalidInput) as info:
        Network.build("empty", [])
    assert info.value.message == "network 'empty' has no subnet"
    assert info.value.hint is not None
    assert "--subnet" in info.value.hint


def test_network_build_refuses_gateway_outside_subnet() -> None:
    with pytest.raises(InvalidInput) as info:
        Network.build("front", [net("10.89.0.0/24")], gateways=[ip("10.90.0.1")])
    assert (
        info.value.message == "gateway 10.90.0.1 of network 'front' is outside subnet 10.89.0.0/24"
    )
    assert info.value.hint is not None
    assert "inside the subnet" in info.value.hint


def test_network_build_accepts_explicit_gateway() -> None:
    n = Network.build("front", [net("10.89.0.0/24")], gateways=[ip("10.89.0.254")])
    assert n.gateways == (ip("10.89.0.254"),)


def test_network_build_refuses_gateway_count_mismatch() -> None:
    with raises_invalid("gateway"):
        Network.build("dual", [net("10.89.0.0/24"), net("fd00::/64")], gateways=[ip("10.89.0.1")])


@pytest.mark.parametrize("gateway", ["10.89.0.0", "10.89.0.255"])
def test_network_build_refuses_network_or_broadcast_as_gateway(gateway: str) -> None:
    with raises_invalid("gateway"):
        Network.build("front", [net("10.89.0.0/24")], gateways=[ip(gateway)])


@pytest.mark.parametrize("mtu", [575, 0, -1, 65536])
def test_network_build_refuses_mtu_out_of_range(mtu: int) -> None:
    with pytest.raises(InvalidInput) as info:
        Network.build("front", [net("10.89.0.0/24")], mtu=mtu)
    assert info.value.message == f"mtu {mtu} of network 'front' is out of range"
    assert info.value.hint == "use 576-65535"


@pytest.mark.parametrize("mtu", [576, 9000, 65535])
def test_network_build_accepts_mtu_in_range(mtu: int) -> None:
    assert Network.build("front", [net("10.89.0.0/24")], mtu=mtu).mtu == mtu


def test_network_build_refuses_ipv6_below_1280() -> None:
    with raises_invalid("mtu"):
        Network.build("v6", [net("fd00:89::/64")], mtu=1000)


def test_network_build_checks_the_name() -> None:
    with raises_invalid("network name 'Bad_Name' is not valid"):
        Network.build("Bad_Name", [net("10.89.0.0/24")])


def test_network_build_takes_and_checks_an_explicit_bridge() -> None:
    n = Network.build("front", [net("10.89.0.0/24")], bridge="br-front")
    assert n.bridge == "br-front"
    with pytest.raises(InvalidInput) as info:
        Network.build("front", [net("10.89.0.0/24")], bridge="bridge/front")
    assert info.value.message.startswith("bridge name 'bridge/front'")


def test_network_build_hashes_a_long_name_into_the_bridge() -> None:
    n = Network.build("a-rather-long-network-name", [net("10.89.0.0/24")])
    assert len(n.bridge) == IFNAMSIZ
    assert n.bridge == bridge_name("a-rather-long-network-name")


def test_internal_network_never_masquerades() -> None:
    n = Network.build("back", [net("10.89.0.0/24")], internal=True, masquerade=True)
    assert n.internal
    assert not n.masquerade


def test_network_build_copies_labels() -> None:
    labels = {"tier": "web"}
    n = Network.build("front", [net("10.89.0.0/24")], labels=labels, owner="topo")
    labels["tier"] = "db"
    assert n.labels == {"tier": "web"}
    assert n.owner == "topo"


def test_network_dict_round_trip() -> None:
    n = Network.build(
        "dual",
        [net("10.89.0.0/24"), net("fd00:89::/64")],
        mtu=9000,
        labels={"a": "b"},
        owner="topo",
        bridge="br-dual",
    )
    data = n.to_dict()
    assert data == {
        "name": "dual",
        "subnets": ["10.89.0.0/24", "fd00:89::/64"],
        "gateways": ["10.89.0.1", "fd00:89::1"],
        "bridge": "br-dual",
        "internal": False,
        "masquerade": True,
        "mtu": 9000,
        "labels": {"a": "b"},
        "owner": "topo",
    }
    assert Network.from_dict(data) == n


def test_network_from_dict_defaults() -> None:
    n = Network.from_dict(
        {"name": "x", "subnets": ["10.1.0.0/24"], "gateways": ["10.1.0.1"], "bridge": "pn-x"}
    )
    assert (n.internal, n.masquerade, n.mtu, dict(n.labels), n.owner) == (
        False,
        True,
        1500,
        {},
        "",
    )


# -- network requests ------------------------------------------------------


@pytest.mark.parametrize(
    ("subnets", "ipv4", "ipv6", "auto4", "auto6"),
    [
        ((), True, False, True, False),
        ((), True, True, True, True),
        ((), False, True, False, True),
        ((), False, False, False, False),
        (("10.1.0.0/24",), True, False, False, False),
        (("10.1.0.0/24",), True, True, False, True),
        (("fd00::/64",), True, True, True, False),
        (("fd00::/64",), False, False, False, False),
        (("10.1.0.0/24", "fd00::/64"), True, True, False, False),
    ],
)
def test_network_request_wants_auto(
    subnets: tuple[str, ...], ipv4: bool, ipv6: bool, auto4: bool, auto6: bool
) -> None:
    req = NetworkRequest("n", tuple(net(s) for s in subnets), ipv4=ipv4, ipv6=ipv6)
    assert req.wants_auto(4) is auto4
    assert req.wants_auto(6) is auto6


def test_network_request_defaults_to_auto_ipv4_only() -> None:
    req = NetworkRequest("n")
    assert req.wants_auto(4)
    assert not req.wants_auto(6)


def test_network_request_dict_round_trip() -> None:
    req = NetworkRequest(
        "n",
        (net("10.1.0.0/24"),),
        ipv4=True,
        ipv6=True,
        internal=True,
        masquerade=False,
        mtu=9000,
        bridge="br-n",
        labels={"k": "v"},
        owner="topo",
    )
    assert NetworkRequest.from_dict(req.to_dict()) == req


def test_network_request_from_minimal_dict() -> None:
    assert NetworkRequest.from_dict({"name": "n"}) == NetworkRequest("n")


def test_network_request_from_dict_checks_subnets() -> None:
    with raises_invalid("subnet '10.1.0.1/24' is not valid"):
        NetworkRequest.from_dict({"name": "n", "subnets": ["10.1.0.1/24"]})


# -- published ports -------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8080:80", PortMapping(8080, 80, "tcp", None)),
        ("8080:80/tcp", PortMapping(8080, 80, "tcp", None)),
        ("53:5353/udp", PortMapping(53, 5353, "udp", None)),
        ("1:65535", PortMapping(1, 65535, "tcp", None)),
        ("  8080:80  ", PortMapping(8080, 80, "tcp", None)),
        ("127.0.0.1:8080:80", PortMapping(8080, 80, "tcp", ip("127.0.0.1"))),
        ("192.0.2.7:443:8443/udp", PortMapping(443, 8443, "udp", ip("192.0.2.7"))),
        ("[::1]:8080:80", PortMapping(8080, 80, "tcp", ip("::1"))),
        ("[2001:db8::1]:443:8443/udp", PortMapping(443, 8443, "udp", ip("2001:db8::1"))),
        ("[2001:DB8::A]:443:80", PortMapping(443, 80, "tcp", ip("2001:db8::a"))),
        ("[::ffff:192.0.2.1]:80:80", PortMapping(80, 80, "tcp", ip("::ffff:192.0.2.1"))),
    ],
)
def test_port_mapping_parse(spec: str, expected: PortMapping) -> None:
    assert PortMapping.parse(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "8080",
        "80:",
        ":80",
        "a:b",
        "8080:80/",
        "8080:80/TCP",
        "::1:8080:80",  # IPv6 needs brackets
        "[::1]8080:80",
        "localhost:8080:80",
        "-1:80",
        "8080 : 80",
        "[fe80::1%eth0]:80:80",
    ],
)
def test_port_mapping_parse_refuses_bad_syntax(spec: str) -> None:
    with pytest.raises(InvalidInput) as info:
        PortMapping.parse(spec)
    assert info.value.message == f"published port {spec!r} is not valid"
    assert info.value.hint is not None
    assert PORT_HINT in info.value.hint


@pytest.mark.parametrize("proto", ["sctp", "icmp", "tcpx"])
def test_port_mapping_parse_refuses_unknown_protocol(proto: str) -> None:
    spec = f"8080:80/{proto}"
    with pytest.raises(InvalidInput) as info:
        PortMapping.parse(spec)
    assert info.value.message == f"protocol {proto!r} in {spec!r} is not tcp or udp"
    assert info.value.hint is not None
    assert PORT_HINT in info.value.hint


@pytest.mark.parametrize(
    ("spec", "bad"), [("0:80", 0), ("8080:0", 0), ("65536:80", 65536), ("80:99999", 99999)]
)
def test_port_mapping_parse_refuses_port_out_of_range(spec: str, bad: int) -> None:
    with pytest.raises(InvalidInput) as info:
        PortMapping.parse(spec)
    assert info.value.message == f"port {bad} in {spec!r} is out of range 1-65535"
    assert info.value.hint is not None
    assert PORT_HINT in info.value.hint


@pytest.mark.parametrize(
    "spec",
    [
        "300.1.1.1:80:80",
        "1.2.3:80:80",
        "8080:80:90",  # a bare number where the host IP goes
        "[1::2::3]:80:80",
        "[:::]:80:80",
        "[1.2.3]:80:80",
    ],
)
def test_port_mapping_parse_refuses_bad_host_ip(spec: str) -> None:
    with pytest.raises(InvalidInput) as info:
        PortMapping.parse(spec)
    assert info.value.message == f"host IP in {spec!r} is not valid"
    assert info.value.hint is not None
    assert PORT_HINT in info.value.hint


def test_port_mapping_str() -> None:
    assert str(PortMapping(8080, 80)) == "8080:80/tcp"
    assert str(PortMapping(53, 53, "udp", ip("127.0.0.1"))) == "127.0.0.1:53:53/udp"
    assert str(PortMapping(443, 80, "tcp", ip("2001:db8::1"))) == "[2001:db8::1]:443:80/tcp"


port_numbers = st.integers(min_value=1, max_value=65535)
host_ips = st.one_of(st.none(), st.ip_addresses(v=4), st.ip_addresses(v=6))


@st.composite
def port_mappings(draw: st.DrawFn) -> PortMapping:
    return PortMapping(
        draw(port_numbers), draw(port_numbers), draw(st.sampled_from(PROTOCOLS)), draw(host_ips)
    )


@given(port_mappings())
def test_port_mapping_str_parses_back(mapping: PortMapping) -> None:
    assert PortMapping.parse(str(mapping)) == mapping


@given(port_mappings())
def test_port_mapping_dict_round_trip(mapping: PortMapping) -> None:
    assert PortMapping.from_dict(mapping.to_dict()) == mapping


def test_port_mapping_from_dict_defaults_to_tcp_on_every_address() -> None:
    assert PortMapping.from_dict({"host_port": 1, "pod_port": 2}) == PortMapping(1, 2, "tcp", None)


def test_port_mapping_key() -> None:
    assert PortMapping.parse("127.0.0.1:8080:80/udp").key() == ("udp", 8080)


@pytest.mark.parametrize(
    ("a", "b", "clash"),
    [
        ("8080:80", "8080:81", True),
        ("8080:80", "8080:80/udp", False),
        ("8080:80", "8081:80", False),
        ("8080:80", "127.0.0.1:8080:80", True),
        ("127.0.0.1:8080:80", "127.0.0.1:8080:90", True),
        ("127.0.0.1:8080:80", "127.0.0.2:8080:80", False),
        ("127.0.0.1:8080:80", "[::1]:8080:80", False),
        ("[::1]:8080:80", "8080:80", True),
    ],
)
def test_port_mapping_clashes(a: str, b: str, clash: bool) -> None:
    pa, pb = PortMapping.parse(a), PortMapping.parse(b)
    assert pa.clashes(pb) is clash
    assert pb.clashes(pa) is clash


@given(port_mappings(), port_mappings())
def test_port_mapping_clashes_is_symmetric_and_needs_one_key(
    a: PortMapping, b: PortMapping
) -> None:
    assert a.clashes(b) == b.clashes(a)
    if a.clashes(b):
        assert a.key() == b.key()
    assert a.clashes(a)


# -- pods ------------------------------------------------------------------


def _pod(**kwargs: Any) -> PodSpec:
    base: dict[str, Any] = {"name": "web", "attachments": (Attachment("front", "eth0"),)}
    base.update(kwargs)
    return PodSpec(**base)


def test_pod_validate_returns_the_pod() -> None:
    pod = _pod(ports=(PortMapping.parse("8080:80"), PortMapping.parse("8080:80/udp")))
    assert pod.validate() is pod


def test_pod_without_attachments_or_ports_is_valid() -> None:
    assert PodSpec("lonely").validate().name == "lonely"


def test_pod_validate_checks_the_name() -> None:
    with raises_invalid("pod name 'Web' is not valid"):
        _pod(name="Web").validate()


def test_pod_validate_refuses_unknown_restart_policy() -> None:
    with pytest.raises(InvalidInput) as info:
        _pod(restart="sometimes").validate()
    assert info.value.message == "restart policy 'sometimes' of pod 'web' is unknown"
    assert info.value.hint == "use one of " + ", ".join(RESTART_POLICIES)


@pytest.mark.parametrize("policy", RESTART_POLICIES)
def test_pod_validate_accepts_restart_policies(policy: str) -> None:
    _pod(restart=policy).validate()


def test_pod_validate_refuses_a_network_twice() -> None:
    pod = _pod(attachments=(Attachment("front", "eth0"), Attachment("front", "eth1")))
    with pytest.raises(InvalidInput) as info:
        pod.validate()
    assert info.value.message == "pod 'web' is attached to network 'front' twice"
    assert info.value.hint == "list each network once"


def test_pod_validate_refuses_an_interface_name_twice() -> None:
    pod = _pod(attachments=(Attachment("front", "eth0"), Attachment("back", "eth0")))
    with raises_invalid("pod 'web' uses interface 'eth0' twice"):
        pod.validate()


def test_pod_validate_checks_interface_names() -> None:
    pod = _pod(attachments=(Attachment("front", "a-very-long-interface"),))
    with pytest.raises(InvalidInput) as info:
        pod.validate()
    assert info.value.message == (
        "interface name of pod 'web' 'a-very-long-interface' is not a valid Linux interface name"
    )
    assert info.value.hint is not None


@pytest.mark.parametrize(
    ("first", "second"),
    [("8080:80", "8080:90"), ("8080:80", "127.0.0.1:8080:80"), ("[::1]:53:53/udp", "53:53/udp")],
)
def test_pod_validate_refuses_one_host_port_twice(first: str, second: str) -> None:
    second_mapping = PortMapping.parse(second)
    pod = _pod(ports=(PortMapping.parse(first), second_mapping))
    with pytest.raises(InvalidInput) as info:
        pod.validate()
    assert info.value.message == (
        f"pod 'web' publishes host port {second_mapping.host_port}/{second_mapping.protocol} twice"
    )
    assert info.value.hint == "publish each host port once"


def test_pod_validate_allows_one_port_on_two_host_ips() -> None:
    _pod(
        ports=(PortMapping.parse("127.0.0.1:80:80"), PortMapping.parse("127.0.0.2:80:80"))
    ).validate()
    _pod(ports=(PortMapping.parse("127.0.0.1:80:80"), PortMapping.parse("[::1]:80:80"))).validate()


def test_pod_validate_refuses_ports_without_network() -> None:
    pod = PodSpec("web", ports=(PortMapping.parse("8080:80"),))
    with pytest.raises(InvalidInput) as info:
        pod.validate()
    assert info.value.message == "pod 'web' publishes ports but is on no network"
    assert info.value.hint is not None
    assert "--net" in info.value.hint


def _interfaces() -> tuple[Interface, ...]:
    return (
        Interface(
            "front",
            "eth0",
            host_veth_name("web", "eth0"),
            (ipaddress.ip_interface("10.89.0.2/24"), ipaddress.ip_interface("fd00:89::2/64")),
        ),
        Interface(
            "back",
            "eth1",
            host_veth_name("web", "eth1"),
            (ipaddress.ip_interface("10.89.1.2/24"),),
        ),
    )


def test_pod_with_interfaces_returns_a_copy() -> None:
    pod = _pod()
    filled = pod.with_interfaces(_interfaces())
    assert pod.interfaces == ()
    assert filled.interfaces == _interfaces()
    assert filled.name == pod.name


def test_pod_interface_by_network() -> None:
    pod = _pod().with_interfaces(_interfaces())
    front = pod.interface("front")
    assert front is not None
    assert front.ifname == "eth0"
    assert pod.interface("nowhere") is None


def test_interface_ip_by_version() -> None:
    front, back = _interfaces()
    assert front.ip(4) == ip("10.89.0.2")
    assert front.ip(6) == ip("fd00:89::2")
    assert back.ip(6) is None


def test_pod_dict_round_trip() -> None:
    pod = PodSpec(
        name="web",
        attachments=(
            Attachment("front", "eth0", (ip("10.89.0.9"), ip("fd00:89::9"))),
            Attachment("back", "eth1"),
        ),
        ports=(PortMapping.parse("8080:80"), PortMapping.parse("[::1]:53:53/udp")),
        labels={"app": "web"},
        command=("sleep", "infinity"),
        env={"A": "1"},
        restart="always",
        running=False,
        owner="topo",
        interfaces=_interfaces(),
    )
    data = pod.to_dict()
    assert data["attachments"][0] == {
        "network": "front",
        "ifname": "eth0",
        "ips": ["10.89.0.9", "fd00:89::9"],
    }
    assert data["interfaces"][1]["addresses"] == ["10.89.1.2/24"]
    assert PodSpec.from_dict(data) == pod


def test_pod_from_minimal_dict() -> None:
    assert PodSpec.from_dict({"name": "web"}) == PodSpec("web")
