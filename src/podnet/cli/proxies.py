"""``podnet proxy create|ls|inspect|rm``: edge proxies and pod sidecars.

An edge proxy runs on the node, in the host netns, published on ``--port``.
A sidecar (``--sidecar --pod POD``) runs in the pod's netns and takes the pod's
connections to service VIPs. The agent runs and supervises both. ``proxy run``
(the process itself) is :mod:`podnet.cli.proxy`'s; this module adds the
management verbs to the same ``proxy`` command group.
"""

from __future__ import annotations

import argparse
from typing import Any

from podnet.api.http import ApiClient
from podnet.cli.render import print_json, table
from podnet.errors import InvalidInput
from podnet.model.route import ProxySpec

__all__ = ["VERBS", "add_commands", "proxy_spec", "run"]

VERBS = ("create", "ls", "inspect", "rm")


def add_commands(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the management verbs under the ``proxy`` command group."""
    c = verbs.add_parser("create", help="create an edge proxy or a pod's sidecar")
    c.add_argument("name")
    c.add_argument("--port", type=int, help="edge: host port; sidecar: listen port (15001)")
    c.add_argument("--sidecar", action="store_true", help="run in --pod's netns")
    c.add_argument("--pod", help="the sidecar's pod")
    c.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    c.add_argument("--admin-port", type=int, help="Prometheus /metrics on loopback")
    ls = verbs.add_parser("ls", help="list proxies")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("-q", "--quiet", action="store_true")
    inspect = verbs.add_parser("inspect", help="show proxies with their process state")
    inspect.add_argument("names", nargs="+")
    inspect.add_argument("--json", action="store_true", help="(always JSON)")
    rm = verbs.add_parser("rm", help="remove proxies (missing ones are fine)")
    rm.add_argument("names", nargs="+")


def proxy_spec(args: argparse.Namespace) -> ProxySpec:
    """The ProxySpec a ``proxy create`` describes, validated."""
    if args.sidecar:
        return ProxySpec(
            name=args.name,
            mode="sidecar",
            pod=args.pod,
            listen_port=args.port or 15001,
            admin_port=args.admin_port,
            workers=args.workers,
        ).validate()
    if args.pod:
        raise InvalidInput("--pod is for sidecars", hint="add --sidecar, or drop --pod")
    return ProxySpec(
        name=args.name,
        mode="edge",
        host_port=args.port,
        admin_port=args.admin_port,
        workers=args.workers,
    ).validate()


def _where(p: dict[str, Any]) -> str:
    if p["mode"] == "sidecar":
        return f"pod {p['pod']} :{p['listen_port']}"
    return f"*:{p['host_port']}"


def _ls(client: ApiClient, args: argparse.Namespace) -> None:
    proxies = sorted(client.get("/v1/proxies"), key=lambda p: p["name"])
    if args.json:
        print_json(proxies)
        return
    if args.quiet:
        for p in proxies:
            print(p["name"])
        return
    rows = [
        (
            p["name"],
            p["mode"],
            _where(p),
            p["status"]["state"],
            p["status"]["pid"] or "-",
            p["status"]["restarts"],
            ",".join(p["routes"]) or "-",
        )
        for p in proxies
    ]
    table(["PROXY", "MODE", "LISTEN", "STATE", "PID", "RESTARTS", "ROUTES"], rows)


def run(client: ApiClient, args: argparse.Namespace) -> int:
    if args.verb == "create":
        proxy = client.post("/v1/proxies", proxy_spec(args).to_dict())
        print(f"{proxy['name']} {_where(proxy)}")
    elif args.verb == "ls":
        _ls(client, args)
    elif args.verb == "inspect":
        print_json([client.get(f"/v1/proxies/{n}") for n in args.names])
    elif args.verb == "rm":
        for name in args.names:
            client.delete(f"/v1/proxies/{name}")
            print(name)
    return 0
