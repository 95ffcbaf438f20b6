"""Topology files: loading, every parse-time error with its line and hint, diffs."""

from __future__ import annotations

import ipaddress
import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

import podnet.topology
from podnet.errors import Conflict, InvalidInput, NotFound
from podnet.model import Attachment, Network, NetworkRequest, PodSpec, PortMapping
from podnet.topology import (
    Changes,
    Problem,
    Topology,
    TopologyError,
    load,
    loads,
    plan_changes,
    schema_text,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-tier.yaml"


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def problems(text: str) -> list[Problem]:
    with pytest.raises(TopologyError) as info:
        loads(doc(text), "t.yaml")
    return info.value.problems


def problem(text: str, fragment: str) -> Problem:
    """The one problem whose message contains ``fragment``."""
    found = [p for p in problems(text) if fragment in p.message]
    assert len(found) == 1, [str(p) for p in problems(text)]
    return found[0]


# --- valid files ------------------------------------------------------------


def test_example_loads() -> None:
    topo = load(EXAMPLE)
    assert topo.name == "two-tier"
    assert topo.source == str(EXAMPLE)
    assert topo.owner == "topology:two-tier"
    assert [n.name for n in topo.networks] == ["front", "back"]
    assert [p.name for p in topo.pods] == ["web-1", "web-2", "edge", "db"]
    assert {n.owner for n in topo.networks} | {p.owner for p in topo.pods} == {topo.owner}


def test_example_networks() -> None:
    topo = load(EXAMPLE)
    front, back = topo.networks
    assert front.subnets == (
        ipaddress.ip_network("10.89.0.0/24"),
        ipaddress.ip_network("fd00:89::/64"),
    )
    assert front.ipv6 and not front.internal
    assert back.internal and back.subnets == (ipaddress.ip_network("10.89.1.0/24"),)


def test_example_pods() -> None:
    topo = load(EXAMPLE)
    web = topo.pod("web-1")
    assert web is not None
    assert web.attachments == (Attachment("front", "eth0"), Attachment("back", "eth1"))
    assert web.labels == {"app": "web"}
    assert web.command == ("podnet", "whoami", "--port", "80")
    assert web.restart == "on-failure"
    edge, db = topo.pod("edge"), topo.pod("db")
    assert edge is not None and db is not None
    assert edge.ports == (PortMapping(8080, 80),)
    assert db.attachments == (Attachment("back", "eth0"),)
    assert db.command[-1] == "5432"


def test_round_trip_through_dicts() -> None:
    topo = load(EXAMPLE)
    for net in topo.networks:
        assert NetworkRequest.from_dict(json.loads(json.dumps(net.to_dict()))) == net
    for pod in topo.pods:
        assert PodSpec.from_dict(json.loads(json.dumps(pod.to_dict()))) == pod
    assert loads(EXAMPLE.read_text(), str(EXAMPLE)) == topo


def test_minimal_file() -> None:
    topo = loads("name: empty\n")
    assert topo == Topology("empty", "<string>", (), ())


def test_empty_network_is_automatic_ipv4() -> None:
    topo = loads("name: t\nnetworks:\n  lan:\n  other: {}\n")
    assert [n.name for n in topo.networks] == ["lan", "other"]
    assert topo.networks[0].wants_auto(4) and not topo.networks[0].wants_auto(6)


def test_replicas_expand() -> None:
    topo = loads(
        doc("""
        name: t
        networks: {lan: {}}
        pods:
          web: {replicas: 3, networks: [lan]}
          one: {replicas: 1}
          none: {replicas: 0}
          plain: {}
        """)
    )
    assert [p.name for p in topo.pods] == ["web-1", "web-2", "web-3", "one-1", "plain"]


def test_string_command_is_split_like_a_shell() -> None:
    topo = loads("name: t\npods:\n  a:\n    command: sh -c 'echo \"hi there\"; sleep 1'\n")
    assert topo.pods[0].command == ("sh", "-c", 'echo "hi there"; sleep 1')


def test_env_labels_and_integers() -> None:
    topo = loads("name: t\npods:\n  a:\n    env: {PORT: 80, MODE: fast}\n    labels: {v: 2}\n")
    assert topo.pods[0].env == {"PORT": "80", "MODE": "fast"}
    assert topo.pods[0].labels == {"v": "2"}


def test_ipv6_true_asks_for_an_automatic_subnet() -> None:
    net = loads("name: t\nnetworks:\n  lan: {ipv6: true}\n").networks[0]
    assert net.ipv6 and net.wants_auto(6) and net.wants_auto(4)


def test_ipv6_subnet() -> None:
    net = loads("name: t\nnetworks:\n  lan: {ipv6: 'fd00:1::/64'}\n").networks[0]
    assert net.subnets == (ipaddress.ip_network("fd00:1::/64"),)
    assert net.ipv6 and not net.wants_auto(6) and net.wants_auto(4)


def test_subnets_list_and_ipv6_only() -> None:
    text = "name: t\nnetworks:\n  a: {subnets: [10.1.0.0/24, 'fd00:2::/64']}\n"
    text += "  b: {ipv4: false, ipv6: true}\n"
    a, b = loads(text).networks
    assert len(a.subnets) == 2 and a.ipv6
    assert not b.wants_auto(4) and b.wants_auto(6)


def test_network_options() -> None:
    text = (
        "name: t\nnetworks:\n  lan: {mtu: 9000, masquerade: false, bridge: br-lan, labels: {a: b}}"
    )
    net = loads(text).networks[0]
    assert (net.mtu, net.masquerade, net.bridge, dict(net.labels)) == (
        9000,
        False,
        "br-lan",
        {"a": "b"},
    )


def test_attachment_items_and_interface_names() -> None:
    topo = loads(
        doc("""
        name: t
        networks:
          a: {subnet: 10.1.0.0/24, ipv6: "fd00:1::/64"}
          b: {}
          c: {}
        pods:
          p:
            networks:
              - {network: a, ip: 10.1.0.10, ipv6: "fd00:1::10", interface: eth1}
              - b
              - {network: c, interface: uplink}
        """)
    )
    assert topo.pods[0].attachments == (
        Attachment(
            "a",
            "eth1",
            (ipaddress.ip_address("10.1.0.10"), ipaddress.ip_address("fd00:1::10")),
        ),
        Attachment("b", "eth0"),
        Attachment("c", "uplink"),
    )


def test_yaml_1_2_scalars() -> None:
    # 'no' stays a string (YAML 1.1 would say False) and 8080:80 stays a port
    # (YAML 1.1 would read the base-60 integer 484880).
    topo = loads(
        "name: t\nnetworks: {n: {}}\npods:\n  a: {restart: no, networks: [n], ports: [8080:80]}\n"
    )
    assert topo.pods[0].restart == "no"
    assert topo.pods[0].ports == (PortMapping(8080, 80),)


def test_anchors_merge_keys_and_extension_fields() -> None:
    topo = loads(
        doc("""
        name: t
        x-common: &common
          networks: [lan]
          restart: always
        networks: {lan: {}}
        pods:
          a: {<<: *common}
          b:
            <<: *common
            restart: on-failure
        """)
    )
    assert [(p.name, p.restart) for p in topo.pods] == [("a", "always"), ("b", "on-failure")]
    assert topo.pods[1].attachments == (Attachment("lan", "eth0"),)


# --- the error type ----------------------------------------------------------


def test_error_lists_every_problem_in_file_order() -> None:
    with pytest.raises(TopologyError) as info:
        loads("name: t\nbogus: 1\npods:\n  a: {networks: [nope]}\n", "f.yaml")
    err = info.value
    assert isinstance(err, InvalidInput)
    assert [(p.line, p.column) for p in err.problems] == [(2, 1), (4, 18)]
    lines = str(err).splitlines()
    keys = "name, networks, pods, proxies, routes, services, x-*"
    assert lines[0] == f"f.yaml:2:1: unknown key 'bogus' at the top level (valid keys here: {keys})"
    assert lines[1].startswith("f.yaml:4:18: pod 'a' is on unknown network 'nope' (")
    assert err.to_dict()["problems"][0]["line"] == 2
    assert err.kind == "invalid"


def test_problem_format() -> None:
    assert str(Problem("f", 3, 4, "bad", "fix it")) == "f:3:4: bad (fix it)"
    assert str(Problem("f", 3, 4, "bad")) == "f:3:4: bad"


# --- every parse-time error, with its line and hint ------------------------------


def test_yaml_syntax_error_has_its_line() -> None:
    found = problems("name: t\npods:\n  a: {command: [x, y}\n")
    assert len(found) == 1
    assert found[0].line == 3 and "YAML syntax error" in found[0].message


def test_tab_indentation() -> None:
    (found,) = problems("name: t\npods:\n\ta: {}\n")
    assert found.line == 3 and found.hint == "indent with spaces, not tabs"


def test_two_documents() -> None:
    (found,) = problems("name: t\n---\nname: u\n")
    assert found.line == 2 and "one document" in (found.hint or "")


def test_duplicate_keys_are_reported() -> None:
    found = problem(
        """
        name: t
        pods:
          web: {}
          db: {}
          web: {command: x}
        """,
        "duplicate key",
    )
    assert (found.line, found.column) == (5, 3)
    assert found.message == "duplicate key 'web' in pods (first at line 3)"
    assert "keep only the last" in (found.hint or "")


def test_duplicate_top_level_key() -> None:
    found = problem("name: t\nname: u\n", "duplicate key")
    assert found.line == 2 and found.message == "duplicate key 'name' (first at line 1)"


def test_empty_file() -> None:
    (found,) = problems("")
    assert found.message == "the file is empty" and found.line == 1


def test_missing_name() -> None:
    found = problem("pods: {}\n", "missing")
    assert found.message == "the file is missing the required key 'name'"
    assert found.hint is not None and found.hint.startswith("add name:")


def test_bad_topology_name_is_reported_once() -> None:
    (found,) = problems("name: Two_Tier\n")
    assert (found.line, found.column) == (1, 7)
    assert found.message == "topology name 'Two_Tier' is not valid"
    assert "lower-case" in (found.hint or "")


def test_bad_network_name_is_reported_once_at_the_key() -> None:
    (found,) = problems("name: t\nnetworks:\n  Front: {}\n")
    assert (found.line, found.column) == (3, 3)
    assert found.message == "network name 'Front' is not valid"


@pytest.mark.parametrize(
    ("text", "line", "message", "hint"),
    [
        (
            "name: t\nnetworks:\n  front: {subnett: 10.1.0.0/24}\n",
            3,
            "unknown key 'subnett' in networks.front",
            "did you mean 'subnet'?",
        ),
        (
            "name: t\npods:\n  a:\n    comand: [x]\n",
            4,
            "unknown key 'comand' in pods.a",
            "did you mean 'command'?",
        ),
        (
            "name: t\nnetwork: {}\n",
            2,
            "unknown key 'network' at the top level",
            "did you mean 'networks'?",
        ),
        (
            "name: t\nnetworks: {n: {}}\npods:\n  a:\n    networks: [{network: n, interfce: e}]\n",
            5,
            "unknown key 'interfce' in pods.a.networks[0]",
            "did you mean 'interface'?",
        ),
    ],
)
def test_unknown_keys(text: str, line: int, message: str, hint: str) -> None:
    (found,) = problems(text)
    assert (found.line, found.message) == (line, message)
    assert found.hint is not None and found.hint.startswith(hint)


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    (found,) = problems("name: t\npods:\n  a: {zzz: 1}\n")
    assert found.hint is not None and found.hint.startswith("valid keys here: command, env")


def test_wrong_types_say_how_to_fix() -> None:
    found = problems(
        doc("""
        name: t
        networks:
          n: {internal: yes, mtu: "9000"}
        pods:
          a: {env: {DEBUG: true}, networks: n, replicas: two}
        """)
    )
    got = {(p.line, p.message, p.hint) for p in found}
    assert (
        3,
        "networks.n.internal must be true or false, not text ('yes')",
        "write true or false",
    ) in got
    assert (
        5,
        "pods.a.env.DEBUG must be text or an integer, not a boolean (true)",
        'quote it: "true"',
    ) in got
    assert (5, "pods.a.networks must be a list, not text ('n')", "write a list: [n]") in got
    assert any(p.message == "pods.a.replicas must be an integer, not text ('two')" for p in found)
    assert any(p.message.startswith("networks.n.mtu must be an integer") for p in found)
    assert len(found) == 5


def test_scalar_where_a_mapping_belongs() -> None:
    (found,) = problems("name: t\nnetworks:\n  front: 10.0.0.0/24\n")
    assert found.message == "networks.front must be a mapping, not text ('10.0.0.0/24')"
    assert found.hint is not None and "subnet" in found.hint


def test_alias_bombs_are_cut_short() -> None:
    lines = ["name: t", "x-a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"x-a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    (found,) = problems("\n".join(lines))
    assert found.message == "the file expands to too many values"


def test_enum_with_did_you_mean() -> None:
    (found,) = problems("name: t\npods:\n  a: {restart: on-failur}\n")
    assert found.message == "pods.a.restart is 'on-failur', not one of: no, on-failure, always"
    assert found.hint == "did you mean 'on-failure'?"


def test_out_of_range() -> None:
    (found,) = problems("name: t\nnetworks:\n  n:\n    mtu: 100\n")
    assert (found.line, found.message) == (4, "networks.n.mtu is 100; the minimum is 576")
    assert found.hint is not None and found.hint.startswith("MTU of the bridge")


def test_unknown_network_with_did_you_mean() -> None:
    found = problem(
        """
        name: t
        networks: {front: {}, back: {}}
        pods:
          web:
            networks: [front, bak]
        """,
        "unknown network",
    )
    assert (found.line, found.column) == (5, 23)
    assert found.message == "pod 'web' is on unknown network 'bak'"
    assert found.hint == "did you mean 'back'? networks defined here: back, front"


def test_unknown_network_in_an_item_points_at_the_name() -> None:
    found = problem(
        "name: t\npods:\n  a:\n    networks:\n      - {network: lan, interface: eth0}\n",
        "unknown network",
    )
    assert (found.line, found.column) == (5, 19)
    assert found.hint == "networks defined here: none"


def test_overlapping_subnets() -> None:
    found = problem(
        """
        name: t
        networks:
          front:
            subnet: 10.89.0.0/24
          back:
            subnet: 10.89.0.128/25
        """,
        "overlap",
    )
    assert found.line == 6
    assert str(found) == (
        "t.yaml:6:13: subnets 10.89.0.0/24 (front) and 10.89.0.128/25 (back) overlap "
        "(pick non-overlapping subnets)"
    )


def test_overlapping_ipv6_subnets() -> None:
    text = "name: t\nnetworks:\n  a: {ipv6: 'fd00::/48'}\n  b: {ipv6: 'fd00::/64'}\n"
    assert problem(text, "overlap").line == 4


def test_bad_subnets() -> None:
    found = problems(
        doc("""
        name: t
        networks:
          a: {subnet: 10.1.0.1/24}
          b: {subnet: 10.2.0.0/24, subnets: [10.3.0.0/24]}
          c: {subnets: [10.4.0.0/24, 10.5.0.0/24]}
          d: {ipv6: 10.6.0.0/24}
          e: {ipv4: false}
          f: {ipv4: false, subnet: 10.7.0.0/24}
          g: {subnet: 10.8.0.0/31}
        """)
    )
    by_line: dict[int, list[str]] = {}
    for p in found:
        by_line.setdefault(p.line, []).append(p.message)
    assert by_line[3] == ["subnet '10.1.0.1/24' is not valid: 10.1.0.1/24 has host bits set"]
    assert by_line[4] == [
        "both subnet and subnets are given",
        "network 'b' has two IPv4 subnets: 10.2.0.0/24 and 10.3.0.0/24",
    ]
    assert by_line[5] == ["network 'c' has two IPv4 subnets: 10.4.0.0/24 and 10.5.0.0/24"]
    assert by_line[6] == ["ipv6 of network 'd' is the IPv4 subnet 10.6.0.0/24"]
    assert by_line[7][0].startswith("network 'e' has no addresses")
    assert by_line[8] == ["network 'f' has ipv4: false but an IPv4 subnet"]
    assert by_line[9] == ["subnet 10.8.0.0/31 is too small for a gateway and pods"]


def test_bridge_name_too_long_is_reported_once() -> None:
    (found,) = problems("name: t\nnetworks:\n  front:\n    bridge: pn-frontend-network\n")
    assert (found.line, found.column) == (4, 13)
    assert found.message == "bridge name 'pn-frontend-network' is 19 characters; Linux allows 15"
    assert found.hint == "shorten it, or leave bridge out to get pn-<network>"


def test_two_networks_on_one_bridge() -> None:
    found = problem("name: t\nnetworks:\n  front: {}\n  other: {bridge: pn-front}\n", "share")
    assert found.line == 4
    assert found.message == "networks 'front' and 'other' would share bridge 'pn-front'"


def test_internal_with_masquerade() -> None:
    found = problem("name: t\nnetworks:\n  n: {internal: true, masquerade: true}\n", "internal")
    assert found.line == 3 and found.hint is not None


def test_pod_name_with_replica_suffix_too_long() -> None:
    name = "a" * 61
    found = problem(f"name: t\npods:\n  {name}:\n    replicas: 10\n", "replica suffix")
    assert (found.line, found.column) == (3, 3)
    assert found.message == (
        f"pod name '{name}-10' (with replica suffix) is 64 characters; names are at most 63"
    )
    assert found.hint == f"shorten '{name}' to at most 60 characters"


def test_replica_names_clash_with_another_pod() -> None:
    found = problem("name: t\npods:\n  web: {replicas: 2}\n  web-2: {}\n", "used twice")
    assert found.line == 4
    assert (
        found.message
        == "pod name 'web-2' is used twice: by replica 'web-2' of pod 'web' and by pod 'web-2'"
    )


def test_replicas_cannot_publish_a_fixed_host_port() -> None:
    found = problem(
        """
        name: t
        networks: {front: {}}
        pods:
          web:
            replicas: 2
            networks: [front]
            ports: ["8080:80"]
        """,
        "host port",
    )
    assert (found.line, found.column) == (7, 13)
    assert found.message == "host port 8080/tcp is published by both web-1 and web-2"
    assert (
        found.hint
        == "a pod with replicas cannot publish a fixed host port; drop replicas or the port"
    )


def test_host_port_published_by_two_pods() -> None:
    found = problem(
        """
        name: t
        networks: {front: {}}
        pods:
          a: {networks: [front], ports: ["8080:80"]}
          b: {networks: [front], ports: ["127.0.0.1:8080:81", "9090:90/udp"]}
        """,
        "host port",
    )
    assert found.line == 5
    assert found.message == "host port 8080/tcp is published by both a and b"


def test_same_port_number_other_protocol_or_address_is_fine() -> None:
    text = "name: t\nnetworks: {n: {}}\npods:\n"
    text += "  a: {networks: [n], ports: ['8080:80', '8080:80/udp', '127.0.0.1:9090:90']}\n"
    text += "  b: {networks: [n], ports: ['127.0.0.2:9090:90']}\n"
    assert len(loads(text).pods[0].ports) == 3


def test_port_problems() -> None:
    found = problems(
        doc("""
        name: t
        networks: {n: {}}
        pods:
          a: {networks: [n], ports: ["80", "70000:80", "8080:80", "8080:81"]}
          b: {ports: ["9000:90"]}
        """)
    )
    messages = [p.message for p in found]
    assert "published port '80' is not valid" in messages
    assert "port 70000 in '70000:80' is out of range 1-65535" in messages
    assert "pod 'a' publishes host port 8080/tcp twice" in messages
    assert "pod 'b' publishes ports but is on no network" in messages


def test_fixed_ip_outside_subnet() -> None:
    found = problem(
        """
        name: t
        networks:
          back: {subnet: 10.89.1.0/24}
        pods:
          db:
            networks:
              - {network: back, ip: 10.89.5.10}
        """,
        "fixed IP",
    )
    assert (found.line, found.column) == (7, 29)
    assert (
        found.message == "fixed IP 10.89.5.10 is outside the subnet 10.89.1.0/24 of network 'back'"
    )
    assert found.hint == "pick an address such as 10.89.1.10"


@pytest.mark.parametrize(
    ("ip", "trouble"),
    [
        ("10.1.0.0", "is the network address of 10.1.0.0/24"),
        ("10.1.0.1", "is the gateway (first address) of 10.1.0.0/24"),
        ("10.1.0.255", "is the broadcast address of 10.1.0.0/24"),
    ],
)
def test_fixed_ip_on_a_reserved_address(ip: str, trouble: str) -> None:
    text = "name: t\nnetworks: {n: {subnet: 10.1.0.0/24}}\npods:\n  a:\n"
    text += f"    networks: [{{network: n, ip: {ip}}}]\n"
    found = problem(text, "fixed IP")
    assert found.message == f"fixed IP {ip} {trouble} of network 'n'"


def test_fixed_ip_used_twice() -> None:
    found = problem(
        """
        name: t
        networks: {n: {subnet: 10.1.0.0/24}}
        pods:
          a:
            networks: [{network: n, ip: 10.1.0.10}]
          b:
            networks: [{network: n, ip: 10.1.0.10}]
        """,
        "fixed IP",
    )
    assert found.line == 7
    assert found.message == "fixed IP 10.1.0.10 on network 'n' is given to both 'a' and 'b'"


def test_fixed_ip_without_explicit_subnet() -> None:
    found = problem(
        "name: t\nnetworks: {n: {}}\npods:\n  a:\n    networks: [{network: n, ip: 10.1.0.10}]\n",
        "fixed IP",
    )
    assert found.line == 5
    assert found.message == (
        "fixed IP 10.1.0.10 is on network 'n', whose IPv4 subnet is picked automatically"
    )
    assert found.hint == "give network 'n' an explicit subnet: that contains 10.1.0.10"


def test_fixed_ipv6_on_a_network_without_ipv6() -> None:
    found = problem(
        "name: t\nnetworks: {n: {}}\npods:\n  a:\n    networks: [{network: n, ipv6: 'fd00::10'}]\n",
        "fixed IP",
    )
    assert found.message == "fixed IP fd00::10 is on network 'n', which has no IPv6"


def test_fixed_ip_with_replicas() -> None:
    found = problem(
        """
        name: t
        networks: {n: {subnet: 10.1.0.0/24}}
        pods:
          a:
            replicas: 2
            networks: [{network: n, ip: 10.1.0.10}]
        """,
        "fixed IP",
    )
    assert found.line == 6
    assert found.message == "pod 'a' has 2 replicas but a fixed IP 10.1.0.10"
    assert found.hint == "a fixed address fits one pod: drop replicas or the address"


def test_bad_addresses() -> None:
    found = problems(
        doc("""
        name: t
        networks: {n: {subnet: 10.1.0.0/24, ipv6: "fd00::/64"}}
        pods:
          a:
            networks: [{network: n, ip: "fd00::5", ipv6: not-an-ip}]
        """)
    )
    assert [p.message for p in found] == [
        "ip fd00::5 is an IPv6 address",
        "ipv6 'not-an-ip' is not an IPv6 address",
    ]


def test_attachment_problems() -> None:
    found = problems(
        doc("""
        name: t
        networks: {a: {}, b: {}}
        pods:
          p:
            networks:
              - {network: a, interface: eth0}
              - {network: b, interface: eth0}
              - a
              - {network: a, interface: "bad/name"}
        """)
    )
    messages = [p.message for p in found]
    assert "interface 'eth0' is used twice in this pod" in messages
    assert "network 'a' is listed twice" in messages
    assert any("'bad/name' is not a valid Linux interface name" in m for m in messages)


def test_unclosed_quote_in_command() -> None:
    found = problem('name: t\npods:\n  a:\n    command: "echo \'hi"\n', "command")
    assert (found.line, found.column) == (4, 14)
    assert found.hint == "close the quote, or write the command as a list"


def test_recursive_alias_does_not_hang() -> None:
    found = problems("name: t\nx-loop: &a [*a]\n")
    assert any("refers to itself" in p.message for p in found)


def test_unsupported_tag() -> None:
    found = problem("name: !!binary aGk=\n", "not supported")
    assert found.message == "YAML tag tag:yaml.org,2002:binary is not supported here"


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        doc("""
        name: Bad
        networks:
          front: {subnet: 10.89.0.0/24, bridge: pn-frontend-network}
          back: {subnet: 10.89.0.128/25}
        pods:
          web:
            replicas: 2
            networks: [front, bak]
            ports: ["8080:80"]
            restart: sometimes
        """)
    )
    assert [p.line for p in found] == [1, 3, 4, 8, 9, 10]


# --- load() ---------------------------------------------------------------


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load(tmp_path / "nope.yaml")


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"name: t\npods:\n  a: {command: \xff}\n")
    with pytest.raises(TopologyError) as info:
        load(path)
    assert info.value.problems[0].line == 3
    assert info.value.problems[0].file == str(path)


# --- the schema ----------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads(schema_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_validates_the_example() -> None:
    schema = json.loads(schema_text())
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(EXAMPLE.read_text()))


def test_schema_rejects_unknown_keys() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema_text()))
    assert not validator.is_valid({"name": "t", "pods": {"a": {"bogus": 1}}})


def _properties(node: object) -> list[tuple[str, dict[str, object]]]:
    if not isinstance(node, dict):
        return []
    found = [(k, v) for k, v in node.get("properties", {}).items() if isinstance(v, dict)]
    for value in node.values():
        found += _properties(value)
    return found


def test_every_schema_property_is_described() -> None:
    props = _properties(json.loads(schema_text()))
    assert props
    assert [name for name, spec in props if "description" not in spec] == []


# --- diffs ---------------------------------------------------------------


TOPO = """
name: lab
networks:
  front: {subnet: 10.89.0.0/24}
  back: {internal: true}
pods:
  web: {replicas: 2, networks: [front, back], command: [serve]}
  db: {networks: [back]}
"""


def resolved(req: NetworkRequest, auto4: str = "10.99.0.0/24") -> Network:
    """What the agent would make of a request (an auto subnet from a pool)."""
    subnets = list(req.subnets)
    if req.wants_auto(4):
        subnets.insert(0, ipaddress.ip_network(auto4))
    if req.wants_auto(6):
        subnets.append(ipaddress.ip_network("fd99::/64"))
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


def existing(text: str = TOPO) -> tuple[Topology, list[Network], list[PodSpec]]:
    topo = loads(doc(text))
    return topo, [resolved(n) for n in topo.networks], list(topo.pods)


def test_diff_everything_new() -> None:
    topo = loads(doc(TOPO))
    changes = plan_changes(topo, [], [])
    assert changes.add_networks == topo.networks and changes.add_pods == topo.pods
    assert changes.summary() == [
        "+ network front",
        "+ network back",
        "+ pod web-1",
        "+ pod web-2",
        "+ pod db",
    ]


def test_diff_no_op_with_auto_subnet_and_internal_masquerade() -> None:
    topo, nets, pods = existing()
    changes = plan_changes(topo, nets, pods)
    assert changes.empty and changes.summary() == [] and changes == Changes()


def test_diff_ignores_resolved_interfaces() -> None:
    from podnet.model import Interface

    topo, nets, pods = existing()
    iface = Interface("back", "eth0", "pnv0123456789ab", (ipaddress.ip_interface("10.99.0.5/24"),))
    pods = [p.with_interfaces((iface,)) for p in pods]
    assert plan_changes(topo, nets, pods).empty


def test_diff_pod_command_changed() -> None:
    topo, nets, pods = existing()
    old = PodSpec.from_dict({**pods[0].to_dict(), "command": ["old"]})
    changes = plan_changes(topo, nets, [old, *pods[1:]])
    assert [p.name for p in changes.replace_pods] == ["web-1"]
    assert changes.summary() == ["~ pod web-1 (command changed)"]


def test_diff_pod_several_fields_changed() -> None:
    topo, nets, pods = existing()
    old = PodSpec.from_dict({**pods[2].to_dict(), "labels": {"a": "b"}, "restart": "always"})
    changes = plan_changes(topo, nets, [*pods[:2], old])
    assert changes.summary() == ["~ pod db (labels, restart changed)"]


def test_diff_explicit_subnet_changed_replaces_network_and_its_pods() -> None:
    topo, nets, pods = existing()
    nets[0] = resolved(
        NetworkRequest("front", (ipaddress.ip_network("10.88.0.0/24"),), owner=topo.owner)
    )
    changes = plan_changes(topo, nets, pods)
    assert [n.name for n in changes.replace_networks] == ["front"]
    assert [p.name for p in changes.replace_pods] == ["web-1", "web-2"]
    assert changes.summary() == [
        "~ network front (subnets changed)",
        "~ pod web-1 (network front replaced)",
        "~ pod web-2 (network front replaced)",
    ]


def test_diff_auto_subnet_matches_any_subnet_of_its_version() -> None:
    topo, nets, pods = existing()
    nets[1] = resolved(topo.networks[1], auto4="172.30.5.0/24")
    assert plan_changes(topo, nets, pods).empty


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("internal", False, "internal changed"),
        ("mtu", 9000, "mtu changed"),
        ("labels", {"x": "y"}, "labels changed"),
        ("subnets", ["10.99.0.0/24", "fd00:1::/64"], "subnets changed"),
    ],
)
def test_diff_network_fields(field: str, value: object, reason: str) -> None:
    topo, nets, pods = existing()
    nets[1] = Network.from_dict({**nets[1].to_dict(), field: value})
    changes = plan_changes(topo, nets, pods)
    assert changes.summary()[0] == f"~ network back ({reason})"
    assert {p.name for p in changes.replace_pods} == {"web-1", "web-2", "db"}


def test_diff_explicit_bridge() -> None:
    text = TOPO.replace("back: {internal: true}", "back: {internal: true, bridge: br-back}")
    topo, nets, pods = existing(text)
    assert plan_changes(topo, nets, pods).empty
    nets[1] = Network.from_dict({**nets[1].to_dict(), "bridge": "pn-back"})
    assert plan_changes(topo, nets, pods).summary()[0] == "~ network back (bridge changed)"


def test_diff_ipv6_turned_on() -> None:
    topo, nets, pods = existing(TOPO.replace("{internal: true}", "{internal: true, ipv6: true}"))
    nets[1] = resolved(NetworkRequest("back", internal=True, owner=topo.owner))
    assert plan_changes(topo, nets, pods).summary()[0] == "~ network back (subnets changed)"


def test_diff_removes_only_what_the_topology_owns() -> None:
    topo, nets, pods = existing()
    own_net = resolved(NetworkRequest("old", owner=topo.owner), auto4="10.98.0.0/24")
    other_net = resolved(NetworkRequest("theirs", owner="topology:other"), auto4="10.97.0.0/24")
    own_pod = PodSpec("old-1", owner=topo.owner)
    hand_pod = PodSpec("manual")
    changes = plan_changes(topo, [*nets, own_net, other_net], [*pods, own_pod, hand_pod])
    assert changes.remove_networks == ("old",)
    assert changes.remove_pods == ("old-1",)
    assert changes.summary() == ["- network old", "- pod old-1"]


def test_diff_refuses_names_owned_by_someone_else() -> None:
    topo, nets, pods = existing()
    nets[0] = Network.from_dict({**nets[0].to_dict(), "owner": "topology:other"})
    pods[2] = PodSpec.from_dict({**pods[2].to_dict(), "owner": ""})
    with pytest.raises(Conflict) as info:
        plan_changes(topo, nets, pods)
    message = str(info.value)
    assert "network 'front' already exists, owned by topology:other" in message
    assert "pod 'db' already exists, made outside any topology (no owner)" in message


# --- public surface ----------------------------------------------------------


def test_exported_names() -> None:
    assert sorted(podnet.topology.__all__) == [
        "Changes",
        "Problem",
        "Topology",
        "TopologyError",
        "load",
        "loads",
        "owner_of",
        "plan_changes",
        "schema_text",
    ]
    for name in podnet.topology.__all__:
        assert hasattr(podnet.topology, name)
