"""The fast lane: a boring request proxied from protocol callbacks, without events or tasks.

The general path (:mod:`~podnet.proxy.server`, :mod:`~podnet.proxy.exchange`)
runs every request through the framing core's events and two coroutines. For
the common case -- a boring request (:func:`~podnet.proxy.fast.parse_simple_request`)
on a plain route (no pinning, sticky cookie or mirror) to an endpoint with a
pooled connection, answered by a boring response -- that is most of the cost.
A :class:`FastExchange` does the same work straight from ``data_received``:
client read -> route, pick, write to a pooled upstream; upstream read -> one
write to the client, the upstream back to the pool, metrics. Neither side's
:class:`~podnet.proxy.http1.Connection` sees the cycle: both stay IDLE.

Everything else is *handed over* to the general path, at whatever point the
fast lane has reached (:meth:`FastExchange.handover`): the client's request
bytes are fed to its Connection (the serve task gets the Request as usual),
and the :class:`Handover` tells the Exchange what was already done -- the
route and pick (the balancer's choice is not made twice), and, when the
request was already written upstream, that connection, whose later bytes are
held (not parsed) until the Exchange has caught its Connection up. Reasons:
no pooled connection or breaker room, a response that is not boring (1xx,
5xx that may be retried, chunked, large, HTTP/1.0, malformed...), the per-try
timeout, an upstream that closes, and anything the client does meanwhile
(more bytes, EOF, reset). So retries, timeouts, errors and every smuggling
defence are the general path's, unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from podnet.proxy.exchange import routing_view
from podnet.proxy.fast import NEED_MORE, SimpleRequest, SimpleResponse, parse_simple_request
from podnet.proxy.fast import parse_simple_response as _parse_response
from podnet.proxy.headers import Headers
from podnet.proxy.routing import Pick, RequestInfo, RouteRuntime
from podnet.proxy.side import Side

if TYPE_CHECKING:
    import asyncio

    from podnet.proxy.server import ClientSide
    from podnet.proxy.upstream import Upstream

__all__ = ["EXACT_BELOW", "FastExchange", "Handover", "simple_info", "try_fast"]

#: Per-try timeouts shorter than this get a timer of their own; longer ones are checked
#: by the engine's sweeper (:meth:`FastExchange.check`), so they may fire up to
#: ``SWEEP_EVERY`` (0.1 s) late -- at most 5 %, and one timer less per request.
EXACT_BELOW: Final = 2.0


class Handover:
    """What a fast exchange did before the general path took over (for ``Exchange``)."""

    __slots__ = ("deadline", "endpoint_started", "info", "pick", "route", "started", "upstream")

    def __init__(
        self,
        *,
        route: RouteRuntime,
        info: RequestInfo,
        pick: Pick,
        started: float,
        upstream: Upstream | None,
        endpoint_started: float,
        deadline: float,
    ) -> None:
        self.route = route
        self.info = info
        self.pick = pick
        self.started = started  # loop time the request arrived
        self.upstream = upstream  # the request was written to it; None: nothing sent
        self.endpoint_started = endpoint_started  # EndpointRuntime.start() of that try
        self.deadline = deadline  # the try's response-head deadline (loop time)


def simple_info(request: SimpleRequest, destination: str) -> RequestInfo:
    """What routing sees of ``request`` (as :func:`~podnet.proxy.exchange.request_info`)."""
    pairs, names = request.fields()
    headers = Headers._trusted(pairs, names)
    return routing_view(request.method, request.host, request.target, headers, destination)


def try_fast(client: ClientSide, data: bytes) -> bool:
    """Take ``data`` (a whole read of an idle client connection) into the fast lane.

    Returns False, having changed nothing, when the general path must parse it.
    """
    engine = client.engine
    router = engine.router
    if router is None or engine.draining:
        return False
    request = parse_simple_request(data, client.conn.limits)
    if request is None:
        return False
    info = None
    route = router.only
    if route is None:
        info = simple_info(request, client.destination)
        route = router.match(info)
    if route is None or not route.plain:
        return False
    pick = route.first_pick()
    if pick is None:
        return False
    FastExchange(client, route, pick, info, request).send()
    return True


class FastExchange:
    """One request in the fast lane (see the module docstring)."""

    __slots__ = (
        "_info",
        "attempts",
        "backend",
        "buf",
        "bytes_out",
        "client",
        "deadline",
        "endpoint",
        "endpoint_started",
        "engine",
        "error",
        "pick",
        "request",
        "route",
        "runtime",
        "started",
        "status",
        "timer",
        "upstream",
    )

    def __init__(
        self,
        client: ClientSide,
        route: RouteRuntime,
        pick: Pick,
        info: RequestInfo | None,
        request: SimpleRequest,
    ) -> None:
        self.client = client
        self.engine = client.engine
        self.runtime = route
        self.pick = pick
        self._info = info
        self.request = request
        # What Engine.finished reads (as of an Exchange).
        self.route = route.spec.name
        self.backend = pick.backend.name
        self.endpoint = pick.endpoint.id
        self.attempts = 1
        self.error = ""  # a fast-lane exchange that fails is handed over, never logged here
        self.status = 0
        self.bytes_out = 0
        self.started = 0.0
        self.deadline = 0.0
        self.endpoint_started = 0.0
        self.upstream: Upstream | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.buf = b""

    @property
    def info(self) -> RequestInfo:
        """What routing sees of the request (made when first needed)."""
        info = self._info
        if info is None:
            info = self._info = simple_info(self.request, self.client.destination)
        return info

    def send(self) -> None:
        client, engine, route, pick = self.client, self.engine, self.runtime, self.pick
        client.busy = True
        client.fast = self
        client.head_started = 0.0
        engine.in_flight += 1
        route.budget.request_started()
        loop = client.loop
        now = client.last_activity = self.started = loop.time()
        timeouts = route.spec.timeouts
        per_try = min(timeouts.request, timeouts.per_try)
        self.deadline = now + per_try
        breaker = pick.backend.breaker
        if not breaker.try_acquire("requests"):
            self.handover()
            return
        upstream = engine.pools.get(pick.endpoint.id)
        if upstream is None:
            breaker.release("requests")
            self.handover()
            return
        self.upstream = upstream
        upstream.fast = self
        self.endpoint_started = pick.endpoint.start()
        upstream.write(self.request.forwarded(client.ip))
        if per_try < EXACT_BELOW:
            self.timer = loop.call_at(self.deadline, self.expire)

    # -- upstream callbacks -----------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        result = _parse_response(buf, self.client.conn.limits)
        if result is None:
            self.buf = buf
            self.handover()
        elif result == NEED_MORE:
            self.buf = buf
        else:
            assert isinstance(result, SimpleResponse)
            self.complete(result, buf)

    def expire(self) -> None:
        self.timer = None
        self.handover()

    def check(self, now: float) -> None:
        """The sweeper's look (timeouts of EXACT_BELOW or more): hand over once due."""
        if now >= self.deadline and self.upstream is not None:
            self.handover()

    # -- endings ------------------------------------------------------------------

    def complete(self, response: SimpleResponse, buf: bytes) -> None:
        client, engine, pick = self.client, self.engine, self.pick
        upstream = self.upstream
        assert upstream is not None
        if self.timer is not None:
            self.timer.cancel()
        client.fast = None
        upstream.fast = None
        endpoint = pick.endpoint
        pick.backend.breaker.release("requests")
        endpoint.finish(self.endpoint_started, "ok")
        engine.after_finish(pick)
        engine.pools.put(endpoint.id, upstream)
        draining = engine.draining
        client.write(response.client_bytes(buf, draining))
        self.status = response.status
        self.bytes_out = response.size - response.body_start
        engine.in_flight -= 1
        engine.fast_lane += 1
        client.busy = False
        engine.finished(self)
        if draining:
            client.finish()

    def handover(self) -> None:
        """Give the exchange, as far as it got, to the general path (see the module docstring)."""
        client, engine = self.client, self.engine
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        client.fast = None
        upstream = self.upstream
        if upstream is not None:
            upstream.fast = None
            upstream.hold(self.buf)
        engine.in_flight -= 1
        task = client.task
        if task is None or task.done():  # nobody left to take it: cannot happen, but be safe
            self.abandon()
            return
        client.handover = Handover(
            route=self.runtime,
            info=self.info,
            pick=self.pick,
            started=self.started,
            upstream=upstream,
            endpoint_started=self.endpoint_started,
            deadline=self.deadline,
        )
        Side.data_received(client, self.request.raw)  # the serve task gets the Request

    def abandon(self) -> None:
        client, upstream = self.client, self.upstream
        client.busy = False
        if upstream is not None:
            upstream.abort()
            self.pick.backend.breaker.release("requests")
            self.pick.endpoint.finish(self.endpoint_started, "error")
        client.abort()
