"""The common exchange without events: recognise it, and produce the bytes the core would.

Most requests a proxy sees are boring: a head that arrives in one read with
nothing after it, an origin-form target, HTTP/1.1, no body, a single valid
Host and no hop-by-hop or forwarding fields; and most answers are as boring:
HTTP/1.1, a 2xx-4xx status that has a body, one Content-Length, no hop-by-hop
field. For those, the general machinery (:class:`~podnet.proxy.http1.Connection`,
events, :func:`~podnet.proxy.http1.forward_request`, ...) does a lot of work to
end up copying field lines and appending four. This module does only that.

It is a *recognizer*, never a second parser with opinions: it accepts a
strict subset of what the core accepts (it uses the core's own regular
expressions and limits, and refuses everything it does not fully check), and
for what it accepts it returns exactly the bytes the core would have sent
(``tests/unit/test_proxy_fast.py`` checks both properties). Anything else --
including every malformed or ambiguous message, so every smuggling defence --
returns None and goes the general way. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import re
from typing import Final

from podnet.proxy.forwarding import HOP_BY_HOP
from podnet.proxy.framing import _HOST_RE, MAX_CONTENT_LENGTH_DIGITS
from podnet.proxy.head import _REQUEST_LINE_RE, _STATUS_LINE_RE, Limits
from podnet.proxy.headers import _FIELD_LINE_RE, _VALUE, TOKEN, Pair, split_list
from podnet.proxy.serialize import reason_phrase

__all__ = [
    "MAX_BODY",
    "NEED_MORE",
    "SimpleRequest",
    "SimpleResponse",
    "parse_simple_request",
    "parse_simple_response",
]

#: Largest response body answered in one write; larger ones are streamed by the core.
MAX_BODY: Final = 64 * 1024
#: Largest head the recognizer looks at (well inside every Limits default).
_MAX_HEAD: Final = 8 * 1024
#: parse_simple_response: the head is fine, the body has not fully arrived.
NEED_MORE: Final = 0

_FRAMING_LIKE = frozenset(
    {b"content-length", b"transfer-encoding", b"content_length", b"transfer_encoding"}
)
#: Request fields the core would act on (drop, re-create, interpret): their presence means
#: "not simple". Host and Content-Length are checked apart.
_REQUEST_SPECIAL = (
    HOP_BY_HOP
    | {b"transfer-encoding", b"content_length", b"transfer_encoding"}
    | {b"expect", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
)
#: Response fields the core would act on, except Content-Length (checked apart).
_RESPONSE_SPECIAL = HOP_BY_HOP | {b"transfer-encoding", b"content_length", b"transfer_encoding"}
#: Special fields a simple message may still have, which the core only drops: a Connection
#: field of ``keep-alive`` tokens (what HTTP/1.1 means anyway) and Keep-Alive.
_KEEP_ALIVE_FIELDS = frozenset({b"connection", b"keep-alive"})

#: Field lines exactly as the core writes them ("Name: value", no other whitespace), so
#: that a head made of them can be forwarded as it is.
_CANONICAL_FIELDS = rb"((?:" + TOKEN + rb": " + _VALUE + rb"\r\n)*+)"
_CANONICAL_REQUEST_RE = re.compile(
    b"(" + TOKEN + rb") (/[\x21\x22\x24-\x7e]*+) HTTP/1\.1\r\n" + _CANONICAL_FIELDS + rb"\r\n"
)
_CANONICAL_RESPONSE_RE = re.compile(
    rb"HTTP/1\.1 ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*+))?\r\n" + _CANONICAL_FIELDS + rb"\r\n"
)


def _names_re(names: frozenset[bytes]) -> re.Pattern[bytes]:
    """Finds a field line with one of ``names`` in a lower-cased block that starts with
    the LF before its first line (a literal first byte: the fastest scan ``re`` has)."""
    alternatives = b"|".join(re.escape(name) for name in sorted(names))
    return re.compile(rb"\n(?:" + alternatives + rb"):")


_NOT_SIMPLE_METHODS = frozenset({b"HEAD", b"CONNECT"})
_NO_BODY_STATUSES = frozenset({204, 304})
_REQUEST_SPECIAL_RE = _names_re(_REQUEST_SPECIAL)
_RESPONSE_SPECIAL_RE = _names_re(_RESPONSE_SPECIAL)
_HOST_LINE_RE = re.compile(rb"\nhost: ([^\r]*+)\r")
_CONTENT_LENGTH_LINE_RE = re.compile(rb"\ncontent-length: ([^\r]*+)\r")
_CL = b"content-length"
_VIA_11 = b"Via: 1.1 podnet\r\n"
_CLOSE_END = b"Connection: close\r\n\r\n"


class SimpleRequest:
    """A boring request head (see module docstring), as parsed by the recognizer."""

    __slots__ = ("_fields", "body", "head", "host", "method", "raw", "target")

    def __init__(
        self, *, raw: bytes, head: bytes, method: bytes, target: bytes, host: bytes, body: bytes
    ) -> None:
        self.raw = raw  # as received
        self.head = head  # request line and field lines as the core writes them, sans CRLF
        self.method = method
        self.target = target
        self.host = host
        self.body = body  # all of it (Content-Length), often b""
        self._fields: tuple[list[Pair], list[bytes]] | None = None

    def fields(self) -> tuple[list[Pair], list[bytes]]:
        """The field lines as received (name, value) and their lower-case names."""
        if self._fields is None:
            raw = self.raw
            start, end = raw.find(b"\r\n") + 2, len(raw) - len(self.body) - 2
            pairs: list[Pair] = _FIELD_LINE_RE.findall(raw, start, end)
            self._fields = (pairs, [name.lower() for name, _ in pairs])
        return self._fields

    def forwarded(self, client: bytes) -> bytes:
        """The head :func:`~podnet.proxy.http1.forward_request` + the upstream
        connection would send for this request from ``client`` (a valid field value)."""
        return (
            b"%bX-Forwarded-For: %b\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: %b\r\n"
            b"Via: 1.1 podnet\r\n\r\n%b" % (self.head, client, self.host, self.body)
        )


def parse_simple_request(data: bytes, limits: Limits) -> SimpleRequest | None:
    """``data`` as a boring request, or None (then the general path must handle it).

    ``data`` must be one whole read: a head, then exactly the body its
    Content-Length announces (none without one), and nothing else.
    """
    match = _CANONICAL_REQUEST_RE.match(data)
    if match is None:  # not as the core writes it: take it apart field by field
        return _parse_request_fields(data, limits)
    method, target = match.group(1, 2)
    start, end = match.start(3), match.end() - 2
    if (
        end > _MAX_HEAD
        or end > limits.max_head
        or method in _NOT_SIMPLE_METHODS
        or start - 2 > limits.max_request_line
        or data.count(b"\n", start, end) > limits.max_fields
    ):
        return None
    lowered = data[start - 1 : end].lower()  # the field lines, after the LF before them
    if _REQUEST_SPECIAL_RE.search(lowered) is not None:
        return _parse_request_fields(data, limits)  # it decides, and drops what it may
    found = _HOST_LINE_RE.search(lowered)
    if found is None or _HOST_LINE_RE.search(lowered, found.end()) is not None:
        return None
    host = data[start - 1 + found.start(1) : start - 1 + found.end(1)]
    if not _HOST_RE.fullmatch(host) or not _body_fits(
        _CONTENT_LENGTH_LINE_RE.findall(lowered), data, end + 2
    ):
        return None
    head, body = data[:end], data[end + 2 :]
    return SimpleRequest(raw=data, head=head, method=method, target=target, host=host, body=body)


def _body_fits(lengths: list[bytes], data: bytes, body_start: int) -> bool:
    """The Content-Length values of a request (none or one) match the body after its head."""
    size = len(data) - body_start
    if not lengths:
        return size == 0
    return len(lengths) == 1 and _length(lengths[0]) == size and size <= MAX_BODY


def _parse_request_fields(data: bytes, limits: Limits) -> SimpleRequest | None:
    """parse_simple_request for heads with extra whitespace: every field line rebuilt."""
    body_start = data.find(b"\r\n\r\n") + 4
    if body_start < 4 or body_start > _MAX_HEAD or body_start > limits.max_head:
        return None
    line_end = data.find(b"\r\n")
    if line_end > limits.max_request_line:
        return None
    match = _REQUEST_LINE_RE.fullmatch(data, 0, line_end)
    if match is None:
        return None
    method, target, minor = match.groups()
    if minor != b"1" or target[0] != 47 or method in _NOT_SIMPLE_METHODS:
        return None
    fields = _fields(data, line_end + 2, body_start - 2, limits, _REQUEST_SPECIAL)
    if fields is None:
        return None
    pairs, names = fields
    if names.count(b"host") != 1:
        return None
    host = pairs[names.index(b"host")][1]
    lengths = [value for name, (_, value) in zip(names, pairs, strict=True) if name == _CL]
    if not _HOST_RE.fullmatch(host) or not _body_fits(lengths, data, body_start):
        return None
    block = b"".join([name + b": " + value + b"\r\n" for name, value in pairs])
    head = b"%b %b HTTP/1.1\r\n%b" % (method, target, block)
    body = data[body_start:]
    return SimpleRequest(raw=data, head=head, method=method, target=target, host=host, body=body)


class SimpleResponse:
    """A boring, complete response: ``size`` bytes of the buffer, ``head`` for the client."""

    __slots__ = ("body_start", "head", "size", "status")

    def __init__(self, status: int, head: bytes, body_start: int, size: int) -> None:
        self.status = status
        self.head = head  # the head to send, without its final CRLF
        self.body_start = body_start
        self.size = size

    def client_bytes(self, buf: bytes, close: bool) -> bytes:
        """What the client gets: the forwarded head, then the body (one write)."""
        end = _CLOSE_END if close else b"\r\n"
        if self.body_start == self.size:
            return self.head + end
        return b"%b%b%b" % (self.head, end, buf[self.body_start : self.size])


def parse_simple_response(buf: bytes, limits: Limits) -> SimpleResponse | int | None:
    """The upstream's answer (to a :class:`SimpleRequest`) in ``buf`` as a boring response.

    Returns:
        A :class:`SimpleResponse` when it is complete and exactly fills ``buf``;
        :data:`NEED_MORE` when its head is boring and its body is still coming;
        None otherwise (not boring, too large, a partial head, bytes after it):
        the general path takes over with the same bytes.
    """
    match = _CANONICAL_RESPONSE_RE.match(buf)
    if match is None:  # not as the core writes it: take it apart field by field
        return _parse_response_fields(buf, limits)
    status_text, reason = match.group(1, 2)
    status = int(status_text)
    start, body_start = match.start(3), match.end()
    end = body_start - 2
    if (
        not 200 <= status < 500
        or status in _NO_BODY_STATUSES
        or body_start > _MAX_HEAD
        or end > limits.max_head
        or start - 2 > limits.max_request_line
        or buf.count(b"\n", start, end) > limits.max_fields
    ):
        return None
    lowered = buf[start - 1 : end].lower()  # the field lines, after the LF before them
    if _RESPONSE_SPECIAL_RE.search(lowered) is not None:
        return _parse_response_fields(buf, limits)  # it decides, and drops what it may
    lengths = _CONTENT_LENGTH_LINE_RE.findall(lowered)
    if len(lengths) != 1:
        return None
    length = _length(lengths[0])
    size = body_start + length
    if length < 0 or length > MAX_BODY or len(buf) > size:
        return None
    if len(buf) < size:
        return NEED_MORE
    if reason:
        head = buf[:end] + _VIA_11
    else:
        phrase = reason_phrase(status)
        head = b"HTTP/1.1 %d %b\r\n%b%b" % (status, phrase, buf[start:end], _VIA_11)
    return SimpleResponse(status, head, body_start, size)


def _fields(
    buf: bytes, start: int, end: int, limits: Limits, special: frozenset[bytes]
) -> tuple[list[Pair], list[bytes]] | None:
    """The field lines in ``buf[start:end]`` and their lower-case names; None
    when any line is not a plain field (the general path then decides) or a
    ``special`` field other than ``Connection: keep-alive`` is present."""
    pairs: list[Pair] = _FIELD_LINE_RE.findall(buf, start, end)
    if len(pairs) != buf.count(b"\n", start, end) or len(pairs) > limits.max_fields:
        return None
    names = [name.lower() for name, _ in pairs]
    if special.isdisjoint(names):
        return pairs, names
    return _without_keep_alive(pairs, names, special)


def _without_keep_alive(
    pairs: list[Pair], names: list[bytes], special: frozenset[bytes]
) -> tuple[list[Pair], list[bytes]] | None:
    """The fields without Connection and Keep-Alive when those are the only special ones
    and Connection holds nothing but ``keep-alive`` (as the core then forwards them);
    None when another special field is present."""
    found = special.intersection(names)
    if not found <= _KEEP_ALIVE_FIELDS:
        return None
    if b"connection" in found:
        values = [
            value for name, (_, value) in zip(names, pairs, strict=True) if name == b"connection"
        ]
        if any(token != b"keep-alive" for token in split_list(values)):
            return None
    kept = [i for i, name in enumerate(names) if name not in _KEEP_ALIVE_FIELDS]
    return [pairs[i] for i in kept], [names[i] for i in kept]


def _length(text: bytes) -> int:
    """A Content-Length value as the core accepts it, or -1."""
    if not text.isdigit() or len(text) > MAX_CONTENT_LENGTH_DIGITS:
        return -1
    return int(text)


def _parse_response_fields(buf: bytes, limits: Limits) -> SimpleResponse | int | None:
    """parse_simple_response for heads with extra whitespace: every field line rebuilt."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0 or head_end > _MAX_HEAD or head_end > limits.max_head:
        return None
    line_end = buf.find(b"\r\n")
    if line_end > limits.max_request_line:
        return None
    match = _STATUS_LINE_RE.fullmatch(buf, 0, line_end)
    if match is None:
        return None
    minor, status_text, reason = match.groups()
    status = int(status_text)
    if minor != b"1" or not 200 <= status < 500 or status in _NO_BODY_STATUSES:
        return None
    fields = _fields(buf, line_end + 2, head_end + 2, limits, _RESPONSE_SPECIAL)
    if fields is None:
        return None
    pairs, names = fields
    if names.count(b"content-length") != 1:
        return None
    length = _length(pairs[names.index(b"content-length")][1])
    body_start = head_end + 4
    size = body_start + length
    if length < 0 or length > MAX_BODY or len(buf) > size:
        return None
    if len(buf) < size:
        return NEED_MORE
    block = b"".join([name + b": " + value + b"\r\n" for name, value in pairs])
    phrase = reason or reason_phrase(status)
    head = b"HTTP/1.1 %d %b\r\n%b%b" % (status, phrase, block, _VIA_11)
    return SimpleResponse(status, head, body_start, size)
