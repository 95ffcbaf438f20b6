"""Errors of the HTTP/1.1 framing core.

Every framing problem is one of two kinds, told apart by type:

* :class:`RemoteProtocolError` -- the peer sent bytes that are not acceptable
  HTTP/1.1. ``status`` is the answer the proxy must give: 400, 414, 431, 501
  or 505 when the peer is a client; always 502 when the peer is an upstream
  (the :class:`~podnet.proxy.http1.Connection` rewrites the status at that
  boundary, keeping the message and the original status in ``cause_status``).
* :class:`LocalProtocolError` -- the caller asked to send something that would
  be invalid on the wire (a header value with CR/LF, body bytes past a
  Content-Length, an event the state machine does not allow). It is a bug in
  the proxy, hence status 500.

Both carry ``must_close = True``: after a framing error the byte stream can no
longer be trusted, so the connection is never reused.
"""

from __future__ import annotations

from podnet.errors import PodnetError

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(PodnetError):
    """Base of HTTP/1.1 framing errors.

    Attributes:
        status: the HTTP status the proxy answers with (if it still can).
        must_close: always True; the connection must be closed.
    """

    kind = "http-protocol"
    must_close = True

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.cause_status = status


class RemoteProtocolError(ProtocolError):
    """The peer violated HTTP/1.1 framing; answer ``status`` and close."""

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, status=status, hint=hint)

    def as_upstream_error(self) -> RemoteProtocolError:
        """The same error seen from the client's side: the upstream failed, 502."""
        error = RemoteProtocolError(f"upstream: {self.message}", status=502, hint=self.hint)
        error.cause_status = self.cause_status
        return error


class LocalProtocolError(ProtocolError):
    """The caller tried to send an invalid message or an out-of-order event."""

    def __init__(self, message: str, *, status: int = 500, hint: str | None = None) -> None:
        super().__init__(message, status=status, hint=hint)
