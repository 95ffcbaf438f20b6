"""The client-facing side: one :class:`ClientSide` per accepted connection.

Each connection runs one task (:meth:`ClientSide.serve`) that takes requests
in order and runs an :class:`~podnet.proxy.exchange.Exchange` for each; a
pipelined request waits, buffered by the framing core, which also asks us to
stop reading meanwhile. There is no task or timer per request. A read that is
exactly one boring request on an idle connection goes to the fast lane
instead (:mod:`~podnet.proxy.fastlane`), without waking the task; the lane
hands anything unusual back to it as a Request with a ``Handover``.

Timeouts are checked by the engine's sweeper (:meth:`ClientSide.check`), not
by per-connection timers: a request head must be complete within
``header_read`` of its first byte (or of the accept) -- a partial one gets 408,
a connection that sent nothing is closed -- and a keep-alive connection
idle for ``idle`` seconds is closed.

Framing errors are answered with the core's status (400, 413, 414, 431, 501,
505) before anything reaches a backend, and the connection closes. Closing is
lingering: the answer goes out, our side is half-closed, the client's
remaining bytes are read and dropped until it closes (at most
:data:`LINGER` seconds), so that our close does not become a reset that
destroys the answer.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Final

from podnet.proxy.errors import ProtocolError, RemoteProtocolError
from podnet.proxy.exchange import Exchange
from podnet.proxy.fastlane import FastExchange, Handover, try_fast
from podnet.proxy.http1 import EndOfMessage, Request, Role, State, error_response
from podnet.proxy.original_dst import original_destination
from podnet.proxy.side import PAUSE_CORE, Side, SideClosed

if TYPE_CHECKING:
    from podnet.proxy.engine import Engine

__all__ = ["LINGER", "ClientSide"]

LINGER: Final = 2.0
_TIMEOUT_408: Final = RemoteProtocolError("request head not received in time", status=408)


class ClientSide(Side):
    """One client connection (HTTP/1.1 server side)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(Role.SERVER, engine.limits)
        self.engine = engine
        self.ip = b""
        self.client = ""
        self.destination = ""
        self.busy = False
        self.lingering = False
        self.head_started = 0.0
        self.task: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self.fast: FastExchange | None = None  # a request in the fast lane
        self.handover: Handover | None = None  # what the fast lane hands the next Exchange

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.ip = str(peer[0]).encode("ascii")
            self.client = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small answers go out at once, not after the client's delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.engine.sidecar:
            self.destination = original_destination(sock)
        self.head_started = self.last_activity
        self.engine.clients.add(self)
        self.task = self.loop.create_task(self.serve())

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        if self.fast is not None:  # more bytes while a request is in the fast lane
            self.fast.handover()
        elif (
            not self.busy
            and not self.events
            and self.error is None
            and self._peer is None
            and self.conn.idle
            and try_fast(self, data)
        ):
            return
        Side.data_received(self, data)
        if not self.head_started and not self.busy and self.conn.their_state is State.IDLE:
            self.head_started = self.last_activity

    def eof_received(self) -> bool | None:
        if self.lingering:
            self.abort()
            return None
        if self.fast is not None:
            self.fast.handover()
        return Side.eof_received(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fast is not None:
            self.fast.handover()
        super().connection_lost(exc)
        if self._linger is not None:
            self._linger.cancel()
        self.engine.clients.discard(self)
        self.engine.client_gone()

    def on_protocol_error(self, error: RemoteProtocolError) -> None:
        # Not aborted: serve() (or the body pump) answers the status first.
        self.error = error
        self.pause(PAUSE_CORE)
        self._wake()

    # -- the request loop -----------------------------------------------------------

    async def serve(self) -> None:
        engine = self.engine
        try:
            while not self.closed:
                try:
                    event = await self.next_event()
                except ProtocolError as error:
                    self.answer_error(error)
                    return
                except SideClosed:
                    return
                if event.__class__ is EndOfMessage:
                    continue  # the end of a request without body, not taken by its exchange
                if not isinstance(event, Request):
                    break  # ConnectionClosed: the client is done
                self.head_started = 0.0
                self.busy = True
                engine.in_flight += 1
                handover, self.handover = self.handover, None
                try:
                    keep = await Exchange(engine, self, event, handover).run()
                finally:
                    self.busy = False
                    engine.in_flight -= 1
                if not keep or engine.draining or self.closed:
                    break
                events = self.conn.start_next_cycle()
                self.resume(PAUSE_CORE)
                if events:
                    self.push(events)
        except ProtocolError as error:
            self.answer_error(error)
        except Exception:  # a bug must not leave the connection hanging
            engine.log_error("client connection failed")
            self.abort()
        finally:
            self.finish()

    def answer_error(self, error: ProtocolError) -> None:
        """Answer a framing error (if no response started) and close."""
        if self.conn.our_state in (State.IDLE, State.SEND_RESPONSE):
            self.write(error_response(error))
        self.finish()

    def finish(self) -> None:
        """Lingering close: half-close, drop what still comes, close at EOF or after LINGER."""
        transport = self.transport
        if self.lingering or transport is None or self.closed:
            return
        self.lingering = True
        if self.conn.their_state is State.CLOSED:  # the client closed its side already
            transport.close()
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._paused = 0
        transport.resume_reading()
        self._linger = self.loop.call_later(LINGER, transport.abort)

    # -- timeouts (called by the engine's sweeper) ----------------------------------

    def check(self, now: float, header_read: float, idle: float) -> None:
        if self.fast is not None:
            self.fast.check(now)
        if self.busy or self.lingering or self.closed or self.spliced:
            return
        if self.head_started:
            if now - self.head_started > header_read:
                if self.conn.buffered:
                    self.answer_error(_TIMEOUT_408)
                else:
                    self.finish()
        elif now - self.last_activity > idle:
            self.finish()

    def shutdown(self) -> None:
        """Draining: close now if between requests, else after the current response."""
        if not self.busy and not self.spliced:
            self.finish()
