"""asyncio protocols of the DNS server: datagrams, and TCP streams of framed messages.

Both hand each message to a :class:`~podnet.dns.handler.QueryHandler` with a
``send`` callback that writes to the client, unless its transport is closing
(a reply to a client gone away is dropped, never an error).

TCP (RFC 7766): messages carry a 2-byte length prefix (:class:`TcpFramer`);
a client may send several without waiting, and replies (forwarded ones
finish later) may come back in any order. A connection is closed when it
sends something that is not a query, when it stays idle (no complete query,
no reply) for ``tcp_idle_timeout``, and at once when ``max_tcp_clients`` are
already connected. When a client does not read its replies, the server
stops reading its queries until the replies drain.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, cast

from podnet.dns.handler import QueryHandler
from podnet.dns.wire import TcpFramer, frame

__all__ = ["TcpClients", "TcpProtocol", "UdpProtocol"]

log = logging.getLogger("podnet.dns")


class UdpProtocol(asyncio.DatagramProtocol):
    """One UDP socket: each datagram is one query."""

    def __init__(self, handler: QueryHandler) -> None:
        self._handler = handler
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._handler.handle(data, tcp=False, send=partial(self._send, addr))

    def _send(self, addr: tuple[Any, ...], reply: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors about earlier replies (a client's port closed): nothing to do.
        log.debug("DNS UDP socket error: %r", exc)


class TcpClients:
    """The open TCP connections of a server, at most ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: set[TcpProtocol] = set()

    def admit(self, client: TcpProtocol) -> bool:
        """Count ``client`` in, unless ``limit`` are open already."""
        if len(self._open) >= self.limit:
            return False
        self._open.add(client)
        return True

    def release(self, client: TcpProtocol) -> None:
        self._open.discard(client)

    def abort_all(self) -> None:
        """Drop every connection now (the server is stopping)."""
        for client in list(self._open):
            client.abort()

    def __len__(self) -> int:
        return len(self._open)


class TcpProtocol(asyncio.Protocol):
    """One TCP client connection: length-prefixed queries in, replies out."""

    def __init__(self, handler: QueryHandler, clients: TcpClients, idle_timeout: float) -> None:
        self._handler = handler
        self._clients = clients
        self._idle_timeout = idle_timeout
        self._framer = TcpFramer()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self._clients.admit(self):
            self._handler.counters.tcp_rejected += 1
            self._transport.close()
            return
        self._rearm()

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        for message in self._framer.receive(data):
            self._rearm()
            if not self._handler.handle(message, tcp=True, send=self._send):
                transport.close()  # not DNS: the rest of the stream cannot be trusted
                return

    def _send(self, reply: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(frame(reply))
            self._rearm()

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._idle_timeout, self._idle)

    def _idle(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool:
        # The client will send no more; keep the connection open for the replies
        # still being forwarded. The idle timer closes it after the last one.
        return True

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._clients.release(self)
