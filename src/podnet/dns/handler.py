"""One query in, its reply out through a callback: the part UDP and TCP share.

:class:`QueryHandler` answers a message from the zone the provider returns at
that moment (so a zone the agent swapped in shows on the very next query),
sends in-zone replies at once, and starts a bounded number of forwarding
tasks for the rest. It never raises for what a client sends; an unexpected
error (a bug, or a provider that fails) is logged and answered SERVFAIL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import dns.message
import dns.rcode

from podnet.dns.answer import Forward, error_response
from podnet.dns.forward import DEFAULT_TIMEOUT, Forwarder
from podnet.dns.records import Zone
from podnet.dns.wire import Responder, header_reply, render, reply_limit
from podnet.errors import InvalidInput

__all__ = ["Counters", "Limits", "QueryHandler", "Send", "ZoneProvider"]

log = logging.getLogger("podnet.dns")
ZoneProvider = Callable[[], Zone]
#: Sends one reply (bytes without a TCP length prefix) to the client that asked.
Send = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of a DNS server.

    ``tcp_idle_timeout``: seconds a TCP client may stay without completing a
    query, counted from its last query or reply (RFC 7766 suggests seconds).
    ``max_tcp_clients``: TCP connections at once; more are closed at once.
    ``forward_timeout``: seconds per exchange with an upstream.
    ``max_forwards``: queries being forwarded at once; more get SERVFAIL.
    ``cache_size``: rendered replies kept for the current zone.
    """

    tcp_idle_timeout: float = 10.0
    max_tcp_clients: int = 256
    forward_timeout: float = DEFAULT_TIMEOUT
    max_forwards: int = 512
    cache_size: int = 4096

    def __post_init__(self) -> None:
        if not (self.tcp_idle_timeout > 0 and self.forward_timeout > 0):
            raise InvalidInput("DNS server timeouts must be positive")
        if min(self.max_tcp_clients, self.max_forwards, self.cache_size) < 0:
            raise InvalidInput("DNS server limits must not be negative")


@dataclass(slots=True)
class Counters:
    """What a server did since it started, for metrics and tests."""

    queries: int = 0
    dropped: int = 0
    forwarded: int = 0
    overloaded: int = 0
    errors: int = 0
    tcp_rejected: int = 0


class QueryHandler:
    """Answers messages from the provider's current zone, forwarding the rest.

    Args:
        zone_provider: returns the current zone; called once per message.
        forwarder: asks upstreams; None refuses names outside the zone.
        limits: the forwarding and cache bounds.
    """

    def __init__(
        self, zone_provider: ZoneProvider, forwarder: Forwarder | None, limits: Limits
    ) -> None:
        self._zone_provider = zone_provider
        self._forwarder = forwarder
        self._limits = limits
        self._responder = Responder(can_forward=forwarder is not None, cache_size=limits.cache_size)
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters = Counters()

    def handle(self, wire: bytes, *, tcp: bool, send: Send) -> bool:
        """Answer the message ``wire`` through ``send``, now or once forwarded.

        Returns:
            False when nothing will be sent (no header, or not a query).
        """
        self.counters.queries += 1
        try:
            outcome = self._responder.respond(wire, self._zone_provider(), tcp=tcp)
        except Exception:
            log.exception("DNS query could not be answered; answering SERVFAIL")
            self.counters.errors += 1
            outcome = header_reply(wire, dns.rcode.SERVFAIL)
        if isinstance(outcome, Forward):
            self._forward(outcome.query, tcp, send)
        elif outcome is None:
            self.counters.dropped += 1
            return False
        else:
            send(outcome)
        return True

    @property
    def forwarding(self) -> int:
        """Queries being forwarded now."""
        return len(self._tasks)

    def _forward(self, query: dns.message.Message, tcp: bool, send: Send) -> None:
        if self._forwarder is None or len(self._tasks) >= self._limits.max_forwards:
            self.counters.overloaded += 1
            send(_servfail(query, tcp))
            return
        self.counters.forwarded += 1
        task = asyncio.get_running_loop().create_task(
            self._relay(self._forwarder, query, tcp, send)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(
        self, forwarder: Forwarder, query: dns.message.Message, tcp: bool, send: Send
    ) -> None:
        try:
            reply = render(await forwarder.resolve(query), reply_limit(query, tcp=tcp))
        except Exception:
            log.exception("forwarded DNS query could not be answered; answering SERVFAIL")
            self.counters.errors += 1
            reply = _servfail(query, tcp)
        send(reply)

    async def close(self) -> None:
        """Cancel every forwarding task and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _servfail(query: dns.message.Message, tcp: bool) -> bytes:
    reply = error_response(query, dns.rcode.SERVFAIL, recursion=True)
    return render(reply, reply_limit(query, tcp=tcp))
