"""One proxied request: route, pick, try (and retry), relay the answer.

An :class:`Exchange` runs in the client connection's task. Its steps:

1. ``Router.match`` (404 without a route), then per try ``RouteRuntime.pick``
   with the endpoints tried so far (503 when nothing is usable);
2. the backend's circuit breaker (``requests``; ``pending``/``connections``
   when a new connection is needed) -- overflow is a 503 at once;
3. a pooled connection or a new one (connect timeout), the request head, and
   the body: replayed when it was kept, else streamed by a pump task that
   keeps the first 64 KiB so that a short body can be sent again;
4. the response head within the per-try timeout and the request deadline
   (``Timeouts.request`` covers every try and backoff); ``100 Continue`` is
   relayed to a client waiting for it, other 1xx are dropped;
5. a retry when :func:`may_retry` allows it, the route's budget has room, and
   after :func:`backoff` -- on another endpoint (``tried``);
6. the answer streamed to the client with back-pressure, the connection
   back to the pool when both messages allow it, a 101 turned into a splice.

An exchange the fast lane began (:mod:`~podnet.proxy.fastlane`) comes with a
``Handover``: its route and first pick are reused, and when the request is
upstream already the first try resumes at step 4 (:meth:`Exchange.resume`).

What the client sees when every try failed: 503 (no connection / overflow),
504 (timeout), 502 (reset or a bad upstream response). ``EndpointRuntime.finish``
gets ``ok``/``5xx``/``error`` for each try, which feeds outlier detection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Final

from podnet.model.route import RetryPolicy
from podnet.proxy.errors import ProtocolError, RemoteProtocolError
from podnet.proxy.http1 import (
    Body,
    Connection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Headers,
    Request,
    Response,
    State,
    forward_request,
    forward_response,
    forward_trailers,
)
from podnet.proxy.resilience import backoff, may_retry
from podnet.proxy.routing import Outcome, Pick, RequestInfo, RouteRuntime
from podnet.proxy.side import PAUSE_CORE, PAUSE_PEER, SideClosed
from podnet.proxy.upstream import ConnectFailed, Overflow, Upstream, connect

if TYPE_CHECKING:
    from podnet.proxy.engine import Engine
    from podnet.proxy.fastlane import Handover
    from podnet.proxy.server import ClientSide

__all__ = ["REPLAY_LIMIT", "Exchange", "HeaderView", "request_info"]

#: Request bodies up to this size are kept for a retry or the mirror.
REPLAY_LIMIT: Final = 64 * 1024
_END = EndOfMessage()
_NO_COOKIES: Mapping[str, str] = {}
_TEXT = (b"Content-Type", b"text/plain; charset=utf-8")


class HeaderView(Mapping[str, str]):
    """``RequestInfo.headers`` without decoding every field: lookups decode on demand."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def __getitem__(self, name: str) -> str:
        value = self._headers.get(name.encode("latin-1").lower())
        if value is None:
            raise KeyError(name)
        return value.decode("latin-1")

    def __iter__(self) -> Iterator[str]:
        seen = dict.fromkeys(self._headers.names())
        return (name.decode("latin-1") for name in seen)

    def __len__(self) -> int:
        return len(set(self._headers.names()))


def _host(authority: bytes | None) -> str:
    if not authority:
        return ""
    host = authority.decode("latin-1").lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.partition(":")[0]


def _path(target: bytes) -> str:
    if not target.startswith(b"/"):
        scheme = target.find(b"://")
        if scheme < 0:
            return target.decode("latin-1")  # "*" or an authority (CONNECT)
        slash = target.find(b"/", scheme + 3)
        target = target[slash:] if slash >= 0 else b"/"
    query = target.find(b"?")
    return (target[:query] if query >= 0 else target).decode("latin-1")


def _origin_form(target: bytes) -> bytes:
    """``/path?query`` of an absolute-form target (RFC 9112 §3.2.1: what a server gets)."""
    rest = target.partition(b"://")[2]
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    path = rest[cut:]
    return path if path.startswith(b"/") else b"/" + path


def request_info(request: Request, destination: str = "") -> RequestInfo:
    """What routing sees of ``request``."""
    return routing_view(
        request.method, request.authority, request.target, request.headers, destination
    )


def routing_view(
    method: bytes, authority: bytes | None, target: bytes, headers: Headers, destination: str
) -> RequestInfo:
    """What routing sees of a request head (the general path's and the fast lane's)."""
    cookies = _NO_COOKIES
    if b"cookie" in headers:
        values = [v.decode("latin-1") for v in headers.get_all(b"cookie")]
        cookies = RequestInfo.parse_cookies(values)
    return RequestInfo(
        method=method.decode("ascii"),
        host=_host(authority),
        path=_path(target),
        headers=HeaderView(headers),
        cookies=cookies,
        destination=destination,
    )


def _cycle_done(conn: Connection) -> bool:
    """Both messages are complete and the connection may carry another request."""
    return conn.our_state is State.DONE and conn.their_state is State.DONE and conn.keep_alive


class _Failed(Exception):
    """A try failed. ``condition`` is a RETRY_CONDITIONS name (None: never retried)."""

    def __init__(self, status: int, condition: str | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.condition = condition


class Exchange:
    """Proxy one request of ``client``; :meth:`run` says whether the connection may persist."""

    __slots__ = (
        "attempts",
        "backend",
        "body_sent",
        "bytes_out",
        "client",
        "endpoint",
        "engine",
        "error",
        "handover",
        "has_body",
        "info",
        "kept",
        "pump",
        "pump_error",
        "replay",
        "request",
        "route",
        "started",
        "status",
    )

    def __init__(
        self,
        engine: Engine,
        client: ClientSide,
        request: Request,
        handover: Handover | None = None,
    ) -> None:
        self.engine = engine
        self.client = client
        self.request = request
        self.handover = handover  # what the fast lane did already (see fastlane)
        self.started = client.loop.time() if handover is None else handover.started
        self.status = 0
        self.bytes_out = 0
        self.route = ""
        self.backend = ""
        self.endpoint = ""
        self.attempts = 0
        framing = request.framing
        self.has_body = not (framing.body is Body.LENGTH and framing.length == 0)
        # Body events forwarded so far, kept while they fit REPLAY_LIMIT.
        self.replay: list[Event] = []
        self.kept = 0
        self.body_sent = False  # body bytes went out that cannot be sent again
        self.error = ""  # why the last failed try failed, for the access log
        self.pump: asyncio.Task[None] | None = None
        self.pump_error: BaseException | None = None
        self.info: RequestInfo | None = None

    @property
    def body_complete(self) -> bool:
        """The whole request body (if any) was read from the client."""
        return self.client.conn.their_state is not State.SEND_BODY

    async def run(self) -> bool:
        engine = self.engine
        handover = self.handover
        if handover is not None:
            info = self.info = handover.info
            route: RouteRuntime | None = handover.route
        else:
            router = engine.router
            info = self.info = request_info(self.request, self.client.destination)
            route = router.match(info) if router is not None else None
        try:
            if route is None:
                return self.local(404, b"no route for this request\n")
            self.route = route.spec.name
            return await self.forward(route, info)
        finally:
            engine.finished(self)

    # -- tries -----------------------------------------------------------------

    async def forward(self, route: RouteRuntime, info: RequestInfo) -> bool:
        policy = route.spec.retries
        deadline = self.started + route.spec.timeouts.request
        outgoing = forward_request(self.request, client=self.client.ip)
        if outgoing.target[:1] != b"/" and b"://" in outgoing.target:
            outgoing.target = _origin_form(outgoing.target)  # origin servers expect a path
        budget, loop = route.budget, self.client.loop
        if self.handover is None:  # the fast lane counted the requests it hands over
            budget.request_started()
        tried: set[str] = set()
        try:
            for attempt in range(1, policy.attempts + 1):
                handover, self.handover = self.handover, None
                pick = route.pick(info, frozenset(tried)) if handover is None else handover.pick
                if pick is None:
                    return self.no_endpoint()
                self.attempts = attempt
                self.backend, self.endpoint = pick.backend.name, pick.endpoint.id
                tried.add(pick.endpoint.id)
                try:
                    if handover is not None and handover.upstream is not None:
                        upstream, head, started = await self.resume(pick, outgoing, handover)
                    else:
                        upstream, head, started = await self.attempt(
                            route, pick, outgoing, deadline
                        )
                except _Failed as failed:
                    self.stop_pump()
                    if self.pump_error is not None:
                        return self.client_failed(self.pump_error)
                    status, condition, retry_status = failed.status, failed.condition, None
                    detail = str(failed)
                else:
                    final = attempt == policy.attempts or head.status < 500
                    if final or not self.may_retry(policy, info.method, None, head.status):
                        return await self.relay(route, pick, upstream, head, started)
                    self.drop_answer(pick, upstream, started)
                    status, condition, retry_status = head.status, None, head.status
                    detail = f"status {head.status}"
                self.error = f"try {attempt} to {pick.endpoint.id}: {detail}"
                last = attempt == policy.attempts or loop.time() >= deadline
                if last or not self.may_retry(policy, info.method, condition, retry_status):
                    return self.local(status, b"upstream failed\n")
                # A connect failure sent nothing to anyone: retrying it elsewhere
                # cannot add load to a struggling backend, so it costs no budget.
                free = condition == "connect-failure"
                if not free and not budget.try_start_retry():
                    return self.local(status, b"upstream failed (retry budget exhausted)\n")
                self.engine.metrics.retry(route=self.route, backend=self.backend)
                delay = backoff(policy, attempt, self.engine.rng)
                if loop.time() + delay >= deadline:
                    return self.local(504, b"upstream timed out\n")
                await asyncio.sleep(delay)
            return self.local(502, b"upstream failed\n")  # not reached: the last try returns
        finally:
            self.stop_pump()

    def drop_answer(self, pick: Pick, upstream: Upstream, started: float) -> None:
        """A 5xx head that will be retried: close that connection, count the failure."""
        upstream.abort()
        self.stop_pump()
        pick.endpoint.finish(started, "5xx")
        self.engine.after_finish(pick)

    def no_endpoint(self) -> bool:
        self.error += "; " * bool(self.error) + "no usable endpoint left"
        return self.local(503, b"no healthy endpoint\n")

    def may_retry(
        self, policy: RetryPolicy, method: str, condition: str | None, status: int | None
    ) -> bool:
        return may_retry(
            policy, method, condition=condition, status=status, request_body_sent=self.body_sent
        )

    async def attempt(
        self, route: RouteRuntime, pick: Pick, outgoing: Request, deadline: float
    ) -> tuple[Upstream, Response, float]:
        """One try, up to the response head. Raises _Failed."""
        engine, endpoint, backend = self.engine, pick.endpoint, pick.backend
        loop, timeouts = self.client.loop, route.spec.timeouts
        per_try = min(deadline, loop.time() + timeouts.per_try)
        breaker = backend.breaker
        if not breaker.try_acquire("requests"):
            engine.metrics.overflow(route=self.route, backend=backend.name)
            raise _Failed(503, None, "circuit breaker: too many requests")
        try:
            upstream = engine.pools.get(endpoint.id)
            if upstream is None:
                try:
                    wait = max(0.0, min(timeouts.connect, per_try - loop.time()))
                    upstream = await connect(endpoint.address, endpoint.port, breaker, wait)
                except Overflow as error:
                    engine.metrics.overflow(route=self.route, backend=backend.name)
                    raise _Failed(503, None, str(error)) from None
                except ConnectFailed as error:
                    endpoint.finish(endpoint.start(), "error")
                    engine.upstream_error(pick, "connect")
                    raise _Failed(503, "connect-failure", str(error)) from None
            if b"host" not in outgoing.headers:  # HTTP/1.0 without Host: name the endpoint
                headers = outgoing.headers.with_field(b"Host", endpoint.id)
                outgoing = Request(outgoing.method, outgoing.target, b"1.1", headers)
            started = endpoint.start()
            try:
                head = await self.send_and_wait(upstream, outgoing, per_try)
            except _Failed as failed:
                upstream.abort()
                endpoint.finish(started, "error")
                engine.upstream_error(pick, failed.condition or "protocol")
                raise
            return upstream, head, started
        finally:
            breaker.release("requests")

    async def resume(
        self, pick: Pick, outgoing: Request, handover: Handover
    ) -> tuple[Upstream, Response, float]:
        """The try the fast lane began: its request is upstream already. Raises _Failed."""
        upstream, started = handover.upstream, handover.endpoint_started
        assert upstream is not None
        try:
            conn = upstream.conn
            try:  # what the fast lane wrote: bring the state machine along
                conn.send(outgoing)
                if self.has_body:
                    self.take_body(conn)
                else:
                    conn.send(_END)
            except ProtocolError as error:  # not IDLE after all: treat as a lost connection
                raise _Failed(502, "reset", f"upstream connection unusable: {error}") from None
            upstream.release_held()
            head = await self.send_and_wait(upstream, None, handover.deadline)
        except _Failed as failed:
            upstream.abort()
            pick.endpoint.finish(started, "error")
            self.engine.upstream_error(pick, failed.condition or "protocol")
            raise
        finally:
            pick.backend.breaker.release("requests")
        return upstream, head, started

    def take_body(self, conn: Connection) -> None:
        """The fast lane sent the whole body: take its events from the client's queue
        (kept for a retry, like the pump would) and pass them through ``conn``."""
        events = self.client.events
        while events:
            event = events.popleft()
            self.keep(event)
            conn.send(event)
            if event.__class__ is EndOfMessage:
                return
        raise _Failed(502, None, "the request body the fast lane sent is not at hand")

    async def send_and_wait(
        self, upstream: Upstream, outgoing: Request | None, until: float
    ) -> Response:
        """Send ``outgoing`` (None: it was sent) and wait for the response head until ``until``."""
        try:
            async with asyncio.timeout_at(until):
                conn = upstream.conn
                if outgoing is None:
                    pass
                elif self.has_body:
                    upstream.write(conn.send(outgoing))
                    self.send_body(upstream)
                else:
                    upstream.write(conn.send(outgoing) + conn.send(_END))
                return await self.response_head(upstream)
        except TimeoutError:
            raise _Failed(504, "timeout", "upstream timed out") from None
        except RemoteProtocolError as error:
            if self.pump_error is not None:
                raise _Failed(error.status, None, str(error)) from None
            raise _Failed(502, None, f"bad upstream response: {error}") from None
        except (SideClosed, ConnectionError) as error:
            raise _Failed(502, "reset", f"upstream closed: {error}") from None

    def send_body(self, upstream: Upstream) -> None:
        """Replay the kept body, then start the pump that streams the rest."""
        write, conn = upstream.write, upstream.conn
        for event in self.replay:
            write(conn.send(event))
        if not self.replay or self.replay[-1].__class__ is not EndOfMessage:
            self.pump = asyncio.create_task(self.pump_body(upstream))

    async def pump_body(self, upstream: Upstream) -> None:
        client, conn = self.client, upstream.conn
        try:
            while True:
                event = await client.next_event()
                if isinstance(event, ConnectionClosed):
                    raise SideClosed("client closed before the end of its request body")
                if isinstance(event, EndOfMessage):
                    event = EndOfMessage(forward_trailers(event.trailers))
                self.keep(event)
                upstream.write(conn.send(event))
                if isinstance(event, EndOfMessage):
                    return
                if upstream.write_paused:
                    client.pause(PAUSE_PEER)
                    try:
                        await upstream.drain()
                    finally:
                        client.resume(PAUSE_PEER)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # the client failed (framing, reset): stop this try
            self.pump_error = error
            upstream.abort()

    def keep(self, event: Event) -> None:
        """Keep a forwarded body event for a retry while the body fits REPLAY_LIMIT."""
        if self.body_sent:
            return
        self.replay.append(event)
        if event.__class__ is Data:
            self.kept += len(event.data)
            if self.kept > REPLAY_LIMIT:
                self.replay = []
                self.body_sent = True

    def stop_pump(self) -> None:
        """Stop streaming the body to a failed try; what it consumed cannot be replayed."""
        if self.pump is not None:
            if not self.pump.done():
                self.pump.cancel()
            if not self.replay or self.replay[-1].__class__ is not EndOfMessage:
                self.body_sent = True
            self.pump = None

    async def response_head(self, upstream: Upstream) -> Response:
        client = self.client
        while True:
            event = await upstream.next_event()
            if not isinstance(event, Response):
                raise SideClosed("upstream sent no response")
            if event.status >= 200 or event.status == 101:
                return event
            if event.status == 100 and client.conn.client_is_waiting_for_100_continue:
                client.write(client.conn.send(Response(100, b"", Headers())))

    # -- the answer ---------------------------------------------------------------

    async def relay(
        self, route: RouteRuntime, pick: Pick, upstream: Upstream, head: Response, started: float
    ) -> bool:
        info = self.info
        assert info is not None
        client, engine = self.client, self.engine
        response = forward_response(head)
        if pick.set_cookie is not None:
            response.headers = response.headers.with_field(b"Set-Cookie", pick.set_cookie)
        if engine.draining:
            response.headers = response.headers.with_field(b"Connection", b"close")
        self.status = head.status
        outcome: Outcome = "5xx" if head.status >= 500 else "ok"
        try:
            out = client.conn.send(response)
            if head.status == 101:
                client.write(out)
                await self.splice(upstream)
                return False
            await self.copy_body(upstream, out)
        except (ProtocolError, ConnectionError):
            if upstream.closed or upstream.error is not None:
                outcome = "error"
            upstream.abort()
            client.abort()
            pick.endpoint.finish(started, outcome)
            engine.after_finish(pick)
            return False
        pick.endpoint.finish(started, outcome)
        engine.after_finish(pick)
        self.release(upstream, pick)
        if route.spec.mirror is not None:
            engine.mirror(route, info, self.request, self.replay, self.body_sent)
        return _cycle_done(client.conn)

    async def copy_body(self, upstream: Upstream, head: bytes) -> None:
        """Stream the response body; ``head`` goes out with the first piece (one write)."""
        client = self.client
        send, write = client.conn.send, client.write
        http10 = self.request.version == b"1.0"
        events = upstream.events
        while True:
            if events:
                event = events.popleft()
            else:
                if head:
                    write(head)
                    head = b""
                event = await upstream.next_event()
            if event.__class__ is Data:
                self.bytes_out += len(event.data)
                write(head + send(event) if head else send(event))
                head = b""
                if client.closed:
                    raise SideClosed("client went away during the response")
                if client.write_paused:
                    upstream.pause(PAUSE_PEER)
                    try:
                        await client.drain()
                    finally:
                        upstream.resume(PAUSE_PEER)
            elif event.__class__ is EndOfMessage:
                trailers = event.trailers
                if trailers and not http10:
                    event = EndOfMessage(forward_trailers(trailers))
                elif trailers:
                    event = EndOfMessage()
                write(head + send(event))
                return
            elif isinstance(event, ConnectionClosed):
                continue
            else:
                raise SideClosed(f"unexpected event from upstream: {event!r}")

    async def splice(self, upstream: Upstream) -> None:
        client = self.client
        done = (upstream.splice(client), client.splice(upstream))
        await asyncio.wait(done, return_when=asyncio.ALL_COMPLETED)

    def release(self, upstream: Upstream, pick: Pick) -> None:
        conn = upstream.conn
        if (
            conn.our_state is State.DONE
            and conn.their_state is State.DONE
            and conn.keep_alive
            and not upstream.closed
        ):
            conn.start_next_cycle()
            upstream.resume(PAUSE_CORE)
            self.engine.pools.put(pick.endpoint.id, upstream)
        else:
            upstream.close()

    # -- answers of our own -----------------------------------------------------------

    def local(self, status: int, body: bytes) -> bool:
        """Answer ``status`` ourselves; keep the connection only if the request body was read."""
        client = self.client
        conn = client.conn
        self.status = status
        if conn.our_state is not State.SEND_RESPONSE:
            client.abort()  # a response already started: nothing sensible can follow
            return False
        complete = self.body_complete and self.pump is None
        fields = [(b"Content-Length", b"%d" % len(body)), _TEXT]
        if not complete or self.engine.draining:
            fields.append((b"Connection", b"close"))
        head = Response(status, b"", Headers(fields))
        try:
            out = conn.send(head)
            if self.request.method != b"HEAD":
                out += conn.send(Data(body))
            client.write(out + conn.send(EndOfMessage()))
        except ProtocolError:
            client.abort()
            return False
        self.bytes_out = len(body)
        return complete and _cycle_done(conn)

    def client_failed(self, error: BaseException) -> bool:
        if isinstance(error, ProtocolError):
            self.local(error.status, b"bad request body\n")
        else:
            self.client.abort()
        return False
