"""Sans-I/O HTTP/1.1 request framing for the whoami workload.

Theory of operation
-------------------
A :class:`RequestParser` belongs to one connection. It never touches a socket:
the server hands it bytes (:meth:`RequestParser.feed`) and gets back the events
those bytes complete, in order:

- :class:`ContinueExpected` -- a request head asked for ``100 Continue`` before
  sending its body; the server should send the interim response.
- :class:`Request` -- a whole request was read: head parsed, body (if any) read
  and discarded.
- :class:`Rejected` -- the bytes are not a request this server accepts; the
  server answers with ``status`` and closes. Nothing is parsed after it.

The parser is a small state machine over one buffer::

    HEAD --(Content-Length > 0)--> BODY ------------------------------> HEAD
    HEAD --(chunked)--> CHUNK_SIZE -> CHUNK_DATA -> CHUNK_END -> CHUNK_SIZE
                        CHUNK_SIZE --(size 0)--> TRAILERS ------------> HEAD
    any --(request that closes, or Rejected)--> DONE

Each state has a reader that consumes what it can from ``buf[pos:]`` and returns
the new position; returning ``pos`` unchanged means it needs more bytes. Bodies are counted, never
kept, so a connection holds at most one header section of buffered bytes.
"""

from __future__ import annotations

import re
from typing import Final

from podnet.workload.events import ContinueExpected, Event, Rejected, Request
from podnet.workload.request_head import Framing, parse_head

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_HEAD",
    "ContinueExpected",
    "Event",
    "Rejected",
    "Request",
    "RequestParser",
]

DEFAULT_MAX_HEAD: Final = 64 * 1024
DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024
_MAX_LINE: Final = 4096

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _DONE = range(7)

_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_CONTINUE: Final = ContinueExpected()


def _find_head_end(buf: bytes, start: int) -> tuple[int, int]:
    """Find the empty line ending a head: (end of head, start of body) or (-1, -1)."""
    crlf = buf.find(b"\n\r\n", start)
    lf = buf.find(b"\n\n", start, crlf + 1 if crlf >= 0 else len(buf))
    if lf >= 0:
        return lf + 1, lf + 2
    if crlf >= 0:
        return crlf + 1, crlf + 3
    return -1, -1


def _skip_empty_lines(buf: bytes, pos: int) -> int:
    """RFC 9112 2.2: ignore empty lines received before a request line."""
    while True:
        if buf.startswith(b"\r\n", pos):
            pos += 2
        elif buf.startswith(b"\n", pos):
            pos += 1
        else:
            return pos


def _line_end(buf: bytes, pos: int) -> tuple[int, int]:
    """The next line of buf[pos:]: (end of its text, start of the next) or (-1, -1)."""
    newline = buf.find(b"\n", pos)
    if newline < 0:
        return -1, -1
    end = newline - 1 if newline > pos and buf[newline - 1] == 13 else newline
    return end, newline + 1


class RequestParser:
    """Turn the bytes of one connection into request events.

    Args:
        max_head: largest request head (request line and headers) accepted;
            a longer one is rejected with 431, as is a longer trailer section.
        max_body: largest request body accepted; a longer one gets 413.
    """

    __slots__ = (
        "_body_seen",
        "_body_total",
        "_buf",
        "_max_body",
        "_max_head",
        "_pending",
        "_readers",
        "_remaining",
        "_scan",
        "_state",
    )

    def __init__(self, *, max_head: int = DEFAULT_MAX_HEAD, max_body: int = DEFAULT_MAX_BODY):
        self._max_head = max_head
        self._max_body = max_body
        self._buf = b""
        self._scan = 0  # where the search for the end of the head resumes
        self._state = _HEAD
        self._pending: Request | None = None  # head read, body not yet
        self._remaining = 0  # body or chunk bytes still to discard
        self._body_seen = 0  # chunked body bytes, or trailer bytes, so far
        self._body_total = 0  # body bytes of the current request
        self._readers = (
            self._read_head,
            self._read_body,
            self._read_chunk_size,
            self._read_chunk_data,
            self._read_chunk_end,
            self._read_trailers,
        )

    @property
    def done(self) -> bool:
        """True after a request that closes the connection, or a rejection."""
        return self._state == _DONE

    @property
    def in_body(self) -> bool:
        """True while a request's body is being read."""
        return _HEAD < self._state < _DONE

    @property
    def has_partial(self) -> bool:
        """True when some bytes of a request that is not complete were received."""
        return self._state != _HEAD or bool(self._buf)

    def take_buffer(self) -> bytes:
        """Hand over buffered unparsed bytes (after a protocol switch) and stop parsing."""
        buf, self._buf = self._buf, b""
        self._state = _DONE
        return buf

    def feed(self, data: bytes) -> list[Event]:
        """Add received bytes; return the events they complete, in order."""
        if self._state == _DONE:
            return []
        buf = self._buf + data if self._buf else data
        events: list[Event] = []
        pos = 0
        end = len(buf)
        while pos < end and self._state != _DONE:
            new = self._readers[self._state](buf, pos, events)
            if new == pos:
                break  # the reader needs more bytes
            pos = new
        self._buf = buf[pos:] if pos < len(buf) and self._state != _DONE else b""
        return events

    def _reject(self, events: list[Event], status: int, detail: str) -> int:
        events.append(Rejected(status, detail))
        self._state = _DONE
        return 0

    def _complete(self, events: list[Event], pos: int) -> int:
        request = self._pending
        assert request is not None
        self._pending = None
        if self._body_total:
            request = request._replace(body_length=self._body_total)
            self._body_total = 0
        events.append(request)
        self._state = _HEAD if request.keep_alive else _DONE
        return pos

    def _read_head(self, buf: bytes, pos: int, events: list[Event]) -> int:
        pos = _skip_empty_lines(buf, pos)
        end, body = _find_head_end(buf, pos + self._scan)
        if end < 0:
            if len(buf) - pos > self._max_head:
                return self._reject(events, 431, "request head too large")
            self._scan = max(0, len(buf) - pos - 3)
            return pos
        self._scan = 0
        if end - pos > self._max_head:
            return self._reject(events, 431, "request head too large")
        parsed = parse_head(buf[pos:end])
        if isinstance(parsed, Rejected):
            return self._reject(events, parsed.status, parsed.detail)
        self._pending, framing = parsed
        return self._start_body(framing, events, body)

    def _start_body(self, framing: Framing, events: list[Event], pos: int) -> int:
        if framing.length > self._max_body:
            return self._reject(events, 413, "request body too large")
        if framing.expect_continue:
            events.append(_CONTINUE)
        if framing.length == 0:
            return self._complete(events, pos)
        if framing.length < 0:
            self._body_seen = 0
            self._state = _CHUNK_SIZE
        else:
            self._remaining = self._body_total = framing.length
            self._state = _BODY
        return pos

    def _discard(self, buf: bytes, pos: int) -> int:
        """Skip up to ``_remaining`` bytes; return the new position."""
        take = min(self._remaining, len(buf) - pos)
        self._remaining -= take
        return pos + take

    def _read_body(self, buf: bytes, pos: int, events: list[Event]) -> int:
        pos = self._discard(buf, pos)
        if self._remaining:
            return pos
        return self._complete(events, pos)

    def _read_chunk_size(self, buf: bytes, pos: int, events: list[Event]) -> int:
        end, after = _line_end(buf, pos)
        if end < 0:
            if len(buf) - pos > _MAX_LINE:
                return self._reject(events, 400, "chunk size line too long")
            return pos
        size = buf[pos:end].partition(b";")[0].strip(b" \t")
        if not _HEX.fullmatch(size):
            return self._reject(events, 400, "malformed chunk size")
        self._remaining = int(size, 16)
        self._body_seen += self._remaining
        self._body_total += self._remaining
        if self._body_seen > self._max_body:
            return self._reject(events, 413, "request body too large")
        self._state = _CHUNK_DATA if self._remaining else _TRAILERS
        if not self._remaining:
            self._body_seen = 0  # now counts trailer bytes
        return after

    def _read_chunk_data(self, buf: bytes, pos: int, events: list[Event]) -> int:
        pos = self._discard(buf, pos)
        if not self._remaining:
            self._state = _CHUNK_END
        return pos

    def _read_chunk_end(self, buf: bytes, pos: int, events: list[Event]) -> int:
        if buf.startswith(b"\r\n", pos):
            self._state = _CHUNK_SIZE
            return pos + 2
        if buf.startswith(b"\n", pos):
            self._state = _CHUNK_SIZE
            return pos + 1
        if buf[pos:] == b"\r":
            return pos
        return self._reject(events, 400, "chunk data not followed by CRLF")

    def _read_trailers(self, buf: bytes, pos: int, events: list[Event]) -> int:
        end, after = _line_end(buf, pos)
        if end < 0:
            if self._body_seen + len(buf) - pos > self._max_head:
                return self._reject(events, 431, "trailer section too large")
            return pos
        if end == pos:
            return self._complete(events, after)
        self._body_seen += after - pos
        if self._body_seen > self._max_head:
            return self._reject(events, 431, "trailer section too large")
        return after
