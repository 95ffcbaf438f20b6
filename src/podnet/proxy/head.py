"""Message heads: the request line, the status line, limits and line endings.

A head is the start line and the field lines, each ending in CRLF, then an
empty line. The connection finds the empty line (``CRLF CRLF``) and hands the
bytes before it, including the last CRLF, to :func:`parse_request_head` or
:func:`parse_response_head`; until then :func:`check_partial_head` fails fast
on a head that can never become valid.

Decisions (RFC 9112 §2-§4):

* **Bare LF** is rejected everywhere in a head (400), as are bare CR and other
  control characters. RFC 9112 §2.2 lets a recipient accept LF alone, but a
  proxy that does while its upstream does not (or the reverse) is a smuggling
  vector, and no conforming client sends one.
* Empty lines (CRLF) before a request line are skipped (§2.2 robustness);
  they arrive after bodies from some old clients.
* Request line: ``method SP target SP HTTP/x.y`` with single spaces; the method
  is a token (case-sensitive, unknown methods pass); the target is visible
  ASCII without ``#`` and in the form its method allows (origin-form
  ``/...``, absolute-form ``scheme://...``, authority-form for CONNECT, ``*``
  for OPTIONS). Anything else is 400.
* Versions: HTTP/1.0 and HTTP/1.1; later 1.x minors are handled and reported
  as 1.1 (RFC 9110 §2.5); another well-formed major is 505; a malformed
  version is 400.
* Status line: ``HTTP/x.y SP 3DIGIT SP reason``; an absent ``SP reason`` is
  accepted (common and harmless).
* Limits: a request line over ``max_request_line`` is 414; a head over
  ``max_head`` bytes or with more than ``max_fields`` fields is 431.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from podnet.proxy.errors import RemoteProtocolError
from podnet.proxy.events import Request, Response
from podnet.proxy.framing import Facts, request_facts, response_facts
from podnet.proxy.headers import TOKEN, parse_fields

__all__ = [
    "Limits",
    "check_partial_head",
    "parse_request_head",
    "parse_response_head",
]

Buffer = bytes | bytearray

# Fast path: HTTP/1.x, target without '#'. Anything else is explained by _diagnose_*.
_REQUEST_LINE_RE = re.compile(b"(" + TOKEN + rb") ([\x21\x22\x24-\x7e]++) HTTP/1\.([0-9])")
_STATUS_LINE_RE = re.compile(rb"HTTP/1\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*+))?")
_ANY_VERSION_RE = re.compile(rb"HTTP/([0-9])\.[0-9]")
_ABSOLUTE_RE = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[\x21-\x7e]*")
_AUTHORITY_RE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[-A-Za-z0-9._~!$&'()*+,;=%]+):[0-9]+")
_BARE_LF_RE = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of what a connection buffers (bytes unless stated)."""

    max_request_line: int = 8 * 1024  # longer request line: 414
    max_head: int = 32 * 1024  # longer head (start line + fields): 431
    max_fields: int = 100  # more field lines in a head or trailer: 431
    max_chunk_line: int = 4 * 1024  # longer chunk-size line: 400
    max_buffer: int = 1024 * 1024  # bytes held while the peer must wait: error


def parse_request_head(buf: Buffer, start: int, end: int, limits: Limits) -> tuple[Request, Facts]:
    """Parse ``buf[start:end]``: a request line and field lines, each with CRLF.

    Returns:
        The request and the facts derived from it (also in ``request.facts``).

    Raises:
        RemoteProtocolError: 400, 414, 431, 501 or 505 (see module docstring).
    """
    line_end = buf.find(b"\r\n", start, end)
    if line_end - start > limits.max_request_line:
        raise RemoteProtocolError("request line too long", status=414)
    if end - start > limits.max_head + 2:
        raise RemoteProtocolError("header section too large", status=431)
    match = _REQUEST_LINE_RE.fullmatch(buf, start, line_end)
    if match is None:
        _diagnose_request_line(bytes(buf[start:line_end]))
    method, target, minor = match.groups()
    if target[0] != 47 or method == b"CONNECT":  # not origin-form ("/...")
        _check_target(method, target)
    version = b"1.0" if minor == b"0" else b"1.1"
    headers = parse_fields(buf, line_end + 2, end, max_fields=limits.max_fields)
    facts = request_facts(method, version, headers)
    return Request(method, target, version, headers, facts), facts


def parse_response_head(
    buf: Buffer, start: int, end: int, limits: Limits, request_method: bytes
) -> tuple[Response, Facts]:
    """Parse ``buf[start:end]``: a status line and field lines, each with CRLF.

    Raises:
        RemoteProtocolError: with a client-facing status; the connection maps
            every error from an upstream to 502.
    """
    line_end = buf.find(b"\r\n", start, end)
    if line_end - start > limits.max_request_line or end - start > limits.max_head + 2:
        raise RemoteProtocolError("response head too large", status=431)
    match = _STATUS_LINE_RE.fullmatch(buf, start, line_end)
    if match is None:
        _diagnose_status_line(bytes(buf[start:line_end]))
    minor, status_text, reason = match.groups()
    status = int(status_text)
    if status < 100:
        raise RemoteProtocolError(f"invalid status code {status}")
    version = b"1.0" if minor == b"0" else b"1.1"
    headers = parse_fields(buf, line_end + 2, end, max_fields=limits.max_fields)
    facts = response_facts(status, version, headers, request_method)
    return Response(status, reason or b"", headers, version, facts), facts


def check_partial_head(
    buf: Buffer, start: int, scan_from: int, limits: Limits, *, start_line: bool = True
) -> None:
    """Fail fast on an unterminated head ``buf[start:]`` that cannot become valid.

    ``scan_from`` is where bytes not yet checked begin, so that a head fed a
    byte at a time costs linear, not quadratic, time. ``start_line`` False is
    for a trailer section, which has none.

    Raises:
        RemoteProtocolError: 400 for a bare LF, 414 for an over-long first
            line, 431 for an over-long head.
    """
    if _BARE_LF_RE.search(buf, max(start + 1, scan_from - 1)) or buf[start : start + 1] == b"\n":
        raise RemoteProtocolError("bare LF in message head")
    size, line_limit = len(buf) - start, limits.max_request_line + 2
    # The first line is looked at once, when the bytes first pass its limit.
    first_pass = start_line and size > line_limit >= scan_from - start
    if first_pass and buf.find(b"\r\n", start, start + line_limit) < 0:
        raise RemoteProtocolError("request line too long", status=414)
    if size > limits.max_head + 4:
        raise RemoteProtocolError("header section too large", status=431)


def _diagnose_request_line(line: bytes) -> NoReturn:
    parts = line.split(b" ")
    if len(parts) == 3 and b"#" in parts[1]:
        raise RemoteProtocolError("fragment in request target")
    _check_version(parts[-1])
    raise RemoteProtocolError(f"malformed request line {line[:80]!r}")


def _diagnose_status_line(line: bytes) -> NoReturn:
    _check_version(line.split(b" ", 1)[0])
    raise RemoteProtocolError(f"malformed status line {line[:80]!r}")


def _check_version(text: bytes) -> None:
    match = _ANY_VERSION_RE.fullmatch(text)
    if match and match[1] != b"1":
        raise RemoteProtocolError(f"HTTP version {text!r} not supported", status=505)


def _check_target(method: bytes, target: bytes) -> None:
    if method == b"CONNECT":
        if not _AUTHORITY_RE.fullmatch(target):
            raise RemoteProtocolError(f"CONNECT target is not host:port: {target[:80]!r}")
        return
    if _ABSOLUTE_RE.fullmatch(target):
        return
    if target == b"*" and method == b"OPTIONS":
        return
    raise RemoteProtocolError(f"invalid request target {target[:80]!r}")
