"""Message framing: where a body ends, and whether the connection lives on.

This is the security core of the proxy. A request smuggling attack needs two
HTTP parsers that disagree on where a message ends; the proxy refuses every
message whose framing is not unambiguous under RFC 9112 §6, and it re-frames
what it forwards (the upstream never sees the client's framing headers).

Body length (RFC 9112 §6.3), in order:

1. responses to HEAD, and 1xx, 204 and 304 responses have no body;
2. a 2xx response to CONNECT has no body: the connection becomes a tunnel;
3. Transfer-Encoding and Content-Length together are refused;
4. Transfer-Encoding: the only coding podnet implements is ``chunked``, alone
   (like Go's net/http). A list whose final coding is not chunked is a 400
   (``xchunked``, ``chunked, identity``); chunked applied twice (also from
   duplicate field lines) is a 400; another coding before chunked
   (``gzip, chunked``) is a 501. Transfer-Encoding in an HTTP/1.0 message is
   a 400 (RFC 9112 §6.1: its framing is faulty);
5. Content-Length: exactly one field line holding 1 to 18 ASCII digits.
   Lists (``5, 6``), repeats (even identical ones, ``5, 5`` or two lines --
   podnet refuses rather than collapses, like nginx), signs, spaces inside and
   values of 10**18 or more are a 400;
6. otherwise a request has no body and a response runs until the server
   closes the connection.

``Content_Length`` and ``Transfer_Encoding`` are refused too (400): they are
valid field names, but servers that map ``_`` to ``-`` (CGI-style gateways)
would take them as framing the proxy did not see.

Errors here carry the client-facing status (400/501); for a response from an
upstream, :class:`~podnet.proxy.http1.Connection` turns them into a 502.

Keep-alive (RFC 9112 §9.3): HTTP/1.1 persists unless ``Connection: close``;
HTTP/1.0 persists only with ``Connection: keep-alive`` (and no ``close``); a
response delimited by close cannot persist.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from podnet.proxy.errors import RemoteProtocolError
from podnet.proxy.headers import Headers, split_list

__all__ = [
    "CHUNKED",
    "NO_BODY",
    "UNTIL_CLOSE",
    "Body",
    "Facts",
    "Framing",
    "request_facts",
    "response_facts",
]

MAX_CONTENT_LENGTH_DIGITS = 18
_HOST_RE = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[-A-Za-z0-9._~!$&'()*+,;=%]*)(?::[0-9]*)?",
)
_LOOKALIKES = frozenset({b"content_length", b"transfer_encoding"})
_FRAMING = frozenset({b"content-length", b"transfer-encoding"}) | _LOOKALIKES
_SPECIAL = frozenset({b"host", b"connection", b"upgrade", b"expect"}) | _FRAMING
_NO_BODY_STATUSES = frozenset({204, 304})
_NO_TOKENS: tuple[bytes, ...] = ()


class Body(enum.StrEnum):
    """How the end of a body is found."""

    LENGTH = "length"  # a byte count, possibly 0
    CHUNKED = "chunked"  # chunked transfer coding
    UNTIL_CLOSE = "until-close"  # responses only: the server closes


@dataclass(slots=True)
class Framing:
    """A body framing decision; ``length`` is meaningful for Body.LENGTH.

    Treat as immutable (not frozen only because frozen dataclasses are slow to build).
    """

    body: Body
    length: int = 0


NO_BODY = Framing(Body.LENGTH, 0)
CHUNKED = Framing(Body.CHUNKED)
UNTIL_CLOSE = Framing(Body.UNTIL_CLOSE)


@dataclass(slots=True)
class Facts:
    """What the framing core derived from a message head (treat as immutable).

    Attributes:
        framing: where the body ends.
        keep_alive: this message allows the connection to persist.
        upgrade: the Upgrade field of a request proposing a protocol switch
            (``Connection: upgrade`` + ``Upgrade``, HTTP/1.1), or of a 101.
        expect_continue: the request carries ``Expect: 100-continue``.
        host: the Host field of a request, None when absent (HTTP/1.0).
    """

    framing: Framing
    keep_alive: bool
    upgrade: bytes | None = None
    expect_continue: bool = False
    host: bytes | None = None


def request_facts(method: bytes, version: bytes, headers: Headers) -> Facts:
    """Decide framing and connection handling for a request head.

    Raises:
        RemoteProtocolError: 400 for ambiguous or malformed framing, Host
            problems; 501 for a transfer coding podnet does not implement.
    """
    found = headers.select(_SPECIAL)
    tokens = _connection_tokens(found)
    http11 = version == b"1.1"
    return Facts(
        NO_BODY if _FRAMING.isdisjoint(found) else _framing(found, http11),
        _keep_alive(http11, tokens),
        _upgrade(found, tokens) if http11 and b"upgrade" in found else None,
        http11 and b"expect" in found and _expects_continue(found),
        _host(found, http11),
    )


def response_facts(status: int, version: bytes, headers: Headers, request_method: bytes) -> Facts:
    """Decide framing and connection handling for a response head.

    Args:
        request_method: the method of the request this response answers.

    Raises:
        RemoteProtocolError: with a client-facing status (400/501); the
            connection maps it to 502.
    """
    found = headers.select(_SPECIAL)
    tokens = _connection_tokens(found)
    http11 = version == b"1.1"
    framing = _framing(found, http11)  # validated even when ignored below
    tunnel = request_method == b"CONNECT" and 200 <= status < 300
    if request_method == b"HEAD" or status < 200 or status in _NO_BODY_STATUSES or tunnel:
        framing = NO_BODY
    elif framing is NO_BODY and b"content-length" not in found:
        framing = UNTIL_CLOSE
    keep_alive = framing is not UNTIL_CLOSE and _keep_alive(http11, tokens)
    upgrade = _upgrade(found, tokens) if status == 101 else None
    return Facts(framing, keep_alive, upgrade)


def _framing(found: dict[bytes, list[bytes]], http11: bool) -> Framing:
    if not _LOOKALIKES.isdisjoint(found):
        raise RemoteProtocolError(
            "framing header spelt with '_' (Content_Length/Transfer_Encoding)"
        )
    codings = found.get(b"transfer-encoding")
    lengths = found.get(b"content-length")
    if codings is None:
        return NO_BODY if lengths is None else Framing(Body.LENGTH, _content_length(lengths))
    if lengths is not None:
        raise RemoteProtocolError("both Transfer-Encoding and Content-Length")
    if not http11:
        raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 message")
    return _transfer_coding(codings)


def _content_length(values: list[bytes]) -> int:
    if len(values) != 1:
        raise RemoteProtocolError("more than one Content-Length field")
    value = values[0]
    if not value.isdigit() or len(value) > MAX_CONTENT_LENGTH_DIGITS:
        raise RemoteProtocolError(f"invalid Content-Length {value[:40]!r}")
    return int(value)


def _transfer_coding(values: list[bytes]) -> Framing:
    codings = split_list(values)
    if codings == [b"chunked"]:
        return CHUNKED
    if not codings or codings[-1] != b"chunked":
        raise RemoteProtocolError(f"final transfer coding is not chunked: {values!r}")
    if codings.count(b"chunked") > 1:
        raise RemoteProtocolError("chunked transfer coding applied more than once")
    raise RemoteProtocolError(f"transfer coding not implemented: {values!r}", status=501)


def _connection_tokens(found: dict[bytes, list[bytes]]) -> Sequence[bytes]:
    values = found.get(b"connection")
    return _NO_TOKENS if values is None else split_list(values)


def _keep_alive(http11: bool, tokens: Sequence[bytes]) -> bool:
    if b"close" in tokens:
        return False
    return http11 or b"keep-alive" in tokens


def _upgrade(found: dict[bytes, list[bytes]], tokens: Sequence[bytes]) -> bytes | None:
    upgrade = found.get(b"upgrade")
    if upgrade is None or b"upgrade" not in tokens:
        return None
    return b", ".join(upgrade)


def _expects_continue(found: dict[bytes, list[bytes]]) -> bool:
    return b"100-continue" in split_list(found[b"expect"])


def _host(found: dict[bytes, list[bytes]], http11: bool) -> bytes | None:
    hosts = found.get(b"host")
    if hosts is None:
        if http11:
            raise RemoteProtocolError("HTTP/1.1 request without Host")
        return None
    if len(hosts) > 1:
        raise RemoteProtocolError("more than one Host field")
    if not _HOST_RE.fullmatch(hosts[0]):
        raise RemoteProtocolError(f"invalid Host {hosts[0][:60]!r}")
    return hosts[0]
