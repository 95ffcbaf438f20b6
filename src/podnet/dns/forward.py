"""Asking upstream DNS servers for names outside podnet's zone.

A query for a name outside the zone goes to the upstreams (the resolvers of
the node, as the agent found them) as a fresh query with a fresh ID (see
:func:`~podnet.dns.answer.upstream_query`): over UDP first; over TCP to the
same upstream when the UDP answer is truncated. Each exchange has a deadline;
a failed attempt (timeout, refused, garbage) is retried once, on the next
upstream when there are several. When every attempt fails, the client gets
SERVFAIL. :meth:`Forwarder.resolve` never raises, but for cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode

from podnet.dns.answer import error_response, relay, upstream_query
from podnet.dns.wire import MALFORMED
from podnet.errors import InvalidInput

__all__ = ["DEFAULT_ATTEMPTS", "DEFAULT_TIMEOUT", "UPSTREAM_ERRORS", "Forwarder"]

DEFAULT_TIMEOUT = 2.0
DEFAULT_ATTEMPTS = 2  # one try and one retry
#: What a failed exchange with an upstream raises.
UPSTREAM_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, *MALFORMED)
log = logging.getLogger("podnet.dns")


class Forwarder:
    """Resolves queries through upstream servers, with deadlines and one retry.

    Args:
        upstreams: ``(address, port)`` of each upstream server, tried in turn.
        timeout: the deadline of each exchange (UDP, then TCP if truncated).
        attempts: how many exchanges to try before SERVFAIL.

    Raises:
        InvalidInput: no upstream, a timeout that is not positive, or no attempt.
    """

    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        if not upstreams:
            raise InvalidInput("DNS forwarding needs at least one upstream server")
        if not timeout > 0 or attempts < 1:
            raise InvalidInput(
                f"DNS forwarding timeout {timeout}s and attempts {attempts} must be positive"
            )
        self.upstreams = tuple(upstreams)
        self.timeout = timeout
        self.attempts = attempts

    async def resolve(self, query: dns.message.Message) -> dns.message.Message:
        """The reply to the client's ``query``: the upstreams' answer, or SERVFAIL."""
        request = upstream_query(query)
        for attempt in range(self.attempts):
            host, port = self.upstreams[attempt % len(self.upstreams)]
            try:
                response = await self.exchange(request, host, port)
            except UPSTREAM_ERRORS as exc:
                log.debug("upstream %s port %d failed: %r", host, port, exc)
                continue
            return relay(query, response)
        return error_response(query, dns.rcode.SERVFAIL, recursion=True)

    async def exchange(
        self, request: dns.message.Message, host: str, port: int
    ) -> dns.message.Message:
        """``request``'s answer from one upstream: UDP, then TCP when truncated.

        Raises:
            OSError, EOFError, dns.exception.DNSException: no valid answer in time.
        """
        async with asyncio.timeout(self.timeout):
            response = await dns.asyncquery.udp(
                request,
                host,
                timeout=self.timeout,
                port=port,
                ignore_unexpected=True,
                ignore_errors=True,
            )
        if not response.flags & dns.flags.TC:
            return response
        async with asyncio.timeout(self.timeout):
            return await dns.asyncquery.tcp(request, host, timeout=self.timeout, port=port)
