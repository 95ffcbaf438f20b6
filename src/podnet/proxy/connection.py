"""The HTTP/1.1 connection state machine; see :mod:`podnet.proxy.http1` for the theory.

:class:`Connection` glues the parts together: it finds message heads in the
buffer and hands them to :mod:`~podnet.proxy.head`, feeds bodies to a reader
from :mod:`~podnet.proxy.body`, moves both sides along the tables of
:mod:`~podnet.proxy.state`, and picks a body writer for what it sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podnet.proxy.body import (
    END,
    BodyReader,
    BodyWriter,
    ChunkedEncoder,
    ChunkedReader,
    CloseReader,
    CloseWriter,
    LengthReader,
    LengthWriter,
)
from podnet.proxy.errors import LocalProtocolError, RemoteProtocolError
from podnet.proxy.events import ConnectionClosed, Data, EndOfMessage, Event, Request, Response
from podnet.proxy.framing import (
    CHUNKED,
    UNTIL_CLOSE,
    Body,
    Facts,
    Framing,
    request_facts,
    response_facts,
)
from podnet.proxy.head import Limits, check_partial_head, parse_request_head, parse_response_head
from podnet.proxy.headers import Headers, split_list
from podnet.proxy.serialize import request_head, response_head
from podnet.proxy.state import CycleState, Kind, Role, State

__all__ = ["DEFAULT_LIMITS", "Connection"]

Buffer = bytes | bytearray
Step = Callable[["Connection", Buffer, int, list[Event]], int]

DEFAULT_LIMITS = Limits()
_EMPTY_READER = LengthReader(0)
_EMPTY_WRITER = LengthWriter(0)
_CLOSED = ConnectionClosed()
#: Their states in which an EOF is a clean close (see Connection._on_eof).
_EOF_CLEAN = frozenset(
    {State.IDLE, State.DONE, State.MUST_CLOSE, State.MIGHT_SWITCH, State.SWITCHED}
)
_PAUSED = frozenset(
    {State.DONE, State.MUST_CLOSE, State.MIGHT_SWITCH, State.SWITCHED, State.CLOSED, State.ERROR}
)


def _reader_for(framing: Framing, limits: Limits) -> BodyReader:
    if framing.body is Body.LENGTH:
        return LengthReader(framing.length) if framing.length else _EMPTY_READER
    if framing.body is Body.CHUNKED:
        return ChunkedReader(limits)
    return CloseReader()


class Connection:
    """One side of an HTTP/1.1 connection, as a state machine over bytes and events.

    Args:
        our_role: ``Role.SERVER`` to face a client, ``Role.CLIENT`` to face an upstream.
        limits: buffer and size limits.
    """

    def __init__(self, our_role: Role, limits: Limits | None = None) -> None:
        self.our_role = our_role
        self.their_role = Role.CLIENT if our_role is Role.SERVER else Role.SERVER
        self.limits = limits or DEFAULT_LIMITS
        self._cycle = CycleState()
        self._buf = bytearray()
        self._scanned = 0  # bytes of an incomplete head already checked
        self._their_eof = False
        self._failure: RemoteProtocolError | None = None
        self._reader: BodyReader = _EMPTY_READER
        self._writer: BodyWriter = _EMPTY_WRITER
        self._request_method = b""
        self._client_http10 = False
        self._waiting_continue = False
        self._steps = _CLIENT_STEPS if our_role is Role.CLIENT else _SERVER_STEPS

    # -- what the proxy asks -------------------------------------------------

    @property
    def our_state(self) -> State:
        return self._cycle.states[self.our_role]

    @property
    def their_state(self) -> State:
        return self._cycle.states[self.their_role]

    @property
    def keep_alive(self) -> bool:
        """Nothing so far prevents reusing the connection for another cycle."""
        return self._cycle.keep_alive

    @property
    def client_is_waiting_for_100_continue(self) -> bool:
        """(SERVER) The client sent ``Expect: 100-continue`` and waits for an answer."""
        return (
            self._waiting_continue
            and self.our_state is State.SEND_RESPONSE
            and self.their_state is State.SEND_BODY
        )

    @property
    def should_pause_reading(self) -> bool:
        """The peer's next bytes cannot be processed yet: stop reading the socket."""
        return self.their_state in _PAUSED

    @property
    def idle(self) -> bool:
        """Between cycles with nothing buffered: the peer's next bytes start a new message."""
        states = self._cycle.states
        return (
            not self._buf
            and states[Role.CLIENT] is State.IDLE
            and states[Role.SERVER] is State.IDLE
            and self._failure is None
            and not self._their_eof
        )

    @property
    def buffered(self) -> int:
        """How many received bytes wait unprocessed (e.g. an incomplete head)."""
        return len(self._buf)

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Buffered unprocessed bytes and whether the peer has closed (for passthrough)."""
        return bytes(self._buf), self._their_eof

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer; return the events they complete.

        ``b""`` only re-runs the parser; the end of the stream is :meth:`receive_eof`.

        Raises:
            RemoteProtocolError: the peer broke HTTP/1.1 (``status`` says how to answer).
            LocalProtocolError: called after :meth:`receive_eof`.
        """
        if self._their_eof:
            raise LocalProtocolError("receive_data after receive_eof")
        if self._buf:
            self._buf += data
            return self._drain(self._buf)
        return self._drain(data)

    def receive_eof(self) -> list[Event]:
        """The peer closed its side; return the final events.

        Raises:
            RemoteProtocolError: the peer closed in the middle of a message.
        """
        if self._their_eof:
            return []
        self._their_eof = True
        return self._drain(self._buf)

    def start_next_cycle(self) -> list[Event]:
        """Reset for the next request on a persistent connection; return buffered events.

        Raises:
            LocalProtocolError: the cycle is not complete or the connection cannot persist.
        """
        self._cycle.start_next_cycle()
        self._reader, self._writer = _EMPTY_READER, _EMPTY_WRITER
        self._request_method, self._waiting_continue = b"", False
        if not self._buf and not self._their_eof:
            return []  # the common case: nothing pipelined, nothing to parse
        return self._drain(self._buf)

    def _drain(self, buf: Buffer) -> list[Event]:
        if self._failure is not None:
            raise self._failure
        events: list[Event] = []
        pos = 0
        try:
            pos = self._parse(buf, events)
            if self._their_eof and self.their_state is not State.CLOSED:
                self._on_eof(buf, pos, events)
        except RemoteProtocolError as error:
            raise self._fail(error) from None
        self._keep(buf, pos)
        return events

    def _parse(self, buf: Buffer, events: list[Event]) -> int:
        """Run parse steps while they make progress (consume bytes or emit events)."""
        pos, count = 0, 0
        states, role, steps = self._cycle.states, self.their_role, self._steps
        while True:
            step = steps.get(states[role])
            if step is None:
                return pos
            new_pos = step(self, buf, pos, events)
            if new_pos == pos and len(events) == count:
                return pos
            pos, count = new_pos, len(events)

    def _keep(self, buf: Buffer, pos: int) -> None:
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < len(buf):
            self._buf += memoryview(buf)[pos:]
        if len(self._buf) > self.limits.max_buffer and self.should_pause_reading:
            raise self._fail(RemoteProtocolError("peer sent too much data while it had to wait"))

    def _fail(self, error: RemoteProtocolError) -> RemoteProtocolError:
        if self.their_role is Role.SERVER:
            error = error.as_upstream_error()
        self._failure = error
        self._cycle.fail(self.their_role)
        return error

    # -- parse steps: (buffer, position, events) -> new position -------------
    # A step appends the events it completes; see _SERVER_STEPS/_CLIENT_STEPS.

    def _read_request_head(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        while buf.startswith(b"\r\n", pos):  # RFC 9112 §2.2: skip empty lines
            pos += 2
            self._scanned = 0
        end = self._find_head_end(buf, pos)
        if end < 0:
            return pos
        request, facts = parse_request_head(buf, pos, end + 2, self.limits)
        events.append(request)
        self._on_request(request, facts, Role.CLIENT)
        self._end_if_empty(facts.framing, events)
        return end + 4

    def _read_response_head(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        end = self._find_head_end(buf, pos)
        if end < 0:
            return pos
        response, facts = parse_response_head(buf, pos, end + 2, self.limits, self._request_method)
        events.append(response)
        kind = self._response_kind(response.status)
        self._on_response(facts, kind, Role.SERVER)
        if kind is Kind.RESPONSE:
            self._end_if_empty(facts.framing, events)
        return end + 4

    def _end_if_empty(self, framing: Framing, events: list[Event]) -> None:
        """Fast path: a message without body ends with its head."""
        if framing.length == 0 and framing.body is Body.LENGTH:
            events.append(END)
            self._cycle.process(self.their_role, Kind.END)

    def _find_head_end(self, buf: Buffer, pos: int) -> int:
        end = buf.find(b"\r\n\r\n", pos + max(0, self._scanned - 3))
        if end >= 0:
            self._scanned = 0
        elif len(buf) > pos:
            check_partial_head(buf, pos, pos + self._scanned, self.limits)
            self._scanned = len(buf) - pos
        return end

    def _read_body(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        count = len(events)
        pos = self._reader.read(buf, pos, events)
        if len(events) > count:
            self._waiting_continue = False
            if events[-1].__class__ is EndOfMessage:
                self._cycle.process(self.their_role, Kind.END)
        return pos

    def _refuse_unsolicited(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        if len(buf) > pos:
            raise RemoteProtocolError("bytes from the server while no request is outstanding")
        return pos

    def _on_eof(self, buf: Buffer, pos: int, events: list[Event]) -> None:
        state = self.their_state
        if state is State.SEND_BODY:
            events.append(self._reader.eof())
            self._cycle.process(self.their_role, Kind.END)
        elif state not in _EOF_CLEAN or (len(buf) > pos and state is State.IDLE):
            where = "in the middle of a message head" if len(buf) > pos else "without responding"
            raise RemoteProtocolError(f"peer closed {where}")
        if self.their_state is not State.SWITCHED:
            self._cycle.process(self.their_role, Kind.CLOSED)
        events.append(_CLOSED)

    # -- the cycle, shared by receiving and sending ----------------------------

    def _on_request(self, request: Request, facts: Facts, sender: Role) -> None:
        self._cycle.process(sender, Kind.REQUEST)
        self._request_method = request.method
        self._client_http10 = request.version == b"1.0"
        self._waiting_continue = facts.expect_continue
        if facts.upgrade is not None or request.method == b"CONNECT":
            self._cycle.propose_switch()
        if not facts.keep_alive:
            self._cycle.disable_keep_alive()
        if sender is self.their_role:
            self._reader = _reader_for(facts.framing, self.limits)

    def _on_response(self, facts: Facts, kind: Kind, sender: Role) -> None:
        """A response head passed; for one we send, _frame_response does the rest."""
        self._cycle.process(sender, kind)
        if kind is Kind.RESPONSE and sender is self.their_role:
            if not facts.keep_alive:
                self._cycle.disable_keep_alive()
            self._reader = _reader_for(facts.framing, self.limits)

    def _response_kind(self, status: int) -> Kind:
        switching = status == 101 or (self._request_method == b"CONNECT" and 200 <= status < 300)
        if switching:
            if self._cycle.states[Role.CLIENT] is not State.MIGHT_SWITCH:
                raise RemoteProtocolError(f"{status} response without a complete switch proposal")
            return Kind.SWITCH
        return Kind.INTERIM if status < 200 else Kind.RESPONSE

    # -- sending -------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """Serialise an event we send; return the bytes to write.

        Raises:
            LocalProtocolError: the event is invalid or not allowed now; the
                connection is then unusable.
        """
        if self.our_state is State.ERROR:
            raise LocalProtocolError("cannot send after a local protocol error")
        try:
            return self._send(event)
        except RemoteProtocolError as error:  # our own message failed a framing check
            self._cycle.fail(self.our_role)
            raise LocalProtocolError(error.message) from error
        except LocalProtocolError:
            self._cycle.fail(self.our_role)
            raise

    def _send(self, event: Event) -> bytes:
        sender = _SENDERS.get(type(event))
        if sender is None:
            raise LocalProtocolError(f"not an event: {event!r}")
        return sender(self, event)

    def _send_data(self, event: Data) -> bytes:
        self._cycle.process(self.our_role, Kind.DATA)
        return self._writer.write(event.data)

    def _send_end(self, event: EndOfMessage) -> bytes:
        self._cycle.process(self.our_role, Kind.END)
        return self._writer.finish(event.trailers)

    def _send_closed(self, event: ConnectionClosed) -> bytes:
        self._cycle.process(self.our_role, Kind.CLOSED)
        return b""

    def _send_request(self, request: Request) -> bytes:
        if self.our_role is not Role.CLIENT:
            raise LocalProtocolError("a server connection cannot send a request")
        facts = request_facts(request.method, b"1.1", request.headers)
        sent = Request(request.method, request.target, b"1.1", request.headers, facts)
        self._on_request(sent, facts, Role.CLIENT)
        self._writer = _writer_for(facts.framing)
        return request_head(request.method, request.target, request.headers)

    def _send_response(self, response: Response) -> bytes:
        if self.our_role is not Role.SERVER:
            raise LocalProtocolError("a client connection cannot send a response")
        if self.our_state is State.IDLE:  # answering no request: the connection ends
            self._cycle.disable_keep_alive()
        kind = self._response_kind(response.status)
        facts = response_facts(response.status, b"1.1", response.headers, self._request_method)
        headers = response.headers
        self._on_response(facts, kind, Role.SERVER)  # validates the transition first
        if kind is Kind.RESPONSE:
            headers = self._frame_response(headers, facts)
        elif kind is Kind.INTERIM and self._client_http10:
            return b""  # RFC 9110 §15.2: no 1xx for an HTTP/1.0 client
        self._waiting_continue = False
        return response_head(response.status, response.reason, headers)

    def _frame_response(self, headers: Headers, facts: Facts) -> Headers:
        """Choose the framing of a final response for this client; fix the headers to match."""
        framing = facts.framing
        if framing.body is not Body.LENGTH and self._client_http10:
            headers, framing = headers.without([b"transfer-encoding"]), UNTIL_CLOSE
        elif framing is UNTIL_CLOSE:
            headers, framing = headers.with_field(b"Transfer-Encoding", b"chunked"), CHUNKED
        self._writer = _writer_for(framing)
        tokens = split_list(headers.get_all(b"connection")) if b"connection" in headers else []
        keep_alive = self.keep_alive and b"close" not in tokens and framing is not UNTIL_CLOSE
        if not keep_alive:
            self._cycle.disable_keep_alive()
            if b"close" not in tokens:
                headers = headers.with_field(b"Connection", b"close")
        elif self._client_http10 and b"keep-alive" not in tokens:
            headers = headers.with_field(b"Connection", b"keep-alive")
        return headers


#: Their state -> how to parse their next bytes; absent states are paused.
_SERVER_STEPS: dict[State, Step] = {  # we are the server: parse requests
    State.IDLE: Connection._read_request_head,
    State.SEND_BODY: Connection._read_body,
}
_CLIENT_STEPS: dict[State, Step] = {  # we are the client: parse responses
    State.IDLE: Connection._refuse_unsolicited,
    State.SEND_RESPONSE: Connection._read_response_head,
    State.SEND_BODY: Connection._read_body,
}


#: Event type -> how to send it.
_SENDERS: dict[type, Callable[[Connection, Any], bytes]] = {
    Data: Connection._send_data,
    EndOfMessage: Connection._send_end,
    Request: Connection._send_request,
    Response: Connection._send_response,
    ConnectionClosed: Connection._send_closed,
}


def _writer_for(framing: Framing) -> BodyWriter:
    if framing.body is Body.LENGTH:
        return LengthWriter(framing.length)
    if framing.body is Body.CHUNKED:
        return ChunkedEncoder()
    return CloseWriter()
