"""The fast lane in a running engine: boring exchanges stay in it, everything else is
handed over to the general path at the point reached, and the client cannot tell.

One in-process Engine on 127.0.0.1 in front of a scripted backend (a raw asyncio
server whose answer depends on the request path); ``Engine.fast_lane`` counts the
exchanges the fast lane completed itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from podnet.model.route import (
    BackendRef,
    ResolvedBackend,
    ResolvedRoute,
    RetryPolicy,
    RouteSpec,
    Snapshot,
    SnapshotEndpoint,
    Timeouts,
)
from podnet.proxy.engine import Engine

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


class Backend:
    """Answers by path: /ok, /chunked, /split (head and body in two writes),
    /close-once (the first time: close without answering), /slow (never answers)."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.closed_once = False
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b"Content-Length: " in head:
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    head += await reader.readexactly(length)
                self.heads.append(head)
                path = head.split(b" ", 2)[1]
                if path == b"/close-once" and not self.closed_once:
                    self.closed_once = True
                    return
                if path == b"/slow":
                    await asyncio.sleep(5)
                if path == b"/chunked":
                    writer.write(CHUNKED)
                elif path == b"/split":
                    writer.write(OK[:-2])
                    await writer.drain()
                    await asyncio.sleep(0.02)
                    writer.write(OK[-2:])
                else:
                    writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def snapshot(port: int, per_try: float = 5.0) -> Snapshot:
    ref = BackendRef(name="web", service="web")
    spec = RouteSpec(
        name="r",
        backends=(ref,),
        timeouts=Timeouts(per_try=per_try),
        retries=RetryPolicy(attempts=2, backoff_base=0.001, backoff_max=0.002),
    ).validate()
    endpoints = (SnapshotEndpoint("127.0.0.1", port),)
    return Snapshot(
        proxy="t", version=1, routes=(ResolvedRoute(spec, (ResolvedBackend(ref, endpoints),)),)
    )


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if b"Transfer-Encoding: chunked" in head:
        return head, await reader.readuntil(b"0\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    return head, await reader.readexactly(length)


def run(
    test: Callable[[asyncio.StreamReader, asyncio.StreamWriter, Backend], Awaitable[None]],
    per_try: float = 5.0,
) -> int:
    """Run ``test`` with a client connection to a proxy; return the fast-lane completions."""
    completed = 0

    async def main() -> None:
        nonlocal completed
        backend = Backend()
        server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
        engine = Engine()
        engine.swap(snapshot(server.sockets[0].getsockname()[1], per_try))
        bound = await engine.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", int(bound[0].split(":")[1]))
        try:
            async with asyncio.timeout(10):
                await test(reader, writer, backend)
        finally:
            completed = engine.fast_lane
            writer.close()
            await engine.close()
            server.close()

    asyncio.run(main())
    return completed


def get(path: bytes) -> bytes:
    return b"GET %b HTTP/1.1\r\nHost: shop\r\n\r\n" % path


def test_pooled_boring_exchanges_stay_in_the_fast_lane() -> None:
    async def test(r: asyncio.StreamReader, w: asyncio.StreamWriter, backend: Backend) -> None:
        for _ in range(3):
            w.write(get(b"/ok"))
            head, body = await read_response(r)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Via: 1.1 podnet\r\n" in head
            assert body == b"ok"
        assert backend.connections == 1
        assert all(b"X-Forwarded-For: 127.0.0.1\r\n" in h for h in backend.heads)

    assert run(test) == 2  # the first one needed a new connection


def test_chunked_and_split_answers_are_handed_over_mid_response() -> None:
    async def test(r: asyncio.StreamReader, w: asyncio.StreamWriter, backend: Backend) -> None:
        for path in (b"/ok", b"/chunked", b"/split", b"/ok"):
            w.write(get(path))
            head, body = await read_response(r)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert body == (b"3\r\nabc\r\n0\r\n\r\n" if path == b"/chunked" else b"ok")
        assert backend.connections == 1  # the handed-over exchanges kept the connection

    assert run(test) == 2  # /split's body came in a second read: the fast lane waits


def test_a_pooled_connection_closed_by_the_backend_is_retried() -> None:
    async def test(r: asyncio.StreamReader, w: asyncio.StreamWriter, backend: Backend) -> None:
        for path in (b"/ok", b"/close-once", b"/ok"):
            w.write(get(path))
            head, body = await read_response(r)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"ok", path

    assert run(test) == 1


def test_the_per_try_timeout_applies_in_the_fast_lane() -> None:
    async def test(r: asyncio.StreamReader, w: asyncio.StreamWriter, backend: Backend) -> None:
        w.write(get(b"/ok"))
        await read_response(r)
        loop = asyncio.get_running_loop()
        began = loop.time()
        w.write(get(b"/slow"))
        head, _ = await read_response(r)
        assert head.startswith(b"HTTP/1.1 504 ")
        assert loop.time() - began < 2.0  # two tries of 0.2 s, not the backend's 5 s

    run(test, per_try=0.2)


def test_a_request_pipelined_behind_a_fast_one_is_answered_in_order() -> None:
    async def test(r: asyncio.StreamReader, w: asyncio.StreamWriter, backend: Backend) -> None:
        w.write(get(b"/ok"))
        await read_response(r)
        w.write(get(b"/split"))
        await asyncio.sleep(0.005)  # /split is in the fast lane, waiting for its body
        w.write(get(b"/chunked"))
        _, body = await read_response(r)
        assert body == b"ok"
        _, body = await read_response(r)
        assert body == b"3\r\nabc\r\n0\r\n\r\n"

    run(test)


def test_a_small_request_body_rides_along_and_is_handed_over_with_its_request() -> None:
    async def test(r: asyncio.StreamReader, w: asyncio.StreamWriter, backend: Backend) -> None:
        for path in (b"/ok", b"/ok", b"/chunked", b"/ok"):
            w.write(b"POST %b HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello" % path)
            _, body = await read_response(r)
            assert body == (b"3\r\nabc\r\n0\r\n\r\n" if path == b"/chunked" else b"ok")
        assert all(h.endswith(b"\r\n\r\nhello") for h in backend.heads), backend.heads
        assert backend.connections == 1

    assert run(test) == 2  # the first needed a connection; /chunked was handed over


def test_a_small_body_is_replayed_when_the_pooled_connection_was_closed() -> None:
    async def test(r: asyncio.StreamReader, w: asyncio.StreamWriter, backend: Backend) -> None:
        for path in (b"/ok", b"/close-once"):
            w.write(b"PUT %b HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\n\r\nabc" % path)
            head, body = await read_response(r)
            assert head.startswith(b"HTTP/1.1 200 ") and body == b"ok", (path, head)
        assert backend.heads[-1].endswith(b"\r\n\r\nabc")  # the retry carried the body

    run(test)
