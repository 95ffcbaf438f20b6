"""One TCP connection of the proxy as an asyncio Protocol: the part both sides share.

A :class:`Side` wraps a transport and a sans-I/O :class:`~podnet.proxy.http1.Connection`.
Bytes read are parsed at once; the events wait in a queue for the coroutine
that forwards them (:meth:`Side.next_event`, or :meth:`Side.ready` without
awaiting on the fast path). Three reasons can pause reading -- a backlog of
unconsumed events, the other side's full write buffer, the core asking
(``should_pause_reading``) -- and reading resumes when none is left, so the
proxy never holds more than a few reads of a body.

Writing: ``pause_writing``/``resume_writing`` from the transport set
:attr:`Side.write_paused`; a forwarder awaits :meth:`Side.drain` after writing
while it is set, pausing its source meanwhile.

After a protocol switch (101) both sides become a raw splice
(:meth:`Side.splice`): bytes go straight to the peer's transport, and a full
peer write buffer pauses this side's reading.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, cast

from podnet.proxy.errors import RemoteProtocolError
from podnet.proxy.http1 import Connection, Event, Limits, Role

__all__ = ["BACKLOG", "PAUSE_BACKLOG", "PAUSE_CORE", "PAUSE_PEER", "Side", "SideClosed"]

#: Queued events beyond which reading pauses (each is at most one read of body bytes).
BACKLOG: Final = 4
PAUSE_BACKLOG: Final = 1
PAUSE_PEER: Final = 2
PAUSE_CORE: Final = 4


class SideClosed(ConnectionError):
    """The connection closed (or was reset) before the awaited event."""


class Side(asyncio.Protocol):
    """A proxied connection: transport, framing state, event queue, flow control."""

    def __init__(self, role: Role, limits: Limits | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.conn = Connection(role, limits)
        self.transport: asyncio.Transport | None = None
        self.events: deque[Event] = deque()
        self.error: BaseException | None = None
        self.closed = False
        self.write_paused = False
        self.last_activity = self.loop.time()
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = 0
        self._peer: Side | None = None  # raw splice partner
        self._spliced: asyncio.Future[None] | None = None

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self._peer is not None:
            self._peer.write(data)
            return
        try:
            events = self.conn.receive_data(data)
        except RemoteProtocolError as error:
            self.on_protocol_error(error)
            return
        if events:
            self.push(events)

    def eof_received(self) -> bool | None:
        if self._peer is not None:
            peer = self._peer.transport
            if peer is not None and peer.can_write_eof() and not peer.is_closing():
                peer.write_eof()
            return True  # half-close: the other direction may go on
        try:
            events = self.conn.receive_eof()
        except RemoteProtocolError as error:
            self.on_protocol_error(error)
            return None
        if events:
            self.push(events)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.error is None:
            self.error = SideClosed(str(exc) if exc else "connection closed")
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self._peer is not None:
            peer = self._peer
            self._peer = None
            peer.close()
        if self._spliced is not None and not self._spliced.done():
            self._spliced.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._peer is not None:
            self._peer.pause(PAUSE_PEER)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self._peer is not None:
            self._peer.resume(PAUSE_PEER)

    # -- hooks ---------------------------------------------------------------

    def on_protocol_error(self, error: RemoteProtocolError) -> None:
        """The peer broke HTTP/1.1 framing; by default the awaiting forwarder sees it."""
        self.error = error
        self._wake()
        if self.transport is not None:
            self.transport.abort()

    # -- events --------------------------------------------------------------

    def push(self, events: list[Event]) -> None:
        self.events.extend(events)
        if len(self.events) > BACKLOG:
            self.pause(PAUSE_BACKLOG)
        if self.conn.should_pause_reading:
            self.pause(PAUSE_CORE)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def next_event(self) -> Event:
        """The next parsed event.

        Raises:
            RemoteProtocolError: the peer broke framing.
            SideClosed: the connection closed first.
        """
        events = self.events
        while not events:
            if self.error is not None:
                raise self.error
            if self._paused & PAUSE_BACKLOG:
                self.resume(PAUSE_BACKLOG)
            self._waiter = self.loop.create_future()
            await self._waiter
        if self._paused & PAUSE_BACKLOG and len(events) <= BACKLOG:
            self.resume(PAUSE_BACKLOG)
        return events.popleft()

    # -- flow control ----------------------------------------------------------

    def pause(self, reason: int) -> None:
        was = self._paused
        self._paused |= reason
        if not was and self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.closed and data:
            transport.write(data)

    async def drain(self) -> None:
        """Wait until the write buffer is below the low-water mark (or the connection is gone)."""
        while self.write_paused and not self.closed:
            self._drain = self.loop.create_future()
            await self._drain
        if self.closed and self.error is not None:
            raise SideClosed("connection closed while writing")

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # -- protocol switch -----------------------------------------------------------

    @property
    def spliced(self) -> bool:
        """Raw passthrough after a protocol switch."""
        return self._spliced is not None

    def splice(self, peer: Side) -> asyncio.Future[None]:
        """Relay raw bytes to ``peer`` from now on (after a 101); the future ends on close."""
        self._peer = peer
        self._spliced = self.loop.create_future()
        self.events.clear()
        data, eof = self.conn.trailing_data
        if data:
            peer.write(data)
        if self.closed:
            self._spliced.set_result(None)
            peer.close()
        elif eof:
            self.eof_received()
        self._paused &= ~(PAUSE_BACKLOG | PAUSE_CORE)
        if self.transport is not None and not self.closed:
            if self._paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
        return self._spliced
