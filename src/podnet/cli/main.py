"""``podnet``: the command line, a thin client of the agent's API."""

from __future__ import annotations

import argparse
import json
import sys

from podnet import __version__
from podnet.cli import cni, graph, network, pods, proxies, routes, services, topology
from podnet.cli import proxy as proxy_run
from podnet.cli.connect import connect
from podnet.errors import PodnetError
from podnet.settings import Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podnet",
        description="Container networking and service load balancing for Linux.",
    )
    parser.add_argument("--version", action="version", version=f"podnet {__version__}")
    group = parser.add_argument_group("settings (also PODNET_* environment variables)")
    group.add_argument("--state-dir", help="PODNET_STATE_DIR (default /var/lib/podnet)")
    group.add_argument("--run-dir", help="PODNET_RUN_DIR (default /run/podnet)")
    group.add_argument("--netns-prefix", help="PODNET_NETNS_PREFIX (default podnet-)")
    group.add_argument("--nft-table", help="PODNET_NFT_TABLE (default podnet)")
    group.add_argument("--store", help="PODNET_STORE (default STATE_DIR/state.db)")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("agent", help="run the agent in the foreground")
    network.add_parser(sub)
    pods.add_parsers(sub)
    topology.add_parsers(sub)
    graph.add_parser(sub)
    cni.add_parser(sub)
    services.add_parser(sub)
    routes.add_parser(sub)
    proxy = sub.add_parser("proxy", help="L7 proxies: edge proxies and pod sidecars")
    proxy_verbs = proxy.add_subparsers(dest="verb", required=True)
    proxies.add_commands(proxy_verbs)  # create|ls|inspect|rm
    proxy_run.add_run_parser(proxy_verbs)  # listed here; main() dispatches it before parsing
    schema = sub.add_parser("topology", help="topology file tools")
    schema.add_argument("what", choices=["schema"], help="print the JSON Schema")
    who = sub.add_parser("whoami", help="run the built-in HTTP workload", add_help=False)
    who.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        state_dir=args.state_dir,
        run_dir=args.run_dir,
        netns_prefix=args.netns_prefix,
        nft_table=args.nft_table,
        store=args.store,
    )


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "whoami":
        from podnet.workload.whoami import main as whoami_main

        return whoami_main(args.args)
    if args.cmd == "topology":
        from podnet.topology import schema_text

        print(schema_text())
        return 0
    settings = _settings(args)
    if args.cmd == "cni":
        if args.verb == "conflist":
            print(json.dumps(cni.example_conflist(settings, "podnet", "10.88.0.0/16"), indent=2))
        else:
            print("\n".join(cni.install(settings, args)))
        return 0
    if args.cmd == "agent":
        from podnet.api.daemon import run_agent

        return run_agent(settings)
    client = connect(settings)
    if args.cmd == "network":
        return network.run(client, args)
    if args.cmd == "service":
        return services.run(client, args)
    if args.cmd == "route":
        return routes.run(client, args)
    if args.cmd == "proxy" and args.verb in proxies.VERBS:
        return proxies.run(client, args)
    if args.cmd == "graph":
        return graph.run(client, args)
    if args.cmd in pods.VERBS:
        return pods.run(client, args)
    return topology.run(client, args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``podnet`` command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["whoami"]:  # its options are its own
        from podnet.workload.whoami import main as whoami_main

        return whoami_main(argv[1:])
    if argv[:2] == ["proxy", "run"]:  # a long-running process with options of its own
        from podnet.cli.proxy import main as proxy_main

        return proxy_main(argv[2:])
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except PodnetError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.to_dict()}), file=sys.stderr)
        else:
            print(f"Error: {exc.message}", file=sys.stderr)
            if exc.hint:
                print(f"  hint: {exc.hint}", file=sys.stderr)
        return 1
    except argparse.ArgumentTypeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
