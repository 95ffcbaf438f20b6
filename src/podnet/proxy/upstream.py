"""Connections to endpoints and their keep-alive pools.

One :class:`Pool` per endpoint id keeps idle connections, most recently used
first (a warm connection is the least likely to have been closed by the
server). A connection goes back to the pool only when its cycle ended cleanly
and both messages allowed keep-alive; anything else closes it. Pools are
bounded (``max_idle`` per endpoint); :meth:`Pools.sweep` closes connections
idle longer than the idle timeout.

A pooled connection the server closes notices it at once (its EOF, then
``connection_lost``) and is skipped by :meth:`Pool.get` (see
:attr:`Upstream.reusable`); the race where the close crosses our next
request shows up as ``reset`` and is what the retry policy's ``reset``
condition is for.

The circuit breaker's ``connections`` limit counts open connections per
backend: :func:`connect` acquires it (with ``pending`` held while connecting)
and the connection releases it when it closes.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Final, Literal

from podnet.proxy.http1 import Role, State
from podnet.proxy.resilience import CircuitBreakerRuntime
from podnet.proxy.side import Side, SideClosed

if TYPE_CHECKING:
    from podnet.proxy.fastlane import FastExchange

__all__ = ["ConnectFailed", "Overflow", "Pool", "Pools", "Upstream", "connect"]

MAX_IDLE: Final = 64


class ConnectFailed(ConnectionError):
    """No connection to the endpoint (refused, unreachable, timed out)."""


class Overflow(Exception):
    """A circuit-breaker limit of the backend is reached."""

    def __init__(self, kind: Literal["connections", "pending", "requests"]) -> None:
        super().__init__(f"circuit breaker: too many {kind}")
        self.kind = kind


class Upstream(Side):
    """One connection to an endpoint (HTTP/1.1 client side)."""

    def __init__(self, breaker: CircuitBreakerRuntime | None) -> None:
        super().__init__(Role.CLIENT)
        self.breaker = breaker
        self.idle_since = 0.0
        #: The fast-lane exchange that owns this connection's bytes (see fastlane).
        self.fast: FastExchange | None = None
        #: Not None: bytes wait here, unparsed, until Exchange.resume catches ``conn`` up.
        self.held: bytearray | None = None
        self.held_eof = False

    @property
    def reusable(self) -> bool:
        """Open and between cycles with nothing pending: a server that closed (its EOF
        may arrive before the transport reports the loss) or spoke out of turn is not."""
        return not self.closed and self.error is None and not self.events and self.conn.idle

    def data_received(self, data: bytes) -> None:
        fast = self.fast
        if fast is not None:
            fast.on_data(data)
        elif self.held is not None:
            self.held += data
        else:
            Side.data_received(self, data)

    def hold(self, data: bytes) -> None:
        """Keep what arrives from now on unparsed (the fast lane handed the exchange over)."""
        self.held = bytearray(data)

    def release_held(self) -> None:
        """Parse what was held, now that ``conn`` knows the request it answers."""
        held, eof = self.held, self.held_eof
        self.held, self.held_eof = None, False
        if held:
            Side.data_received(self, bytes(held))
        if eof:
            self.eof_received()

    def eof_received(self) -> bool | None:
        if self.fast is not None:
            self.fast.handover()
        if self.held is not None:
            self.held_eof = True
            return True  # the exchange that takes over decides
        conn = self.conn
        if not self.spliced and conn.their_state is State.SEND_RESPONSE and not conn.buffered:
            # Closed before a single byte of the response: the keep-alive race or a
            # crashed server. That is "reset" (retryable), not a malformed response.
            self.error = SideClosed("upstream closed before responding")
            self._wake()
            return None
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.breaker is not None:
            self.breaker.release("connections")
            self.breaker = None
        super().connection_lost(exc)
        if self.fast is not None:
            self.fast.handover()


class Pool:
    """Idle keep-alive connections to one endpoint."""

    __slots__ = ("idle", "max_idle")

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self.idle: list[Upstream] = []
        self.max_idle = max_idle

    def get(self) -> Upstream | None:
        idle = self.idle
        while idle:
            upstream = idle.pop()
            if upstream.reusable:
                return upstream
            upstream.close()
        return None

    def put(self, upstream: Upstream) -> None:
        if len(self.idle) >= self.max_idle or upstream.closed:
            upstream.close()
            return
        upstream.idle_since = upstream.loop.time()
        self.idle.append(upstream)


class Pools:
    """Every endpoint's pool, by endpoint id."""

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self.pools: dict[str, Pool] = {}
        self.max_idle = max_idle

    def get(self, endpoint_id: str) -> Upstream | None:
        pool = self.pools.get(endpoint_id)
        return pool.get() if pool is not None else None

    def put(self, endpoint_id: str, upstream: Upstream) -> None:
        pool = self.pools.get(endpoint_id)
        if pool is None:
            pool = self.pools[endpoint_id] = Pool(self.max_idle)
        pool.put(upstream)

    def sweep(self, now: float, idle_timeout: float) -> None:
        """Close connections idle for ``idle_timeout`` seconds; forget empty pools."""
        for endpoint_id, pool in list(self.pools.items()):
            keep = []
            for upstream in pool.idle:
                if upstream.closed:
                    continue
                if now - max(upstream.idle_since, upstream.last_activity) > idle_timeout:
                    upstream.close()
                else:
                    keep.append(upstream)
            pool.idle = keep
            if not keep:
                del self.pools[endpoint_id]

    def idle_count(self) -> int:
        return sum(len(pool.idle) for pool in self.pools.values())

    def close_all(self) -> None:
        for pool in self.pools.values():
            for upstream in pool.idle:
                upstream.close()
        self.pools.clear()


async def connect(
    address: str, port: int, breaker: CircuitBreakerRuntime, timeout: float
) -> Upstream:
    """Open a connection to ``address:port`` within ``timeout`` seconds.

    Raises:
        Overflow: the backend's ``pending`` or ``connections`` limit is reached.
        ConnectFailed: refused, unreachable or timed out.
    """
    if not breaker.try_acquire("pending"):
        raise Overflow("pending")
    try:
        if not breaker.try_acquire("connections"):
            raise Overflow("connections")
        loop = asyncio.get_running_loop()
        upstream: Upstream | None = None

        def factory() -> Upstream:
            nonlocal upstream
            upstream = Upstream(breaker)
            return upstream

        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(factory, address, port)
        except (OSError, TimeoutError) as error:
            if upstream is not None:
                upstream.abort()  # connection_lost releases the breaker
            else:
                breaker.release("connections")
            raise ConnectFailed(f"connect to {address}:{port}: {error or 'timed out'}") from None
        except BaseException:
            if upstream is None:
                breaker.release("connections")
            else:
                upstream.abort()
            raise
        assert upstream is not None
        sock = upstream.transport.get_extra_info("socket") if upstream.transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return upstream
    finally:
        breaker.release("pending")
