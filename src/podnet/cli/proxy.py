"""``podnet proxy run``: run an L7 proxy worker (or N of them) in the foreground.

Self-contained: :func:`add_run_parser` adds the ``run`` verb to a ``proxy``
subcommand parser, :func:`main` runs it from its own argument list (``podnet
proxy run ...`` is dispatched here before the main parser sees it, and
``python -m podnet.cli.proxy`` is what the worker supervisor starts).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from podnet.errors import InvalidInput, PodnetError
from podnet.settings import Settings

__all__ = ["add_run_parser", "main"]


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--name", required=True, help="proxy name (snapshots are per proxy)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--snapshot", type=Path, help="Snapshot JSON file (reloaded on change)")
    source.add_argument("--agent", action="store_true", help="long-poll the agent for snapshots")
    source.add_argument("--agent-socket", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--listen", required=True, help="HOST:PORT to serve HTTP on")
    parser.add_argument(
        "--also-listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="another address to serve, if it can be bound (repeatable)",
    )
    parser.add_argument("--admin", help="HOST:PORT for /metrics and /healthz")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    parser.add_argument("--access-log", help="PATH, or - for standard output (default: none)")
    parser.add_argument("--sidecar", action="store_true", help="route by SO_ORIGINAL_DST")
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    return parser


def add_run_parser(proxy_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``run`` to the ``podnet proxy`` subcommands."""
    parser: argparse.ArgumentParser = proxy_subparsers.add_parser(
        "run", help="run an L7 proxy in the foreground"
    )
    return _configure(parser)


def _options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from podnet.proxy.workers import ProxyOptions, parse_address

    agent_socket = args.agent_socket
    if args.agent:
        agent_socket = Settings.from_env().socket_path
    if not 1 <= args.workers <= 64:
        raise InvalidInput(f"workers {args.workers} is out of range", hint="1-64")
    return ProxyOptions(
        name=args.name,
        listen=parse_address(args.listen),
        also_listen=tuple(parse_address(a) for a in args.also_listen),
        snapshot=args.snapshot,
        agent_socket=agent_socket,
        admin=parse_address(args.admin) if args.admin else None,
        workers=args.workers,
        access_log=args.access_log,
        sidecar=args.sidecar,
        reuse_port=args.reuse_port,
        ready_fd=args.ready_fd,
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``podnet proxy run`` with ``argv`` (the arguments after ``run``).

    Returns:
        0 after a graceful stop, 1 when the proxy cannot start, 2 on bad arguments.
    """
    parser = _configure(argparse.ArgumentParser(prog="podnet proxy run"))
    args = parser.parse_args(argv)
    try:
        options = _options(args)
        if options.workers > 1:
            from podnet.proxy.workers import supervise

            return supervise(options)
        from podnet.proxy.workers import run_worker
        from podnet.workload.whoami import new_event_loop

        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(run_worker(options))
    except InvalidInput as exc:
        print(f"podnet proxy: {exc}", file=sys.stderr)
        return 2
    except (PodnetError, OSError) as exc:
        print(f"podnet proxy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
