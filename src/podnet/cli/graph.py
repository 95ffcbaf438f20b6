"""``podnet graph``: the node's networks and pods as a picture.

Formats: ``text`` (a tree for the terminal), ``dot`` (Graphviz) and ``mermaid``
(renders in GitHub and most wikis). Pure: API data in, text out.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from podnet.api.http import ApiClient
from podnet.model.ports import PortMapping

__all__ = ["add_parser", "render", "run"]

Json = dict[str, Any]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("graph", help="draw networks, pods and published ports")
    p.add_argument("--format", choices=["text", "dot", "mermaid"], default="text")


def _members(network: str, pods: Sequence[Json]) -> list[tuple[Json, Json]]:
    return [
        (pod, iface)
        for pod in sorted(pods, key=lambda p: p["name"])
        for iface in pod["interfaces"]
        if iface["network"] == network
    ]


def _addresses(iface: Json) -> str:
    return " ".join(a.split("/")[0] for a in iface["addresses"])


def _ports(pod: Json) -> list[str]:
    return [str(PortMapping.from_dict(p)) for p in pod["ports"]]


def _mode(net: Json) -> str:
    return "internal" if net["internal"] else ("nat" if net["masquerade"] else "routed")


def _text(networks: Sequence[Json], pods: Sequence[Json]) -> str:
    lines = ["host"]
    for i, net in enumerate(networks):
        last_net = i == len(networks) - 1
        lines.append(
            f"{'└──' if last_net else '├──'} {net['name']}  {net['bridge']}  "
            f"{' '.join(net['subnets'])}  ({_mode(net)})"
        )
        members = _members(net["name"], pods)
        for j, (pod, iface) in enumerate(members):
            branch = "└──" if j == len(members) - 1 else "├──"
            ports = "".join(f"  <= host {p}" for p in _ports(pod) if iface is pod["interfaces"][0])
            lines.append(
                f"{'    ' if last_net else '│   '}{branch} {pod['name']}  {iface['ifname']}  "
                f"{_addresses(iface)}{ports}"
            )
    return "\n".join(lines)


def _dot(networks: Sequence[Json], pods: Sequence[Json]) -> str:
    out = ["graph podnet {", "  rankdir=LR;", '  host [shape=box3d, label="host"];']
    for net in networks:
        label = f"{net['name']}\\n{net['bridge']}\\n{' '.join(net['subnets'])}"
        out.append(f'  "net:{net["name"]}" [shape=box, label="{label}"];')
        out.append(f'  host -- "net:{net["name"]}" [label="{_mode(net)}"];')
    for pod in pods:
        out.append(f'  "pod:{pod["name"]}" [shape=ellipse, label="{pod["name"]}"];')
        for iface in pod["interfaces"]:
            label = f"{iface['ifname']} {_addresses(iface)}"
            out.append(f'  "net:{iface["network"]}" -- "pod:{pod["name"]}" [label="{label}"];')
        for port in _ports(pod):
            out.append(f'  host -- "pod:{pod["name"]}" [style=dashed, label="{port}"];')
    out.append("}")
    return "\n".join(out)


def _mermaid(networks: Sequence[Json], pods: Sequence[Json]) -> str:
    out = ["graph LR", "  host[(host)]"]
    for net in networks:
        out.append(f'  net_{_id(net["name"])}["{net["name"]}<br/>{" ".join(net["subnets"])}"]')
        out.append(f"  host --- net_{_id(net['name'])}")
    for pod in pods:
        out.append(f"  pod_{_id(pod['name'])}([{pod['name']}])")
        for iface in pod["interfaces"]:
            label = f"{iface['ifname']} {_addresses(iface)}"
            out.append(f'  net_{_id(iface["network"])} ---|"{label}"| pod_{_id(pod["name"])}')
        for port in _ports(pod):
            out.append(f'  host -.->|"{port}"| pod_{_id(pod["name"])}')
    return "\n".join(out)


def _id(name: str) -> str:
    return name.replace("-", "_")


def render(networks: Sequence[Json], pods: Sequence[Json], fmt: str = "text") -> str:
    """The picture of ``networks`` and ``pods`` (as the API returns them)."""
    nets = sorted(networks, key=lambda n: n["name"])
    renderer = {"text": _text, "dot": _dot, "mermaid": _mermaid}[fmt]
    return renderer(nets, pods)


def run(client: ApiClient, args: argparse.Namespace) -> int:
    print(render(client.get("/v1/networks"), client.get("/v1/pods"), args.format))
    return 0
