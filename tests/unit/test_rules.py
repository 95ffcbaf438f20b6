"""nft rule rendering: transactions, masquerade, published ports, isolation, the ruleset."""

from __future__ import annotations

import ipaddress
import re

import pytest

from podnet import rules
from podnet.errors import InvalidInput
from podnet.model import Attachment, Interface, Network, PodSpec, PortMapping
from podnet.rules.isolation import isolation_rules
from podnet.rules.masquerade import masquerade_rules
from podnet.rules.published import published_interface, published_rules
from podnet.rules.ruleset import BASE_CHAINS, render_ruleset
from podnet.rules.transaction import BaseChain, Rule, Transaction, comment

FRONT = Network.build(
    "front", [ipaddress.ip_network("10.89.0.0/24"), ipaddress.ip_network("fd00:89::/64")]
)
BACK = Network.build("back", [ipaddress.ip_network("10.89.1.0/24")], internal=True)
V6ONLY = Network.build("six", [ipaddress.ip_network("fd00:6::/64")])
NOMASQ = Network.build("plain", [ipaddress.ip_network("10.89.2.0/24")], masquerade=False)
NETS = {n.name: n for n in (FRONT, BACK, V6ONLY, NOMASQ)}


def iface(network: str, ifname: str, *addresses: str) -> Interface:
    return Interface(
        network,
        ifname,
        f"pnv-{ifname}",
        tuple(ipaddress.ip_interface(a) for a in addresses),
    )


def pod(
    name: str,
    interfaces: tuple[Interface, ...],
    ports: tuple[str, ...] = (),
    *,
    running: bool = True,
) -> PodSpec:
    return PodSpec(
        name,
        tuple(Attachment(i.network, i.ifname) for i in interfaces),
        tuple(PortMapping.parse(p) for p in ports),
        running=running,
        interfaces=interfaces,
    )


WEB = pod(
    "web",
    (
        iface("front", "eth0", "10.89.0.2/24", "fd00:89::2/64"),
        iface("back", "eth1", "10.89.1.2/24"),
    ),
    ("8080:80", "127.0.0.1:5353:53/udp", "[::1]:8443:443"),
)
STOPPED = pod("off", (iface("front", "eth0", "10.89.0.3/24"),), ("7070:70",), running=False)


def exprs(found: list[Rule]) -> list[str]:
    return [r.expr for r in found]


def test_public_surface() -> None:
    assert sorted(rules.__all__) == ["BaseChain", "Rule", "Transaction", "render_ruleset"]


# -- transaction -----------------------------------------------------------


@pytest.mark.parametrize("table", ["", "1podnet", "pod net", "pod.net", "a" * 65, "pod;net"])
def test_transaction_refuses_bad_table_names(table: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Transaction(table)
    assert info.value.message == f"nft table name {table!r} is not valid"
    assert info.value.hint == "letters, digits, _ -"


@pytest.mark.parametrize("table", ["podnet", "p", "podnet-node_2", "A" + "a" * 63])
def test_transaction_accepts_table_names(table: str) -> None:
    assert Transaction(table).table == table


def test_transaction_refuses_newline_in_names() -> None:
    with pytest.raises(InvalidInput):
        Transaction("podnet\n")


def test_transaction_table_commands() -> None:
    tx = Transaction("podnet").add_table().delete_table()
    assert tx.render() == "add table inet podnet\ndelete table inet podnet\n"


def test_transaction_other_family() -> None:
    assert Transaction("t", family="ip").add_table().render() == "add table ip t\n"


def test_transaction_chain_commands() -> None:
    tx = (
        Transaction("podnet")
        .add_chain("mine")
        .add_chain("post", BaseChain("nat", "postrouting", "srcnat"))
        .add_chain("fwd", BaseChain("filter", "forward", "0", policy="drop"))
        .flush_chain("mine")
        .delete_chain("mine")
    )
    assert tx.commands == [
        "add chain inet podnet mine",
        "add chain inet podnet post { type nat hook postrouting priority srcnat; policy accept; }",
        "add chain inet podnet fwd { type filter hook forward priority 0; policy drop; }",
        "flush chain inet podnet mine",
        "delete chain inet podnet mine",
    ]


@pytest.mark.parametrize("method", ["add_chain", "flush_chain", "delete_chain", "flush_set"])
def test_transaction_refuses_bad_chain_and_set_names(method: str) -> None:
    tx = Transaction("podnet")
    with pytest.raises(InvalidInput) as info:
        getattr(tx, method)("bad name")
    kind = "set" if method.endswith("_set") else "chain"
    assert info.value.message == f"nft {kind} name 'bad name' is not valid"
    assert tx.commands == []


def test_transaction_set_commands() -> None:
    tx = (
        Transaction("podnet")
        .add_set("bridges", "ifname")
        .add_set("vips", "ipv4_addr", flags=["interval", "timeout"])
        .flush_set("bridges")
        .add_elements("bridges", ['"pn-a"', '"pn-b"'])
    )
    assert tx.commands == [
        "add set inet podnet bridges { type ifname; }",
        "add set inet podnet vips { type ipv4_addr; flags interval, timeout; }",
        "flush set inet podnet bridges",
        'add element inet podnet bridges { "pn-a", "pn-b" }',
    ]


def test_transaction_add_set_refuses_bad_name() -> None:
    with pytest.raises(InvalidInput, match="nft set name"):
        Transaction("podnet").add_set("no way", "ifname")


def test_transaction_no_elements_is_no_command() -> None:
    tx = Transaction("podnet").add_elements("bridges", iter(()))
    assert tx.commands == []
    assert not tx


def test_transaction_add_elements_refuses_bad_set_name() -> None:
    with pytest.raises(InvalidInput):
        Transaction("podnet").add_elements("bad name", ['"x"'])


def test_transaction_rules_with_and_without_comment() -> None:
    tx = Transaction("podnet").add_rules(
        [Rule("fwd", "ct state established accept"), Rule("fwd", "drop", "pod:web")]
    )
    assert tx.render() == (
        "add rule inet podnet fwd ct state established accept\n"
        'add rule inet podnet fwd drop comment "pod:web"\n'
    )


def test_transaction_add_rules_checks_chain_names() -> None:
    with pytest.raises(InvalidInput, match="nft chain name 'no chain'"):
        Transaction("podnet").add_rules([Rule("no chain", "accept")])


def test_transaction_is_truthy_once_it_has_commands() -> None:
    tx = Transaction("podnet")
    assert not tx
    assert tx.render() == ""
    assert tx.add_table()
    assert tx.render().endswith("\n")


def test_rule_render() -> None:
    assert Rule("c", "accept", "x").render("ip", "t") == 'add rule ip t c accept comment "x"'
    assert Rule("c", "accept").render("inet", "t") == "add rule inet t c accept"


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("pod:web", "pod:web"),
        ('say "hi"', "say _hi_"),
        ("back\\slash", "back_slash"),
        ("two\nlines", "two_lines"),
    ],
)
def test_comment_cannot_break_out_of_its_quotes(text: str, clean: str) -> None:
    assert comment(text) == f'comment "{clean}"'


def test_comment_is_cut_at_128() -> None:
    assert comment("x" * 300) == 'comment "' + "x" * 128 + '"'


def test_comment_is_cut_at_128_bytes() -> None:
    inner = comment("é" * 100).removeprefix('comment "').removesuffix('"')
    assert len(inner.encode()) <= 128


# -- masquerade ------------------------------------------------------------


def test_masquerade_dual_stack() -> None:
    assert masquerade_rules([FRONT]) == [
        Rule(
            "outbound_nat",
            "ip saddr 10.89.0.0/24 ip daddr != 10.89.0.0/24 masquerade",
            "network:front",
        ),
        Rule(
            "outbound_nat",
            'oifname "pn-front" ip saddr 10.89.0.0/24 ct status dnat masquerade',
            "network:front:hairpin",
        ),
        Rule(
            "outbound_nat",
            "ip6 saddr fd00:89::/64 ip6 daddr != fd00:89::/64 masquerade",
            "network:front",
        ),
        Rule(
            "outbound_nat",
            'oifname "pn-front" ip6 saddr fd00:89::/64 ct status dnat masquerade',
            "network:front:hairpin",
        ),
        Rule(
            "outbound_nat",
            'oifname "pn-front" ip saddr 127.0.0.0/8 ct status dnat masquerade',
            "network:front:localhost",
        ),
    ]


def test_masquerade_internal_network_only_hairpins() -> None:
    assert masquerade_rules([BACK]) == [
        Rule(
            "outbound_nat",
            'oifname "pn-back" ip saddr 10.89.1.0/24 ct status dnat masquerade',
            "network:back:hairpin",
        )
    ]


def test_masquerade_opt_out_keeps_hairpin_and_localhost() -> None:
    assert [r.comment for r in masquerade_rules([NOMASQ])] == [
        "network:plain:hairpin",
        "network:plain:localhost",
    ]


def test_masquerade_ipv6_only_has_no_localhost_rule() -> None:
    found = masquerade_rules([V6ONLY])
    assert [r.comment for r in found] == ["network:six", "network:six:hairpin"]
    assert not any("127.0.0.0/8" in r.expr for r in found)


def test_masquerade_sorted_by_network_name() -> None:
    found = masquerade_rules([NOMASQ, FRONT, BACK])
    names = [r.comment.split(":")[1] for r in found if r.comment]
    assert names == sorted(names)


def test_masquerade_nothing_for_no_network() -> None:
    assert masquerade_rules([]) == []


# -- isolation -------------------------------------------------------------


def test_isolation_order_internal_then_published_then_between_bridges() -> None:
    assert isolation_rules([FRONT, BACK, NOMASQ]) == [
        Rule(
            "network_isolation",
            'iifname "pn-back" oifname != "pn-back" drop',
            "network:back:internal",
        ),
        Rule(
            "network_isolation",
            'oifname "pn-back" iifname != "pn-back" drop',
            "network:back:internal",
        ),
        Rule("network_isolation", "ct status dnat accept", "published-ports"),
        Rule(
            "network_isolation",
            'iifname "pn-front" oifname @bridges oifname != "pn-front" drop',
            "network:front:isolation",
        ),
        Rule(
            "network_isolation",
            'iifname "pn-plain" oifname @bridges oifname != "pn-plain" drop',
            "network:plain:isolation",
        ),
    ]


def test_isolation_without_networks_still_lets_published_ports_through() -> None:
    assert isolation_rules([]) == [
        Rule("network_isolation", "ct status dnat accept", "published-ports")
    ]


# -- published ports -------------------------------------------------------


def test_published_dual_stack_pod() -> None:
    web = pod("web", (iface("front", "eth0", "10.89.0.2/24", "fd00:89::2/64"),), ("8080:80",))
    assert published_rules([web], NETS) == [
        Rule(
            "published_ports",
            "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.89.0.2:80",
            "pod:web",
        ),
        Rule(
            "published_ports",
            "meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00:89::2]:80",
            "pod:web",
        ),
    ]


def test_published_udp() -> None:
    dns = pod("dns", (iface("front", "eth0", "10.89.0.5/24"),), ("53:5353/udp",))
    assert exprs(published_rules([dns], NETS)) == [
        "meta nfproto ipv4 udp dport 53 dnat ip to 10.89.0.5:5353"
    ]


def test_published_host_ip_restricts_to_its_family() -> None:
    v4 = pod(
        "v4", (iface("front", "eth0", "10.89.0.2/24", "fd00:89::2/64"),), ("127.0.0.1:8080:80",)
    )
    v6 = pod("v6", (iface("front", "eth0", "10.89.0.3/24", "fd00:89::3/64"),), ("[::1]:8080:80",))
    assert exprs(published_rules([v4], NETS)) == [
        "ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.89.0.2:80"
    ]
    assert exprs(published_rules([v6], NETS)) == [
        "ip6 daddr ::1 tcp dport 8080 dnat ip6 to [fd00:89::3]:80"
    ]


def test_published_host_ip_of_a_family_the_pod_lacks_gives_no_rule() -> None:
    only4 = pod("only4", (iface("front", "eth0", "10.89.0.2/24"),), ("[::1]:8080:80",))
    assert published_rules([only4], NETS) == []


def test_published_ipv6_only_pod() -> None:
    six = pod("six", (iface("six", "eth0", "fd00:6::2/64"),), ("8080:80",))
    assert exprs(published_rules([six], NETS)) == [
        "meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00:6::2]:80"
    ]


def test_published_skips_stopped_pods() -> None:
    assert published_rules([STOPPED], NETS) == []


def test_published_skips_pods_without_ports_or_interfaces() -> None:
    assert published_rules([pod("idle", (iface("front", "eth0", "10.89.0.9/24"),))], NETS) == []
    assert published_rules([PodSpec("bare", ports=(PortMapping(1, 1),))], NETS) == []


def test_published_uses_the_first_interface_not_on_an_internal_network() -> None:
    both = pod(
        "both",
        (iface("back", "eth0", "10.89.1.7/24"), iface("front", "eth1", "10.89.0.7/24")),
        ("8080:80",),
    )
    found = published_interface(both, NETS)
    assert found is not None
    assert found.ifname == "eth1"
    assert exprs(published_rules([both], NETS)) == [
        "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.89.0.7:80"
    ]


def test_published_interface_none_when_only_internal_or_unknown() -> None:
    inside = pod("inside", (iface("back", "eth0", "10.89.1.3/24"),), ("8080:80",))
    ghost = pod("ghost", (iface("gone", "eth0", "10.99.0.3/24"),), ("8080:80",))
    assert published_interface(inside, NETS) is None
    assert published_interface(ghost, NETS) is None
    assert published_rules([inside, ghost], NETS) == []


def test_published_sorted_by_pod_and_tagged() -> None:
    b = pod("b", (iface("front", "eth0", "10.89.0.11/24"),), ("81:80",))
    a = pod("a", (iface("front", "eth0", "10.89.0.10/24"),), ("80:80",))
    assert [r.comment for r in published_rules([b, a], NETS)] == ["pod:a", "pod:b"]


def test_published_unspecified_host_ip_means_every_address_of_its_family() -> None:
    web = pod("web", (iface("front", "eth0", "10.89.0.2/24", "fd00:89::2/64"),), ("0.0.0.0:80:80",))
    assert exprs(published_rules([web], NETS)) == [
        "meta nfproto ipv4 tcp dport 80 dnat ip to 10.89.0.2:80"
    ]


# -- the whole ruleset -----------------------------------------------------

GOLDEN = """\
add table inet podnet
add chain inet podnet prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain inet podnet output { type nat hook output priority -100; policy accept; }
add chain inet podnet postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain inet podnet forward { type filter hook forward priority filter; policy accept; }
add chain inet podnet published_ports
add chain inet podnet outbound_nat
add chain inet podnet network_isolation
add chain inet podnet services
add chain inet podnet service_masquerade
add set inet podnet bridges { type ifname; }
flush chain inet podnet prerouting
flush chain inet podnet output
flush chain inet podnet postrouting
flush chain inet podnet forward
flush chain inet podnet published_ports
flush chain inet podnet outbound_nat
flush chain inet podnet network_isolation
flush set inet podnet bridges
add element inet podnet bridges { "pn-front", "pn-back" }
add rule inet podnet prerouting fib daddr type local jump published_ports
add rule inet podnet output fib daddr type local jump published_ports
add rule inet podnet postrouting jump outbound_nat
add rule inet podnet forward jump network_isolation
add rule inet podnet prerouting jump services comment "services"
add rule inet podnet output jump services comment "services"
add rule inet podnet postrouting jump service_masquerade comment "services"
add rule inet podnet published_ports meta nfproto ipv4 tcp dport 8080 dnat ip to 10.89.0.2:80 \
comment "pod:web"
add rule inet podnet published_ports meta nfproto ipv6 tcp dport 8080 dnat ip6 to \
[fd00:89::2]:80 comment "pod:web"
add rule inet podnet published_ports ip daddr 127.0.0.1 udp dport 5353 dnat ip to 10.89.0.2:53 \
comment "pod:web"
add rule inet podnet published_ports ip6 daddr ::1 tcp dport 8443 dnat ip6 to [fd00:89::2]:443 \
comment "pod:web"
add rule inet podnet outbound_nat oifname "pn-back" ip saddr 10.89.1.0/24 ct status dnat \
masquerade comment "network:back:hairpin"
add rule inet podnet outbound_nat ip saddr 10.89.0.0/24 ip daddr != 10.89.0.0/24 masquerade \
comment "network:front"
add rule inet podnet outbound_nat oifname "pn-front" ip saddr 10.89.0.0/24 ct status dnat \
masquerade comment "network:front:hairpin"
add rule inet podnet outbound_nat ip6 saddr fd00:89::/64 ip6 daddr != fd00:89::/64 masquerade \
comment "network:front"
add rule inet podnet outbound_nat oifname "pn-front" ip6 saddr fd00:89::/64 ct status dnat \
masquerade comment "network:front:hairpin"
add rule inet podnet outbound_nat oifname "pn-front" ip saddr 127.0.0.0/8 ct status dnat \
masquerade comment "network:front:localhost"
add rule inet podnet network_isolation iifname "pn-back" oifname != "pn-back" drop \
comment "network:back:internal"
add rule inet podnet network_isolation oifname "pn-back" iifname != "pn-back" drop \
comment "network:back:internal"
add rule inet podnet network_isolation ct status dnat accept comment "published-ports"
add rule inet podnet network_isolation iifname "pn-front" oifname @bridges \
oifname != "pn-front" drop comment "network:front:isolation"
"""


def test_render_ruleset_golden_dual_stack_internal_and_ports() -> None:
    tx = render_ruleset("podnet", [FRONT, BACK], [WEB, STOPPED])
    assert tx.render() == GOLDEN


def test_render_ruleset_key_rules() -> None:
    lines = render_ruleset("podnet", [FRONT, BACK], [WEB, STOPPED]).commands
    assert "add rule inet podnet prerouting fib daddr type local jump published_ports" in lines
    assert "add rule inet podnet output fib daddr type local jump published_ports" in lines
    # The stopped pod publishes nothing, and nothing reaches the internal network's pod.
    assert not any("7070" in line or "10.89.0.3" in line for line in lines)
    assert not any("10.89.1.2" in line for line in lines)
    # Flushes come before any rule, so a re-apply replaces rather than appends.
    last_flush = max(i for i, line in enumerate(lines) if line.startswith("flush "))
    first_rule = min(i for i, line in enumerate(lines) if line.startswith("add rule "))
    assert last_flush < first_rule


def test_render_ruleset_declares_every_base_chain_with_its_hook() -> None:
    lines = render_ruleset("podnet", [], []).commands
    for name, base in BASE_CHAINS.items():
        assert f"add chain inet podnet {name} {base.render()}" in lines


def test_render_ruleset_without_networks_has_no_elements() -> None:
    tx = render_ruleset("node2", [], [])
    text = tx.render()
    assert "add element" not in text
    assert "flush set inet node2 bridges" in text
    assert re.findall(r"^add rule .*$", text, re.M) == [
        "add rule inet node2 prerouting fib daddr type local jump published_ports",
        "add rule inet node2 output fib daddr type local jump published_ports",
        "add rule inet node2 postrouting jump outbound_nat",
        "add rule inet node2 forward jump network_isolation",
        'add rule inet node2 prerouting jump services comment "services"',
        'add rule inet node2 output jump services comment "services"',
        'add rule inet node2 postrouting jump service_masquerade comment "services"',
        'add rule inet node2 network_isolation ct status dnat accept comment "published-ports"',
    ]


def test_render_ruleset_only_touches_its_own_table() -> None:
    lines = render_ruleset("node2", [FRONT, BACK], [WEB]).commands
    assert lines[0] == "add table inet node2"
    for line in lines[1:]:
        assert line.split()[2:4] == ["inet", "node2"], line


def test_render_ruleset_checks_the_table_name() -> None:
    with pytest.raises(InvalidInput, match="nft table name 'bad table'"):
        render_ruleset("bad table", [FRONT], [])


def test_render_ruleset_is_deterministic_in_input_order() -> None:
    one = render_ruleset("podnet", [FRONT, BACK], [WEB, STOPPED]).render()
    two = render_ruleset("podnet", [FRONT, BACK], [STOPPED, WEB]).render()
    assert one == two
