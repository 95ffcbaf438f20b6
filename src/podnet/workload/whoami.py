"""``podnet whoami``: the HTTP workload of podnet's demo, tests and benchmarks.

On any path it answers, as text, who answered (``Hostname``, one ``IP`` line
per interface address) and what it received (``RemoteAddr``, the request line
and header lines). ``/api`` answers the same as JSON; ``/health`` answers
``ok``. For tests: ``/status/NNN`` answers NNN, ``/delay/S`` waits S seconds,
``/bytes/N`` streams N bytes, ``/upload`` answers the request body's length,
``/count`` the number of requests answered so far, ``/ws`` is a WebSocket echo
(see :mod:`podnet.workload.special`). Like traefik/whoami, so that a load
balancer's choices are visible.

From code::

    async with WhoamiServer(WhoamiOptions(host="127.0.0.1", port=0)) as server:
        print(server.port)

From a shell: ``python -m podnet.workload.whoami --port 8080 --name web-1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from podnet.errors import InvalidInput, PodnetError
from podnet.workload.addresses import format_peer, host_addresses
from podnet.workload.answers import Responder
from podnet.workload.connection import ConnectionSettings, ConnectionTracker, WhoamiProtocol
from podnet.workload.http1 import DEFAULT_MAX_BODY, DEFAULT_MAX_HEAD
from podnet.workload.listen import listen

__all__ = [
    "WhoamiOptions",
    "WhoamiServer",
    "main",
    "new_event_loop",
    "resolve_name",
    "serve",
]


@dataclass(frozen=True, slots=True)
class WhoamiOptions:
    """How a whoami server listens and answers.

    ``host`` None listens on every address, IPv4 and IPv6 on one socket.
    ``status`` is the status of every answer but ``/health``; ``delay`` (seconds)
    holds back each such answer. ``idle_timeout`` bounds both an idle keep-alive
    connection and the time to receive a request's head.
    """

    port: int = 80
    host: str | None = None
    name: str | None = None
    status: int = 200
    delay: float = 0.0
    quiet: bool = False
    idle_timeout: float = 60.0
    max_head: int = DEFAULT_MAX_HEAD
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"port {self.port} is out of range 0-65535")
        if not 200 <= self.status <= 599:
            raise InvalidInput(f"status {self.status} is not a final status (200-599)")
        if not 0 <= self.delay <= 3600:
            raise InvalidInput(f"delay {self.delay} is not between 0 and 3600 seconds")
        if not self.idle_timeout > 0:
            raise InvalidInput(f"idle timeout {self.idle_timeout} is not positive")


def resolve_name(name: str | None) -> str:
    """The name to report: ``name``, else ``$PODNET_POD``, else the hostname."""
    return name or os.environ.get("PODNET_POD") or socket.gethostname()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop when uvloop is importable, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class WhoamiServer:
    """A whoami HTTP server in the running event loop.

    Args:
        options: where to listen and how to answer.
        addresses: the ``IP`` lines to report; default: the host's addresses,
            read once at construction.
    """

    def __init__(
        self, options: WhoamiOptions | None = None, *, addresses: Sequence[str] | None = None
    ) -> None:
        self.options = options or WhoamiOptions()
        self.name = resolve_name(self.options.name)
        self.addresses = list(host_addresses() if addresses is None else addresses)
        responder = Responder(self.name, self.addresses, status=self.options.status)
        self._settings = ConnectionSettings(
            responder,
            self.options.delay,
            self.options.idle_timeout,
            self.options.max_head,
            self.options.max_body,
        )
        self._tracker: ConnectionTracker | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen and start answering.

        Raises:
            PodnetError: the address is in use, not allowed, or not on this host.
        """
        if self._server is not None:
            return
        tracker = ConnectionTracker()
        settings = self._settings
        self._server = await listen(
            lambda: WhoamiProtocol(settings, tracker), self.options.host, self.options.port
        )
        self._tracker = tracker

    @property
    def endpoints(self) -> list[str]:
        """The bound addresses as ``ip:port`` (``[ip]:port`` for IPv6)."""
        if self._server is None:
            return []
        return [format_peer(sock.getsockname()) for sock in self._server.sockets]

    @property
    def port(self) -> int:
        """The bound port (useful after asking for port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("whoami server is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return len(self._tracker) if self._tracker is not None else 0

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening, let queued answers go out for up to ``grace`` seconds,
        then close every connection."""
        server, tracker = self._server, self._tracker
        self._server = self._tracker = None
        if server is None or tracker is None:
            return
        server.close()
        tracker.shutdown_all()
        if not await tracker.wait_empty(grace):
            tracker.abort_all()
            await tracker.wait_empty(1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1.0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    options: WhoamiOptions,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[WhoamiServer], object] | None = None,
) -> None:
    """Run a whoami server until ``stop`` is set (or the task is cancelled).

    Prints ``whoami listening on ...`` once listening, unless ``options.quiet``,
    then calls ``ready`` with the server.

    Raises:
        PodnetError: the server could not listen.
    """
    server = WhoamiServer(options)
    await server.start()
    try:
        if not options.quiet:
            where = ", ".join(server.endpoints)
            print(f"whoami listening on {where} as {server.name}", flush=True)
        if ready is not None:
            ready(server)
        await (stop.wait() if stop is not None else asyncio.get_running_loop().create_future())
    finally:
        await server.stop()


async def _serve_until_signal(options: WhoamiOptions) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(options, stop=stop)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podnet whoami", description="Answer HTTP requests with who answered and what came."
    )
    parser.add_argument("--port", type=int, default=80, help="TCP port (default 80)")
    parser.add_argument("--host", help="address to listen on (default: all, IPv4 and IPv6)")
    parser.add_argument("--name", help="name to report (default: $PODNET_POD, else hostname)")
    parser.add_argument("--status", type=int, default=200, help="status of every answer")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to hold each answer")
    parser.add_argument("--idle-timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--quiet", action="store_true", help="print nothing at start")
    parser.add_argument(
        "--max-body", type=int, default=DEFAULT_MAX_BODY, help="largest request body (bytes)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``podnet whoami`` until SIGTERM or SIGINT.

    Returns:
        0 after a signal, 1 when the server cannot start, 2 on bad arguments.
    """
    args = _arguments().parse_args(argv)
    try:
        options = WhoamiOptions(
            port=args.port,
            host=args.host,
            name=args.name,
            status=args.status,
            delay=args.delay,
            quiet=args.quiet,
            idle_timeout=args.idle_timeout,
            max_body=args.max_body,
        )
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(_serve_until_signal(options))
    except InvalidInput as exc:
        print(f"podnet whoami: {exc}", file=sys.stderr)
        return 2
    except PodnetError as exc:
        print(f"podnet whoami: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
