"""One whoami connection: an asyncio Protocol around a :class:`RequestParser`.

Answers go out in request order. Without ``--delay`` every answer a read
completes is written at once, in one ``write``; with it, answers wait in a queue
until they are due and the head of the queue is written first.

Timeouts: the connection closes when no request completes within
``idle_timeout`` of the previous one (or of the accept); a request caught
half-read gets 408 first. While a body arrives, each read restarts the clock.

Closing after an answer is a half-close (``write_eof``) followed by a bounded
wait for the client's EOF, so that a client still sending does not turn our
close into a reset that destroys the answer ("lingering close").
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Final, cast

from podnet.workload.addresses import format_peer
from podnet.workload.answers import CONTINUE, Peer, Responder, is_health
from podnet.workload.http1 import (
    ContinueExpected,
    Event,
    Rejected,
    Request,
    RequestParser,
)
from podnet.workload.special import (
    CHUNK,
    SPECIAL,
    WebSocketEcho,
    bytes_length,
    delay_of,
    is_websocket,
    websocket_accept,
)

__all__ = ["ConnectionSettings", "ConnectionTracker", "WhoamiProtocol"]

_LINGER: Final = 2.0
_TIMEOUT: Final = Rejected(408, "request not received in time")
_ZEROS: Final = bytes(CHUNK)


class _Stream:
    """A queued ``/bytes/N`` answer: its head now, N bytes as the client reads."""

    __slots__ = ("head", "length")

    def __init__(self, head: bytes, length: int) -> None:
        self.head = head
        self.length = length


class _Upgrade:
    """A queued WebSocket handshake answer; the connection then echoes frames."""

    __slots__ = ("head",)

    def __init__(self, head: bytes) -> None:
        self.head = head


Answer = bytes | _Stream | _Upgrade


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """What every connection of one server shares."""

    responder: Responder
    delay: float
    idle_timeout: float
    max_head: int
    max_body: int


class ConnectionTracker:
    """The open connections of one server, so that it can stop them."""

    def __init__(self) -> None:
        self._open: set[WhoamiProtocol] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._stopping = False

    def __len__(self) -> int:
        return len(self._open)

    def add(self, connection: WhoamiProtocol) -> None:
        self._open.add(connection)
        self._empty.clear()
        if self._stopping:  # accepted just as the server stopped
            connection.shutdown()

    def discard(self, connection: WhoamiProtocol) -> None:
        self._open.discard(connection)
        if not self._open:
            self._empty.set()

    def shutdown_all(self) -> None:
        """Ask every connection to close once its queued answers are out."""
        self._stopping = True
        for connection in list(self._open):
            connection.shutdown()

    def abort_all(self) -> None:
        for connection in list(self._open):
            connection.abort()

    async def wait_empty(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for all to close; True if they did."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return False
        return True


class WhoamiProtocol(asyncio.Protocol):
    """Serve whoami answers on one accepted connection."""

    __slots__ = (
        "_closing",
        "_deadline",
        "_delay_timer",
        "_draining",
        "_eof",
        "_loop",
        "_parser",
        "_peer",
        "_queue",
        "_settings",
        "_stream_left",
        "_timer",
        "_tracker",
        "_transport",
        "_write_blocked",
        "_ws",
    )

    def __init__(self, settings: ConnectionSettings, tracker: ConnectionTracker) -> None:
        self._settings = settings
        self._tracker = tracker
        self._loop = asyncio.get_running_loop()
        self._parser = RequestParser(max_head=settings.max_head, max_body=settings.max_body)
        self._transport: asyncio.Transport | None = None
        self._peer = Peer("", b"")
        self._queue: deque[tuple[float, Answer]] = deque()
        self._stream_left = 0  # bytes of a /bytes/N answer still to write
        self._write_blocked = False
        self._ws: WebSocketEcho | None = None
        self._delay_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None  # idle, then linger
        self._deadline = 0.0
        self._closing = False  # answered for the last time
        self._draining = False  # server stopping: no new requests
        self._eof = False  # client half-closed while answers were queued

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        remote = format_peer(transport.get_extra_info("peername"))
        self._peer = self._settings.responder.peer(remote)
        self._deadline = self._loop.time() + self._settings.idle_timeout
        self._timer = self._loop.call_at(self._deadline, self._on_timer)
        self._tracker.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._draining:
            return
        if self._ws is not None:
            self._echo(data)
            return
        parser = self._parser
        events = parser.feed(data)
        if events or parser.in_body:
            self._deadline = self._loop.time() + self._settings.idle_timeout
        if not events:
            return
        special = self._settings.delay > 0 or bool(self._queue) or self._stream_left > 0
        if not special:
            for event in events:
                if event.__class__ is Request and event.target.startswith(SPECIAL):
                    special = True
                    break
        if special:
            self._enqueue(events)
        else:
            self._write_now(events)

    def eof_received(self) -> bool | None:
        if self._queue and not self._closing:
            self._eof = True
            return True  # keep writing the queued answers
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self._queue.clear()
        self._tracker.discard(self)

    def pause_writing(self) -> None:
        self._write_blocked = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
            if self._stream_left:
                self._pump()

    # control by the server

    def shutdown(self) -> None:
        """Stop reading requests; close once the queued answers are written."""
        self._draining = True
        if not self._queue and not self._closing and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping whatever is unsent."""
        if self._transport is not None:
            self._transport.abort()

    # answering

    def _render(self, event: Event) -> bytes:
        if isinstance(event, Request):
            return self._settings.responder.answer(event, self._peer)
        if isinstance(event, Rejected):
            return self._settings.responder.reject(event)
        return CONTINUE

    def _write_now(self, events: list[Event]) -> None:
        assert self._transport is not None
        if len(events) == 1:
            self._transport.write(self._render(events[0]))
        else:
            self._transport.write(b"".join([self._render(event) for event in events]))
        if self._parser.done:
            self._finish()

    def _enqueue(self, events: list[Event]) -> None:
        now = time.monotonic()
        for event in events:
            immediate = isinstance(event, ContinueExpected | Rejected) or is_health(event)
            delay = 0.0 if immediate else self._settings.delay
            answer: Answer | None = None
            if isinstance(event, Request) and event.target.startswith(SPECIAL):
                delay = delay_of(event) or delay
                answer = self._special(event)
            self._queue.append((now + delay, self._render(event) if answer is None else answer))
        if self._delay_timer is None and not self._stream_left:
            self._schedule_queue()

    def _special(self, request: Request) -> Answer | None:
        length = bytes_length(request)
        if length is not None:
            self._settings.responder.requests += 1
            return _Stream(self._settings.responder.stream_head(length, request), length)
        if is_websocket(request):
            self._settings.responder.requests += 1
            return _Upgrade(websocket_accept(request))
        return None

    def _pump(self) -> None:
        """Write the rest of a /bytes/N body while the client keeps up."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        while self._stream_left and not self._write_blocked:
            size = min(CHUNK, self._stream_left)
            transport.write(_ZEROS if size == CHUNK else _ZEROS[:size])
            self._stream_left -= size
        if not self._stream_left and self._delay_timer is None:
            self._write_due()

    def _echo(self, data: bytes) -> None:
        assert self._ws is not None and self._transport is not None
        out, close = self._ws.feed(data)
        if out:
            self._transport.write(out)
        if close:
            self._finish()

    def _schedule_queue(self) -> None:
        wait = max(0.0, self._queue[0][0] - time.monotonic())
        self._delay_timer = self._loop.call_later(wait, self._write_due)

    def _write_due(self) -> None:
        self._delay_timer = None
        now = time.monotonic()
        due: list[bytes] = []
        while self._queue and self._queue[0][0] <= now:
            answer = self._queue.popleft()[1]
            if isinstance(answer, bytes):
                due.append(answer)
            elif isinstance(answer, _Stream):
                due.append(answer.head)
                self._stream_left = answer.length
                break
            else:
                due.append(answer.head)
                self._start_websocket()
                break
        if due and self._transport is not None:
            self._transport.write(b"".join(due))
        if self._ws is not None:
            return
        if self._stream_left:
            self._pump()
            return
        if self._queue:
            self._schedule_queue()
        elif self._parser.done or self._eof or self._draining:
            self._finish()

    # closing

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        if self._ws is not None:
            return  # a WebSocket: no HTTP idle timeout
        if self._queue or self._stream_left:  # busy with delayed answers, not idle
            self._deadline = now + self._settings.idle_timeout
        if self._deadline > now:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        assert self._transport is not None
        if self._parser.has_partial:
            self._transport.write(self._settings.responder.reject(_TIMEOUT))
            self._finish()
        elif self._transport.get_write_buffer_size():
            self._transport.abort()  # the client stopped reading
        else:
            self._transport.close()

    def _start_websocket(self) -> None:
        self._queue.clear()
        self._ws = WebSocketEcho()
        self._cancel_timers()
        leftover = self._parser.take_buffer()
        if leftover:
            self._loop.call_soon(self._echo, leftover)

    def _finish(self) -> None:
        """Half-close after the last answer; abort if the client lingers."""
        transport = self._transport
        if self._closing or transport is None:
            return
        self._closing = True
        self._cancel_timers()
        if transport.can_write_eof() and not self._eof:
            transport.write_eof()
            self._timer = self._loop.call_later(_LINGER, transport.abort)
        else:
            transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._timer, self._delay_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._delay_timer = None
