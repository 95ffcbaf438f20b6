"""The proxy engine of one worker process: listeners, routing table, pools, sweeper.

:class:`Engine` owns what every connection shares: the current
:class:`~podnet.proxy.routing.Router` (swapped atomically by :meth:`Engine.swap`;
a request keeps the ``RouteRuntime`` it matched, and the new router carries
runtime state over from the old one), the upstream pools, the metrics, the
access log and the set of client connections.

One sweeper task, every :data:`SWEEP_EVERY` seconds, enforces the
connection-level timeouts (header read, keep-alive idle, pooled upstream
idle) and flushes the access log, so the per-request path has no timers
beyond the response-head timeout. The connection-level timeouts are the
strictest of the snapshot's routes (a request is not routed before its head
is read); the defaults of :class:`~podnet.model.route.Timeouts` without routes.

Draining (:meth:`Engine.drain`): stop accepting, close idle connections,
answer in-flight requests with ``Connection: close``, wait up to the grace
period, then abort what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from podnet.model.route import Snapshot, Timeouts
from podnet.proxy.accesslog import AccessLog
from podnet.proxy.http1 import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Limits,
    Request,
    Response,
    forward_request,
)
from podnet.proxy.metrics import Metrics
from podnet.proxy.routing import Pick, RequestInfo, Router, RouteRuntime
from podnet.proxy.server import ClientSide
from podnet.proxy.side import PAUSE_CORE, SideClosed
from podnet.proxy.upstream import ConnectFailed, Overflow, Pools, Upstream, connect

if TYPE_CHECKING:
    from podnet.proxy.exchange import Exchange
    from podnet.proxy.fastlane import FastExchange

__all__ = ["DRAIN_GRACE", "SWEEP_EVERY", "Engine"]

SWEEP_EVERY: Final = 0.1
DRAIN_GRACE: Final = 10.0
_MAX_MIRRORS: Final = 256


class Engine:
    """Everything one worker's connections share.

    Args:
        metrics: where request metrics go.
        access_log: the access log, or None for none.
        sidecar: read each connection's original destination (SO_ORIGINAL_DST).
        rng: randomness for balancing and backoff (tests pass a seeded one).
    """

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        access_log: AccessLog | None = None,
        sidecar: bool = False,
        limits: Limits | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.access_log = access_log
        self.sidecar = sidecar
        self.limits = limits
        self.rng = rng or random.Random()
        self.router: Router | None = None
        self.version = -1
        self.header_read = Timeouts().header_read
        self.idle = Timeouts().idle
        self.pools = Pools()
        self.clients: set[ClientSide] = set()
        self.in_flight = 0
        self.fast_lane = 0  # requests the fast lane answered itself (see fastlane)
        self.draining = False
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._mirrors: set[asyncio.Task[None]] = set()
        self._ejections: dict[str, int] = {}
        self._idle_clients = asyncio.Event()

    # -- configuration -------------------------------------------------------------

    def swap(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` from now on; in-flight requests finish on their old route."""
        self.router = Router(snapshot, previous=self.router, rng=self.rng)
        self.version = snapshot.version
        timeouts = [route.spec.timeouts for route in snapshot.routes]
        default = Timeouts()
        self.header_read = min((t.header_read for t in timeouts), default=default.header_read)
        self.idle = min((t.idle for t in timeouts), default=default.idle)

    # -- listening -----------------------------------------------------------------

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> list[str]:
        """Accept client connections on ``host:port``; return the bound ``ip:port`` list."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: ClientSide(self), host, port, reuse_port=reuse_port or None, backlog=1024
        )
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        return [_format(sock) for sock in server.sockets]

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            now = loop.time()
            header_read, idle = self.header_read, self.idle
            for client in list(self.clients):
                client.check(now, header_read, idle)
            self.pools.sweep(now, idle)
            if self.access_log is not None:
                self.access_log.flush()

    async def drain(self, grace: float = DRAIN_GRACE) -> None:
        """Stop accepting, finish in-flight requests (at most ``grace`` s), close everything."""
        self.draining = True
        for server in self._servers:
            server.close()
        for client in list(self.clients):
            client.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self.clients:
                    self._idle_clients.clear()
                    await self._idle_clients.wait()
        for client in list(self.clients):
            client.abort()
        await self.close()

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._mirrors):
            task.cancel()
        self.pools.close_all()
        if self.access_log is not None:
            self.access_log.flush()

    def client_gone(self) -> None:
        if not self.clients:
            self._idle_clients.set()

    # -- bookkeeping called by exchanges ------------------------------------------------

    def finished(self, exchange: Exchange | FastExchange) -> None:
        seconds = exchange.client.loop.time() - exchange.started
        if exchange.route:
            self.metrics.request(
                route=exchange.route,
                backend=exchange.backend,
                status=exchange.status,
                seconds=seconds,
            )
        log = self.access_log
        if log is not None:
            request = exchange.request
            info = exchange.info
            log.record(
                client=exchange.client.client,
                method=request.method.decode("ascii"),
                path=info.path if info is not None else "",
                host=info.host if info is not None else "",
                status=exchange.status,
                bytes=exchange.bytes_out,
                duration=round(seconds, 6),
                route=exchange.route,
                backend=exchange.backend,
                endpoint=exchange.endpoint,
                attempts=exchange.attempts,
                error=exchange.error,
            )

    def after_finish(self, pick: Pick) -> None:
        """Count an ejection the outlier detector just made."""
        backend = pick.backend
        total = backend.outlier.ejections_total()
        seen = self._ejections.get(backend.name, 0)
        if total > seen:
            self._ejections[backend.name] = total
            if backend.outlier.ejected(pick.endpoint.id):
                self.metrics.ejection(backend=backend.name, endpoint=pick.endpoint.id)

    def upstream_error(self, pick: Pick, kind: str) -> None:
        self.metrics.upstream_error(backend=pick.backend.name, endpoint=pick.endpoint.id, kind=kind)
        self.after_finish(pick)

    def log_error(self, message: str) -> None:
        import traceback

        print(f"podnet proxy: {message}", file=sys.stderr)
        traceback.print_exc()

    def gauges(self) -> dict[str, float]:
        return {
            "podnet_proxy_active_connections": float(len(self.clients)),
            "podnet_proxy_in_flight_requests": float(self.in_flight),
            "podnet_proxy_idle_upstream_connections": float(self.pools.idle_count()),
            "podnet_proxy_snapshot_version": float(self.version),
        }

    # -- mirroring -------------------------------------------------------------------

    def mirror(
        self,
        route: RouteRuntime,
        info: RequestInfo,
        request: Request,
        body: Sequence[Event],
        body_sent: bool,
    ) -> None:
        """Send a copy of ``request`` to the route's mirror, if it picks one; never wait."""
        if body_sent or len(self._mirrors) >= _MAX_MIRRORS:
            return  # the body was not kept (too large), or too many copies in flight
        pick = route.mirror(info)
        if pick is None:
            return
        outgoing = forward_request(request, client=b"127.0.0.1")
        timeout = route.spec.timeouts.per_try
        task = asyncio.get_running_loop().create_task(
            self._mirror(pick, outgoing, list(body), timeout)
        )
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _mirror(
        self, pick: Pick, request: Request, body: list[Event], timeout: float
    ) -> None:
        endpoint = pick.endpoint
        upstream: Upstream | None = None
        started = endpoint.start()
        outcome: str = "error"
        try:
            async with asyncio.timeout(timeout):
                upstream = self.pools.get(endpoint.id)
                if upstream is None:
                    upstream = await connect(
                        endpoint.address, endpoint.port, pick.backend.breaker, timeout
                    )
                upstream.write(upstream.conn.send(request))
                for event in body:
                    upstream.write(upstream.conn.send(event))
                status = 0
                while True:
                    event = await upstream.next_event()
                    if isinstance(event, Response) and event.status >= 200:
                        status = event.status
                    if isinstance(event, EndOfMessage):
                        break
                    if isinstance(event, ConnectionClosed):
                        raise SideClosed("mirror closed")
                    assert isinstance(event, Response | Data)
                outcome = "5xx" if status >= 500 else "ok"
            conn = upstream.conn
            if conn.keep_alive and conn.our_state is conn.their_state:
                conn.start_next_cycle()
                upstream.resume(PAUSE_CORE)
                self.pools.put(endpoint.id, upstream)
                upstream = None
        except (OSError, TimeoutError, Overflow, ConnectFailed, Exception):
            pass  # a mirror's failures are invisible
        finally:
            endpoint.finish(started, outcome)  # type: ignore[arg-type]
            if upstream is not None:
                upstream.close()


def _format(sock: socket.socket) -> str:
    name = sock.getsockname()
    return f"[{name[0]}]:{name[1]}" if sock.family == socket.AF_INET6 else f"{name[0]}:{name[1]}"
