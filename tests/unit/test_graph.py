"""podnet graph renders API data as a tree, Graphviz DOT and Mermaid."""

from __future__ import annotations

from typing import Any

import pytest

from podnet.cli.graph import render

NETWORKS: list[dict[str, Any]] = [
    {
        "name": "front",
        "bridge": "pn-front",
        "subnets": ["10.89.0.0/24"],
        "internal": False,
        "masquerade": True,
    },
    {
        "name": "back",
        "bridge": "pn-back",
        "subnets": ["10.89.1.0/24"],
        "internal": True,
        "masquerade": False,
    },
]
PODS: list[dict[str, Any]] = [
    {
        "name": "web-1",
        "ports": [{"host_ip": None, "host_port": 8080, "pod_port": 80, "protocol": "tcp"}],
        "interfaces": [
            {"network": "front", "ifname": "eth0", "addresses": ["10.89.0.2/24"]},
            {"network": "back", "ifname": "eth1", "addresses": ["10.89.1.2/24"]},
        ],
    },
]


def test_text_tree_shows_networks_pods_addresses_and_ports() -> None:
    text = render(NETWORKS, PODS).splitlines()
    assert text[0] == "host"
    assert text[1] == "├── back  pn-back  10.89.1.0/24  (internal)"
    assert text[2] == "│   └── web-1  eth1  10.89.1.2"
    assert text[3] == "└── front  pn-front  10.89.0.0/24  (nat)"
    assert text[4] == "    └── web-1  eth0  10.89.0.2  <= host 8080:80/tcp"


def test_dot_has_an_edge_per_interface_and_port() -> None:
    dot = render(NETWORKS, PODS, "dot")
    assert dot.startswith("graph podnet {") and dot.endswith("}")
    assert '"net:front" -- "pod:web-1" [label="eth0 10.89.0.2"];' in dot
    assert 'host -- "pod:web-1" [style=dashed, label="8080:80/tcp"];' in dot


@pytest.mark.parametrize("fmt", ["text", "dot", "mermaid"])
def test_empty_node_renders(fmt: str) -> None:
    assert render([], [], fmt)


def test_mermaid_ids_are_safe() -> None:
    assert "pod_web_1([web-1])" in render(NETWORKS, PODS, "mermaid")
