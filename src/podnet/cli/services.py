"""``podnet service create|ls|inspect|rm|endpoints``."""

from __future__ import annotations

import argparse
from typing import Any

from podnet.api.http import ApiClient
from podnet.cli.args import key_values
from podnet.cli.render import print_json, table
from podnet.model.service import (
    HealthCheck,
    ServicePort,
    ServiceSpec,
    parse_affinity,
    parse_endpoint,
    publish,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    svc = sub.add_parser("service", help="services: a name, a virtual IP, balanced endpoints")
    verbs = svc.add_subparsers(dest="verb", required=True)
    c = verbs.add_parser("create", help="create a service")
    c.add_argument("name")
    c.add_argument("--port", action="append", required=True, help="[NAME=]PORT[:TARGET][/udp]")
    c.add_argument("--selector", "-l", action="append", help="KEY=VALUE over pod labels")
    c.add_argument("--endpoint", action="append", help="IP[@WEIGHT] (manual endpoints)")
    c.add_argument("-p", "--publish", action="append", help="HOST_PORT:PORT[/udp] on the node")
    c.add_argument("--lb", default="random", choices=["random", "roundrobin", "maglev"])
    c.add_argument("--affinity", help="client-ip[:TIMEOUT_SECONDS] (default 10800)")
    c.add_argument("--headless", action="store_true", help="no VIP: DNS answers endpoints")
    c.add_argument("--health", default="tcp", choices=["none", "tcp", "http"])
    c.add_argument("--health-path", default="/health")
    c.add_argument("--health-interval", type=float, default=2.0)
    c.add_argument("--health-timeout", type=float, default=1.0)
    c.add_argument("--healthy-threshold", type=int, default=2)
    c.add_argument("--unhealthy-threshold", type=int, default=3)
    ls = verbs.add_parser("ls", help="list services")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("-q", "--quiet", action="store_true")
    inspect = verbs.add_parser("inspect", help="show services with their endpoints")
    inspect.add_argument("names", nargs="+")
    rm = verbs.add_parser("rm", help="remove services")
    rm.add_argument("names", nargs="+")
    eps = verbs.add_parser("endpoints", help="a service's endpoints; --watch follows them")
    eps.add_argument("name")
    eps.add_argument("--watch", action="store_true", help="print each change (long-poll)")
    eps.add_argument("--json", action="store_true")


def _spec(args: argparse.Namespace) -> ServiceSpec:
    health = HealthCheck(
        kind=args.health,
        path=args.health_path,
        interval=args.health_interval,
        timeout=args.health_timeout,
        healthy_threshold=args.healthy_threshold,
        unhealthy_threshold=args.unhealthy_threshold,
    )
    return ServiceSpec(
        name=args.name,
        ports=publish([ServicePort.parse(p) for p in args.port], args.publish or []),
        selector=key_values(args.selector, "selector"),
        lb=args.lb,
        affinity_timeout=parse_affinity(args.affinity),
        headless=args.headless,
        endpoints=tuple(parse_endpoint(e) for e in args.endpoint or []),
        health=health,
    ).validate()


def _port_text(p: dict[str, Any]) -> str:
    text = f"{p['port']}:{p['target_port']}/{p['protocol']}"
    return f"{p['host_port']}->{text}" if p.get("host_port") else text


def _ls(client: ApiClient, args: argparse.Namespace) -> None:
    services = sorted(client.get("/v1/services"), key=lambda s: s["name"])
    if args.json:
        print_json(services)
        return
    if args.quiet:
        for s in services:
            print(s["name"])
        return
    rows = [
        (
            s["name"],
            ", ".join(s["vips"]) or "(headless)",
            ", ".join(_port_text(p) for p in s["ports"]),
            s["lb"] + (f"+affinity {s['affinity_timeout']}s" if s["affinity_timeout"] else ""),
            f"{sum(e['ready'] for e in s['endpoints'])}/{len(s['endpoints'])}",
            ",".join(f"{k}={v}" for k, v in s["selector"].items()) or "(manual)",
        )
        for s in services
    ]
    table(["SERVICE", "VIPS", "PORTS", "LB", "READY", "SELECTOR"], rows)


def _print_endpoints(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(answer)
        return
    rows = [
        (e["address"], e.get("pod") or "-", e["weight"], e["health"], "yes" if e["ready"] else "no")
        for e in answer["endpoints"]
    ]
    table(["ENDPOINT", "POD", "WEIGHT", "HEALTH", "READY"], rows)


def _endpoints(client: ApiClient, args: argparse.Namespace) -> None:
    url = f"/v1/services/{args.name}/endpoints"
    answer = client.get(url)
    _print_endpoints(answer, args.json)
    while args.watch:
        answer = client.get(f"{url}?wait={answer['etag']}&timeout=60")
        print(f"-- revision {answer['revision']}", flush=True)
        _print_endpoints(answer, args.json)


def run(client: ApiClient, args: argparse.Namespace) -> int:
    if args.verb == "create":
        spec = client.post("/v1/services", _spec(args).to_dict())
        print(f"{spec['name']} {' '.join(spec['vips']) or '(headless)'}")
    elif args.verb == "ls":
        _ls(client, args)
    elif args.verb == "inspect":
        print_json([client.get(f"/v1/services/{n}") for n in args.names])
    elif args.verb == "rm":
        for name in args.names:
            client.delete(f"/v1/services/{name}")
            print(name)
    elif args.verb == "endpoints":
        _endpoints(client, args)
    return 0
