"""``podnet network create|ls|inspect|rm``."""

from __future__ import annotations

import argparse

from podnet.api.http import ApiClient
from podnet.cli.args import key_values
from podnet.cli.render import print_json, table
from podnet.model.network import NetworkRequest, parse_subnet

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    net = sub.add_parser("network", help="manage networks")
    verbs = net.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="create a network (a bridge with subnets)")
    create.add_argument("name")
    create.add_argument("--subnet", action="append", help="CIDR (IPv4 or IPv6); repeatable")
    create.add_argument(
        "--ipv6", nargs="?", const="auto", help="dual stack; optionally the IPv6 subnet"
    )
    create.add_argument("--internal", action="store_true", help="no route out of the subnet")
    create.add_argument("--no-masquerade", action="store_true", help="no outbound NAT")
    create.add_argument("--mtu", type=int, default=1500)
    create.add_argument("--bridge", help="bridge name (at most 15 characters)")
    create.add_argument("-l", "--label", action="append", help="KEY=VALUE")
    ls = verbs.add_parser("ls", help="list networks")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("-q", "--quiet", action="store_true", help="names only")
    inspect = verbs.add_parser("inspect", help="show networks as JSON")
    inspect.add_argument("names", nargs="+")
    rm = verbs.add_parser("rm", help="remove networks")
    rm.add_argument("names", nargs="+")


def _request(args: argparse.Namespace) -> NetworkRequest:
    subnets = [parse_subnet(s) for s in args.subnet or []]
    if args.ipv6 not in (None, "auto"):
        subnets.append(parse_subnet(args.ipv6))
    return NetworkRequest(
        name=args.name,
        subnets=tuple(subnets),
        ipv6=args.ipv6 is not None or any(s.version == 6 for s in subnets),
        internal=args.internal,
        masquerade=not args.no_masquerade,
        mtu=args.mtu,
        bridge=args.bridge,
        labels=key_values(args.label, "label"),
    )


def run(client: ApiClient, args: argparse.Namespace) -> int:
    if args.verb == "create":
        net = client.post("/v1/networks", _request(args).to_dict())
        print(net["name"])
    elif args.verb == "ls":
        nets = client.get("/v1/networks")
        if args.json:
            print_json(nets)
        elif args.quiet:
            for n in nets:
                print(n["name"])
        else:
            rows = [
                (
                    n["name"],
                    n["bridge"],
                    ", ".join(n["subnets"]),
                    ", ".join(n["gateways"]),
                    "internal" if n["internal"] else ("nat" if n["masquerade"] else "routed"),
                    len(n["pods"]),
                )
                for n in nets
            ]
            table(["NETWORK", "BRIDGE", "SUBNETS", "GATEWAYS", "MODE", "PODS"], rows)
    elif args.verb == "inspect":
        print_json([client.get(f"/v1/networks/{n}") for n in args.names])
    elif args.verb == "rm":
        for name in args.names:
            client.delete(f"/v1/networks/{name}")
            print(name)
    return 0
