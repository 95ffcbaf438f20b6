"""The admin listener: ``GET /metrics`` (Prometheus text 0.0.4) and ``GET /healthz``.

Served by the same sans-I/O HTTP/1.1 core as the proxy, one answer per
connection (``Connection: close``): scrapers open a connection per scrape,
and nothing here is on the request path. ``/healthz`` answers 200 ``ok``
once a snapshot is loaded and 503 before that, or while draining.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, cast

from podnet.proxy.errors import ProtocolError
from podnet.proxy.http1 import (
    Connection,
    Data,
    EndOfMessage,
    Headers,
    Request,
    Response,
    Role,
    error_response,
)

if TYPE_CHECKING:
    from podnet.proxy.engine import Engine

__all__ = ["AdminProtocol", "serve_admin"]

_PROMETHEUS: Final = b"text/plain; version=0.0.4; charset=utf-8"
_TEXT: Final = b"text/plain; charset=utf-8"


class AdminProtocol(asyncio.Protocol):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn = Connection(Role.SERVER)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as error:
            self.transport.write(error_response(error))
            self.transport.close()
            return
        for event in events:
            if isinstance(event, Request):
                self.answer(event)
                return

    def answer(self, request: Request) -> None:
        assert self.transport is not None
        path = request.target.partition(b"?")[0]
        engine = self.engine
        if request.method not in (b"GET", b"HEAD"):
            status, ctype, body = 405, _TEXT, b"method not allowed\n"
        elif path == b"/metrics":
            status, ctype, body = 200, _PROMETHEUS, engine.metrics.render(engine.gauges())
        elif path == b"/healthz":
            ready = engine.router is not None and not engine.draining
            status, ctype = (200 if ready else 503), _TEXT
            body = b"ok\n" if ready else b"not ready\n"
        else:
            status, ctype, body = 404, _TEXT, b"not found\n"
        head = Response(
            status,
            b"",
            Headers(
                [
                    (b"Content-Type", ctype),
                    (b"Content-Length", b"%d" % len(body)),
                    (b"Connection", b"close"),
                ]
            ),
        )
        conn = self.conn
        try:
            out = conn.send(head)
            if request.method != b"HEAD":
                out += conn.send(Data(body))
            out += conn.send(EndOfMessage())
        except ProtocolError:
            self.transport.abort()
            return
        self.transport.write(out)
        self.transport.close()


async def serve_admin(
    engine: Engine, host: str, port: int, *, reuse_port: bool = False
) -> asyncio.Server:
    """Listen for admin requests on ``host:port``."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: AdminProtocol(engine), host, port, reuse_port=reuse_port or None
    )
