"""Message heads to bytes.

Field lines come from a :class:`~podnet.proxy.headers.Headers`, which only
holds valid fields, so only the start line is checked here: a method must be a
token, a target visible ASCII, a reason phrase free of CR/LF. podnet always
speaks HTTP/1.1 (RFC 9110 §2.5: an intermediary sends its own version).
"""

from __future__ import annotations

import re
from http import HTTPStatus

from podnet.proxy.errors import LocalProtocolError, ProtocolError
from podnet.proxy.headers import TOKEN, Headers

__all__ = ["error_response", "reason_phrase", "request_head", "response_head"]

_METHOD_RE = re.compile(TOKEN)
_TARGET_RE = re.compile(rb"[\x21-\x7e]+")
_REASON_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# RFC 9110 renamed a few phrases that Python's http.HTTPStatus (3.11) still spells the old way.
_RFC9110_PHRASES = {413: b"Content Too Large", 414: b"URI Too Long", 422: b"Unprocessable Content"}


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status``, or b"" for an unregistered code."""
    if status in _RFC9110_PHRASES:
        return _RFC9110_PHRASES[status]
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def request_head(method: bytes, target: bytes, headers: Headers) -> bytes:
    """``method SP target SP HTTP/1.1 CRLF fields CRLF``.

    Raises:
        LocalProtocolError: the method is not a token or the target not visible ASCII.
    """
    if not _METHOD_RE.fullmatch(method):
        raise LocalProtocolError(f"invalid method {method!r}")
    if not _TARGET_RE.fullmatch(target):
        raise LocalProtocolError(f"invalid request target {target!r}")
    return b"%b %b HTTP/1.1\r\n%b\r\n" % (method, target, headers.field_block())


def response_head(status: int, reason: bytes, headers: Headers) -> bytes:
    """``HTTP/1.1 SP status SP reason CRLF fields CRLF``; an empty reason gets the standard one.

    Raises:
        LocalProtocolError: the status is not 3 digits or the reason holds control bytes.
    """
    if not 100 <= status <= 999:
        raise LocalProtocolError(f"invalid status code {status}")
    if not _REASON_RE.fullmatch(reason):
        raise LocalProtocolError(f"invalid reason phrase {reason!r}")
    reason = reason or reason_phrase(status)
    return b"HTTP/1.1 %d %b\r\n%b\r\n" % (status, reason, headers.field_block())


def error_response(error: ProtocolError) -> bytes:
    """A complete, closing response for a framing error: what the proxy answers."""
    return b"HTTP/1.1 %d %b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (
        error.status,
        reason_phrase(error.status),
    )
