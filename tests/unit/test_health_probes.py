"""podnet.health probes against real servers on loopback (127.0.0.1, ::1)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from podnet.errors import InvalidInput
from podnet.health import TIMEOUT, ProbeResult, probe, socket_connector
from podnet.health.connect import netns_connector, netns_socket_factory
from podnet.health.probe import describe_error, http_request
from podnet.model.service import HealthCheck
from podnet.workload.whoami import WhoamiOptions, WhoamiServer

T = TypeVar("T")
GUARD = 60.0  # a hung test fails instead of hanging; not a timing assertion
LOOPBACK = "127.0.0.1"
TCP = HealthCheck(kind="tcp", interval=5.0, timeout=5.0)
HTTP = HealthCheck(kind="http", path="/health", interval=5.0, timeout=5.0)
ROOT_PATH = HealthCheck(kind="http", path="/", interval=5.0, timeout=5.0)


def run(coro: Awaitable[T]) -> T:
    async def guarded() -> T:
        async with asyncio.timeout(GUARD):
            return await coro

    return asyncio.run(guarded())


@contextlib.asynccontextmanager
async def whoami(status: int = 200, host: str = LOOPBACK) -> AsyncIterator[WhoamiServer]:
    options = WhoamiOptions(host=host, port=0, name="w", status=status, quiet=True)
    async with WhoamiServer(options, addresses=[host]) as server:
        yield server


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    """A loopback server running ``handler`` per connection; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(tracked, LOOPBACK, 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def answering(*chunks: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        await reader.read()  # until the prober closes

    return handle


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 with no listener: connections are refused."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that never accepts: the kernel completes handshakes, nobody answers."""
    with socket.create_server((LOOPBACK, 0), backlog=16) as sock:
        yield sock.getsockname()[1]


# --- whoami ------------------------------------------------------------------------


def test_a_whoami_is_healthy_by_tcp_and_http() -> None:
    async def scenario() -> tuple[ProbeResult, ProbeResult]:
        async with whoami() as w:
            return await probe(TCP, LOOPBACK, w.port), await probe(HTTP, LOOPBACK, w.port)

    tcp, http = run(scenario())
    assert tcp == http
    assert tcp.ok and tcp.reason == ""


def test_a_whoami_answering_500_fails_http_and_passes_tcp() -> None:
    async def scenario() -> list[ProbeResult]:
        async with whoami(status=500) as w:
            return [
                await probe(ROOT_PATH, LOOPBACK, w.port),
                await probe(TCP, LOOPBACK, w.port),
                await probe(
                    HealthCheck(kind="http", path="/", expect_status=500), LOOPBACK, w.port
                ),
            ]

    http, tcp, expecting_500 = run(scenario())
    assert not http.ok
    assert http.reason == "status 500, expected 200"
    assert tcp.ok and expecting_500.ok


def test_http_over_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            pass
    except OSError:
        pytest.skip("no ::1")

    async def scenario() -> bool:
        async with whoami(host="::1") as w:
            return (await probe(HTTP, ipaddress.ip_address("::1"), w.port)).ok

    assert run(scenario())


# --- failures ----------------------------------------------------------------------


@pytest.mark.parametrize("check", [TCP, HTTP], ids=["tcp", "http"])
def test_a_closed_port_fails_fast_with_connection_refused(
    refusing_port: int, check: HealthCheck
) -> None:
    result = run(probe(check, LOOPBACK, refusing_port))
    assert not result.ok
    assert result.reason == "connection refused"


def test_a_server_that_never_answers_times_out_http() -> None:
    check = HealthCheck(kind="http", interval=0.2, timeout=0.2)

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.Event().wait()

    async def scenario() -> ProbeResult:
        async with server(never_answer) as port:
            return await probe(check, LOOPBACK, port)

    result = run(scenario())
    assert not result.ok and result.reason == TIMEOUT


def test_a_listener_that_never_accepts_passes_tcp_and_times_out_http(silent_port: int) -> None:
    tcp = run(probe(TCP, LOOPBACK, silent_port))
    http = run(probe(HealthCheck(kind="http", interval=0.2, timeout=0.2), LOOPBACK, silent_port))
    assert tcp.ok
    assert (http.ok, http.reason) == (False, TIMEOUT)


@pytest.mark.parametrize(
    ("chunks", "reason"),
    [
        ((b"SSH-2.0-OpenSSH_9.6\r\n",), "malformed response"),
        ((b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000,), "response head over 16384 bytes"),
        ((b"HTTP/1.1 200 OK\r\nServer: x\r\n",), "closed before the response head"),
    ],
    ids=["not-http", "huge-head", "cut-short"],
)
def test_bad_responses_fail_with_a_reason(chunks: tuple[bytes, ...], reason: str) -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        for chunk in chunks:
            writer.write(chunk)
        await writer.drain()
        if reason.startswith("closed"):
            writer.close()  # end the response mid-head
            return
        await reader.read()

    async def scenario() -> ProbeResult:
        async with server(cut_short) as port:
            return await probe(HTTP, LOOPBACK, port)

    result = run(scenario())
    assert (result.ok, result.reason) == (False, reason)


def test_interim_responses_and_split_heads_are_read() -> None:
    chunks = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 2",
        b"04 No Content\r\n\r\n",
    )

    async def scenario() -> ProbeResult:
        async with server(answering(*chunks)) as port:
            return await probe(HealthCheck(kind="http", expect_status=204), LOOPBACK, port)

    assert run(scenario()).ok


def test_the_request_names_the_endpoint_and_closes() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async def scenario() -> tuple[ProbeResult, int]:
        async with server(record) as port:
            return await probe(HealthCheck(kind="http", path="/ready?x=1"), LOOPBACK, port), port

    result, port = run(scenario())
    assert result.ok
    lines = seen[0].decode().split("\r\n")
    assert lines[0] == "GET /ready?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}" in lines
    assert "Connection: close" in lines


def test_the_request_brackets_ipv6_hosts() -> None:
    request = http_request("/h", ipaddress.ip_address("fd00::1"), 8080)
    assert b"\r\nHost: [fd00::1]:8080\r\n" in request


@pytest.mark.parametrize("path", ["health", "/a b", "/a\r\nX: y", "/caf\u00e9", ""])
def test_paths_that_cannot_go_on_a_request_line_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        run(probe(HealthCheck(kind="http", path=path), LOOPBACK, 80))


def test_an_address_that_is_not_an_ip_is_refused() -> None:
    with pytest.raises(InvalidInput):
        run(probe(TCP, "localhost", 80))


def test_kind_none_passes_without_connecting(refusing_port: int) -> None:
    assert run(probe(HealthCheck(kind="none"), LOOPBACK, refusing_port)).ok


def test_a_cancelled_probe_is_cancelled_not_failed(silent_port: int) -> None:
    async def scenario() -> None:
        check = HealthCheck(kind="http", interval=30.0, timeout=30.0)
        task = asyncio.create_task(probe(check, LOOPBACK, silent_port))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionResetError(104, "Connection reset by peer"), "connection reset"),
        (OSError(113, "No route to host"), "host unreachable"),
        (TimeoutError(110, "Connection timed out"), TIMEOUT),
        (OSError(24, "Too many open files"), "too many open files"),
        (OSError("odd"), "odd"),
        (OSError(), "OSError"),
    ],
)
def test_describe_error(exc: OSError, reason: str) -> None:
    assert describe_error(exc) == reason


# --- connectors --------------------------------------------------------------------


def test_a_socket_factory_connector_makes_the_sockets(refusing_port: int) -> None:
    made: list[socket.AddressFamily] = []

    def factory(family: socket.AddressFamily) -> socket.socket:
        made.append(family)
        return socket.socket(family, socket.SOCK_STREAM)

    connect = socket_connector(factory)

    async def scenario() -> list[ProbeResult]:
        async with whoami() as w:
            return [
                await probe(HTTP, LOOPBACK, w.port, connect=connect),
                await probe(TCP, LOOPBACK, refusing_port, connect=connect),
            ]

    passing, refused = run(scenario())
    assert passing.ok
    assert refused.reason == "connection refused"
    assert made == [socket.AF_INET, socket.AF_INET]


def test_a_failing_socket_factory_fails_the_probe() -> None:
    def factory(family: socket.AddressFamily) -> socket.socket:
        raise OSError(24, "Too many open files")

    result = run(probe(TCP, LOOPBACK, 9, connect=socket_connector(factory)))
    assert (result.ok, result.reason) == (False, "too many open files")


def test_the_netns_factory_without_a_name_makes_sockets_here() -> None:
    async def scenario() -> bool:
        async with whoami() as w:
            connect = socket_connector(netns_socket_factory(None))
            return (await probe(TCP, LOOPBACK, w.port, connect=connect)).ok

    assert run(scenario())


def test_a_missing_netns_fails_the_probe_with_its_name() -> None:
    connect = netns_connector(f"podnet-health-missing-{os.getpid()}")
    result = run(probe(TCP, LOOPBACK, 80, connect=connect))
    assert not result.ok
    assert "does not exist" in result.reason


@pytest.mark.root
def test_probes_run_inside_a_pods_netns() -> None:
    from podnet.kernel import netns

    name = f"podnet-health-test-{os.getpid()}"
    netns.create(name)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        listener = netns.run_in(name, lambda: socket.create_server((LOOPBACK, 0)))
        run(_probe_inside(name, listener))
    finally:
        netns.delete(name)


async def _probe_inside(name: str, listener: socket.socket) -> None:
    accepted: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(name)
        writer.close()

    srv = await asyncio.start_server(handle, sock=listener)
    try:
        port = listener.getsockname()[1]
        result = await probe(TCP, LOOPBACK, port, connect=netns_connector(name))
        assert result.ok, result.reason
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await _until(lambda: bool(accepted))
        assert accepted == [name]
    finally:
        srv.close()
        await srv.wait_closed()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():  # bounded by the caller's timeout
        await asyncio.sleep(0.01)
