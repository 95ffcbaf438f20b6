"""Body readers (bytes to Data/EndOfMessage) and writers (Data to bytes).

Readers never hold body bytes: each call turns whatever body bytes are
buffered into one ``Data`` event, so memory stays bounded by one network read
plus, for chunked bodies, one chunk-size line (``max_chunk_line``) or one
trailer section (``max_head``).

Chunked syntax (RFC 9112 §7.1), checked strictly because chunk parsing
differences are the other half of request smuggling:

* chunk-size: 1 to 16 hex digits, value below 2**60 (no overflow games);
* chunk-ext: ``*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )``;
  nothing else may follow the size -- ``5 \\r\\n`` or ``5;\\r\\n`` is a 400;
* the line and the chunk data end in CRLF exactly; bare LF is a 400;
* trailer fields follow the last chunk and obey the header field rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from podnet.proxy.errors import LocalProtocolError, RemoteProtocolError
from podnet.proxy.events import Data, EndOfMessage, Event
from podnet.proxy.head import Limits, check_partial_head
from podnet.proxy.headers import TOKEN, Headers, parse_fields

__all__ = [
    "BodyReader",
    "BodyWriter",
    "ChunkedEncoder",
    "ChunkedReader",
    "CloseReader",
    "CloseWriter",
    "LengthReader",
    "LengthWriter",
]

Buffer = bytes | bytearray
EMPTY_HEADERS = Headers()
END = EndOfMessage(EMPTY_HEADERS)
MAX_CHUNK_SIZE = 1 << 60
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXT = (
    rb"(?:[ \t]*;[ \t]*" + TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN + b"|" + _QUOTED + b"))?)*"
)
_CHUNK_LINE_RE = re.compile(rb"([0-9A-Fa-f]{1,16})" + _CHUNK_EXT + rb"\r\n")


class BodyReader(Protocol):
    """Turns buffered bytes into body events."""

    def read(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        """Append the events ``buf[pos:]`` completes; return the new position.

        Stops after EndOfMessage, or when more bytes are needed.
        """
        ...

    def eof(self) -> Event:
        """The event for a peer that closed here; raises if the body is cut short."""
        ...


class LengthReader:
    """A body of Content-Length bytes."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def read(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        size = min(len(buf) - pos, self.remaining)
        if size > 0:
            self.remaining -= size
            events.append(Data(bytes(buf[pos : pos + size])))
            pos += size
        if not self.remaining:
            events.append(END)
        return pos

    def eof(self) -> Event:
        raise RemoteProtocolError(f"peer closed with {self.remaining} body bytes missing")


class CloseReader:
    """A response body that ends when the server closes the connection."""

    __slots__ = ()

    def read(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        if len(buf) > pos:
            events.append(Data(bytes(buf[pos:])))
        return len(buf)

    def eof(self) -> Event:
        return END


Phase = Callable[[Buffer, int, list[Event]], int]


class ChunkedReader:
    """A chunked body: phases are size line -> data -> CRLF -> ... -> trailers -> done.

    Each phase appends what it completes and returns the new position; the
    reader runs phases until one makes no progress or the body ends.
    """

    __slots__ = ("_limits", "_phase", "_remaining", "_scanned")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._phase: Phase = self._size_line
        self._remaining = 0
        self._scanned = 0

    def read(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        while self._phase != self._done:
            phase = self._phase
            new_pos = phase(buf, pos, events)
            if new_pos == pos and self._phase == phase:
                break
            pos = new_pos
        return pos

    def eof(self) -> Event:
        raise RemoteProtocolError("peer closed inside a chunked body")

    def _size_line(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        limit = self._limits.max_chunk_line
        newline = buf.find(b"\n", pos, pos + limit + 2)
        if newline < 0:
            if len(buf) - pos > limit + 1:
                raise RemoteProtocolError("chunk size line too long")
            return pos
        match = _CHUNK_LINE_RE.fullmatch(buf, pos, newline + 1)
        if match is None:
            raise RemoteProtocolError(f"malformed chunk size line {bytes(buf[pos:newline])[:40]!r}")
        size = int(match[1], 16)
        if size >= MAX_CHUNK_SIZE:
            raise RemoteProtocolError("chunk size too large")
        self._remaining = size
        self._phase = self._data if size else self._trailers
        return newline + 1

    def _data(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        size = min(len(buf) - pos, self._remaining)
        if size <= 0:
            return pos
        self._remaining -= size
        if not self._remaining:
            self._phase = self._data_end
        events.append(Data(bytes(buf[pos : pos + size])))
        return pos + size

    def _data_end(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        ending = bytes(buf[pos : pos + 2])
        if ending == b"\r\n":
            self._phase = self._size_line
            return pos + 2
        if ending not in (b"", b"\r"):
            raise RemoteProtocolError("chunk data not followed by CRLF")
        return pos

    def _trailers(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        if buf[pos : pos + 2] == b"\r\n":
            self._phase = self._done
            events.append(END)
            return pos + 2
        end = buf.find(b"\r\n\r\n", max(pos, pos + self._scanned - 3))
        if end < 0:
            check_partial_head(buf, pos, pos + self._scanned, self._limits, start_line=False)
            self._scanned = len(buf) - pos
            return pos
        trailers = parse_fields(buf, pos, end + 2, max_fields=self._limits.max_fields)
        self._phase = self._done
        events.append(EndOfMessage(trailers))
        return end + 4

    def _done(self, buf: Buffer, pos: int, events: list[Event]) -> int:
        return pos


class BodyWriter(Protocol):
    """Turns body events into bytes, enforcing the framing announced in the head."""

    def write(self, data: bytes) -> bytes:
        """The wire bytes for one piece of body."""
        ...

    def finish(self, trailers: Headers) -> bytes:
        """The wire bytes that end the body."""
        ...


class LengthWriter:
    """A body announced by Content-Length: exactly that many bytes."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def write(self, data: bytes) -> bytes:
        if len(data) > self.remaining:
            raise LocalProtocolError(f"body exceeds Content-Length by {len(data) - self.remaining}")
        self.remaining -= len(data)
        return data

    def finish(self, trailers: Headers) -> bytes:
        if self.remaining:
            raise LocalProtocolError(f"body ended {self.remaining} bytes short of Content-Length")
        if trailers:
            raise LocalProtocolError("trailers need chunked framing")
        return b""


class ChunkedEncoder:
    """Chunked transfer coding, for bodies of unknown length.

    ``encode(data)`` frames one chunk (nothing for empty data, which would
    read as the last chunk); ``finish(trailers)`` writes the last chunk and
    the trailer section.
    """

    __slots__ = ()

    def encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        return b"%x\r\n%b\r\n" % (len(data), data)

    write = encode

    def finish(self, trailers: Headers = EMPTY_HEADERS) -> bytes:
        return b"0\r\n" + trailers.field_block() + b"\r\n"


class CloseWriter:
    """A body that ends when we close the connection (HTTP/1.0 peers)."""

    __slots__ = ()

    def write(self, data: bytes) -> bytes:
        return data

    def finish(self, trailers: Headers) -> bytes:
        if trailers:
            raise LocalProtocolError("trailers need chunked framing")
        return b""
