"""What whoami answers: response bytes for request events, without I/O.

The parts that never change -- the hostname and IP lines, the JSON fields for
them, status lines -- are rendered once. Per connection, the ``RemoteAddr``
line is added once (:meth:`Responder.peer`). Per request only the echo of the
request and the framing headers are built.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate
from http import HTTPStatus
from typing import Final, NamedTuple

from podnet.workload.http1 import Rejected, Request

__all__ = ["CONTINUE", "Peer", "Responder", "is_health", "status_line"]

#: The interim response sent to a client that expects ``100 Continue``.
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

_TEXT: Final = b"text/plain; charset=utf-8"
_JSON: Final = b"application/json"
_KEEP_ALIVE_10: Final = b"Connection: keep-alive\r\n"
_CLOSE: Final = b"Connection: close\r\n"
_OK_LINE: Final = b"HTTP/1.1 200 OK\r\n"
_NO_BODY_STATUS: Final = frozenset({204, 304})
_JSON_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))  # one, not one per dumps()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n`` with the standard reason phrase."""
    return f"HTTP/1.1 {status} {_reason(status)}\r\n".encode("ascii")


def _path(target: bytes) -> bytes:
    """The path of a request target, without the query (absolute form too)."""
    if not target.startswith(b"/"):
        scheme = target.find(b"://")
        if scheme >= 0:
            slash = target.find(b"/", scheme + 3)
            target = target[slash:] if slash >= 0 else b"/"
    query = target.find(b"?")
    return target[:query] if query >= 0 else target


def is_health(request: Request) -> bool:
    """True for ``/health``, which ignores ``--status`` and ``--delay``."""
    return _path(request.target) == b"/health"


class Peer(NamedTuple):
    """Per-connection parts of an answer."""

    remote_addr: str
    text_prefix: bytes


class _HttpDate:
    """The ``Date`` header value, re-rendered at most once a second."""

    __slots__ = ("_clock", "_second", "_value")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(self._clock())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


class Responder:
    """Render whoami answers.

    Args:
        name: the ``Hostname`` reported.
        addresses: the host's interface addresses, reported as ``IP`` lines.
        status: status of every answer except ``/health``.
        clock: wall clock for the ``Date`` header (seconds since the epoch).
    """

    __slots__ = ("_date", "_json_prefix", "_status", "_status_line", "_text_prefix", "requests")

    def __init__(
        self,
        name: str,
        addresses: Sequence[str],
        *,
        status: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        lines = [f"Hostname: {name}\n", *(f"IP: {address}\n" for address in addresses)]
        self._text_prefix = "".join(lines).encode()
        fixed = _JSON_ENCODER.encode({"hostname": name, "ip": list(addresses)})
        self._json_prefix = fixed[:-1].encode() + b","
        self._status = status
        self._status_line = status_line(status)
        self._date = _HttpDate(clock)
        #: Requests answered so far, except ``/health`` and ``/count`` (which reports it).
        self.requests = 0

    def peer(self, remote_addr: str) -> Peer:
        """The per-connection parts for a client at ``remote_addr`` (``ip:port``)."""
        line = f"RemoteAddr: {remote_addr}\n".encode()
        return Peer(remote_addr, self._text_prefix + line)

    def answer(self, request: Request, peer: Peer) -> bytes:
        """The whole response to ``request``: head, and body unless HEAD."""
        path = _path(request.target)
        if path == b"/health":
            return self._frame(_OK_LINE, b"ok\n", _TEXT, request)
        if path == b"/count":
            return self._frame(_OK_LINE, b"%d\n" % self.requests, _TEXT, request)
        self.requests += 1
        if path.startswith(b"/status/"):
            return self._status_answer(path[8:], request)
        if path == b"/upload":
            return self._frame(_OK_LINE, b"%d\n" % request.body_length, _TEXT, request)
        if self._status in _NO_BODY_STATUS:
            return self._frame(self._status_line, None, _TEXT, request)
        if path == b"/api":
            return self._frame(self._status_line, self._json(request, peer), _JSON, request)
        return self._frame(self._status_line, peer.text_prefix + request.head, _TEXT, request)

    def _status_answer(self, code: bytes, request: Request) -> bytes:
        """``/status/NNN``: answer NNN (200-599), with ``NNN\\n`` as body when it may have one."""
        status = int(code) if code.isdigit() and len(code) == 3 else 0
        if not 200 <= status <= 599:
            return self._frame(status_line(400), b"status must be 200-599\n", _TEXT, request)
        body = None if status in _NO_BODY_STATUS else b"%d\n" % status
        return self._frame(status_line(status), body, _TEXT, request)

    def stream_head(self, length: int, request: Request) -> bytes:
        """The head of a ``/bytes/N`` answer (the connection streams the body)."""
        if not request.keep_alive:
            connection = _CLOSE
        elif request.version == b"HTTP/1.0":
            connection = _KEEP_ALIVE_10
        else:
            connection = b""
        fields = b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n" % length
        return b"".join(
            (_OK_LINE, b"Date: ", self._date.get(), b"\r\n", fields, connection, b"\r\n")
        )

    def reject(self, rejected: Rejected) -> bytes:
        """The response to a request that is refused; the connection closes."""
        body = f"{rejected.status} {_reason(rejected.status)}: {rejected.detail}\n".encode()
        fields = b"Content-Type: %s\r\nContent-Length: %d\r\n%s" % (_TEXT, len(body), _CLOSE)
        line = status_line(rejected.status)
        return b"".join((line, b"Date: ", self._date.get(), b"\r\n", fields, b"\r\n", body))

    def _json(self, request: Request, peer: Peer) -> bytes:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        fields = {
            "remote_addr": peer.remote_addr,
            "method": request.method.decode("ascii"),
            "url": request.target.decode("latin-1"),
            "host": request.host.decode("latin-1"),
            "headers": headers,
        }
        dynamic = _JSON_ENCODER.encode(fields).encode()
        return self._json_prefix + dynamic[1:] + b"\n"

    def _frame(self, line: bytes, body: bytes | None, ctype: bytes, request: Request) -> bytes:
        """Status line, headers and body. ``body`` None: a status without content."""
        if not request.keep_alive:
            connection = _CLOSE
        elif request.version == b"HTTP/1.0":
            connection = _KEEP_ALIVE_10
        else:
            connection = b""
        if body is None:
            fields, body = b"", b""
        else:
            fields = b"Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype, len(body))
            if request.method == b"HEAD":
                body = b""
        return b"".join(
            (line, b"Date: ", self._date.get(), b"\r\n", fields, connection, b"\r\n", body)
        )
