"""Parse one HTTP/1.1 request head and decide how its message is framed.

Pure functions over bytes: RFC 9112 section 3 (request line), section 5 (field
lines) and section 6 (message body length), plus the connection's persistence
(section 9.3). Anything doubtful is a :class:`Rejected`, never a guess: this
server is also a proxy's backend, where two readings of one request would let
a request be smuggled past the proxy.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from podnet.workload.events import Rejected, Request

__all__ = ["Framing", "framing", "parse_head"]

_TCHAR = rb"!#$%&'*+.^_`|~0-9A-Za-z-"
_REQUEST_LINE = re.compile(rb"([" + _TCHAR + rb"]+) ([\x21-\x7e\x80-\xff]+) (HTTP/(\d)\.(\d))")
# A field line: a token, a colon, then no control but HTAB (a CR left after
# CRLF became LF is a stray one). A line starting with whitespace (obs-fold)
# or with a space before the colon is not a field line.
_FIELD_LINES = re.compile(rb"(?:[" + _TCHAR + rb"]+:[^\x00-\x08\x0a-\x1f\x7f]*\n)*")
_FIELD = re.compile(rb"([" + _TCHAR + rb"]+):[ \t]*([^\n]*?)[ \t]*\n")
_DIGITS = re.compile(rb"[0-9]{1,18}")


class Framing(NamedTuple):
    """What the head says about the body and the connection."""

    length: int  # -1 for chunked
    keep_alive: bool
    host: bytes
    expect_continue: bool


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip(b" \t").lower() for t in value.split(b",") if t.strip(b" \t")]


def _content_length(values: list[bytes]) -> int | Rejected:
    """Every Content-Length value (comma lists included) must be one number."""
    seen = {part.strip(b" \t") for value in values for part in value.split(b",")}
    if len(seen) != 1:
        return Rejected(400, "conflicting Content-Length values")
    text = seen.pop()
    if not _DIGITS.fullmatch(text):
        return Rejected(400, "Content-Length is not a number")
    return int(text)


def _transfer_coding(codings: list[bytes]) -> Rejected | None:
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        return Rejected(400, "Transfer-Encoding does not end in chunked")
    return None


class _Fields:
    """The header fields that frame a request, gathered in one pass."""

    __slots__ = ("codings", "connection", "expect", "hosts", "lengths")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.hosts: list[bytes] = []
        self.lengths: list[bytes] = []
        self.codings: list[bytes] | None = None  # None: no Transfer-Encoding
        self.connection: list[bytes] = []
        self.expect = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"host":
                self.hosts.append(value)
            elif lname == b"content-length":
                self.lengths.append(value)
            elif lname == b"transfer-encoding":
                self.codings = (self.codings or []) + _tokens(value)
            elif lname == b"connection":
                self.connection += _tokens(value)
            elif lname == b"expect":
                self.expect = value.lower() == b"100-continue"


def _body_length(fields: _Fields, http10: bool) -> int | Rejected:
    """Content-Length, 0 without a body, -1 for chunked (RFC 9112 6.3)."""
    if fields.codings is not None:
        if fields.lengths or http10:  # a smuggling vector: refuse, don't pick one
            return Rejected(400, "Transfer-Encoding with Content-Length or HTTP/1.0")
        return _transfer_coding(fields.codings) or -1
    if fields.lengths:
        return _content_length(fields.lengths)
    return 0


def framing(http10: bool, headers: list[tuple[bytes, bytes]]) -> Framing | Rejected:
    """Apply RFC 9112 sections 6 and 9.3 to a request's header fields."""
    fields = _Fields(headers)
    if len(fields.hosts) > 1 or (not fields.hosts and not http10):
        return Rejected(400, "a request needs exactly one Host header")
    length = _body_length(fields, http10)
    if isinstance(length, Rejected):
        return length
    if http10:
        keep_alive = b"keep-alive" in fields.connection and b"close" not in fields.connection
    else:
        keep_alive = b"close" not in fields.connection
    host = fields.hosts[0] if fields.hosts else b""
    return Framing(length, keep_alive, host, fields.expect and not http10 and length != 0)


def parse_head(head: bytes) -> tuple[Request, Framing] | Rejected:
    """Parse a request line and header lines, each ending in LF or CRLF."""
    text = head.replace(b"\r\n", b"\n") if b"\r" in head else head
    fields_start = text.index(b"\n") + 1
    match = _REQUEST_LINE.fullmatch(text, 0, fields_start - 1)
    if match is None:
        return Rejected(400, "malformed request line")
    if match[4] != b"1":
        return Rejected(505, "only HTTP/1.x is served")
    # One pass validates every field line, a second extracts them: both in C.
    if _FIELD_LINES.fullmatch(text, fields_start) is None:
        return Rejected(400, "malformed header line")
    headers: list[tuple[bytes, bytes]] = _FIELD.findall(text, fields_start)
    frame = framing(match[5] == b"0", headers)
    if isinstance(frame, Rejected):
        return frame
    return Request(match[1], match[2], match[3], headers, text, frame.host, frame.keep_alive), frame
