"""The proxy engine's pure parts and small I/O pieces: request info, original
destination, addresses, access log, snapshot files, pools, flow control."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from podnet.errors import InvalidInput, PodnetError
from podnet.model.route import (
    BackendRef,
    ResolvedBackend,
    ResolvedRoute,
    RouteSpec,
    Snapshot,
    SnapshotEndpoint,
    Timeouts,
)
from podnet.proxy.accesslog import AccessLog
from podnet.proxy.engine import Engine
from podnet.proxy.exchange import HeaderView, request_info
from podnet.proxy.feed import SnapshotFile, load_snapshot
from podnet.proxy.http1 import Connection, Data, Headers, Request, Role
from podnet.proxy.original_dst import format_destination, original_destination
from podnet.proxy.side import BACKLOG, Side
from podnet.proxy.upstream import Pool, Pools, Upstream
from podnet.proxy.workers import parse_address


def parsed(head: bytes) -> Request:
    events = Connection(Role.SERVER).receive_data(head)
    request = events[0]
    assert isinstance(request, Request)
    return request


# -- request info ------------------------------------------------------------------------


def test_request_info_host_path_headers_and_cookies() -> None:
    request = parsed(
        b"GET /api/x?q=1 HTTP/1.1\r\nHost: Shop.Example:8080\r\nX-Canary: yes\r\n"
        b'Cookie: a=1; b="two"\r\nCookie: a=3\r\n\r\n'
    )
    info = request_info(request, "10.96.0.1:80")
    assert (info.method, info.host, info.path) == ("GET", "shop.example", "/api/x")
    assert info.headers["x-canary"] == "yes" and info.headers.get("X-CANARY") == "yes"
    assert "x-missing" not in info.headers
    assert info.cookies == {"a": "1", "b": "two"}
    assert info.destination == "10.96.0.1:80"


@pytest.mark.parametrize(
    ("target", "host", "want_host", "want_path"),
    [
        (b"http://other.example/p/q?x", b"h", "other.example", "/p/q"),
        (b"http://other.example", b"h", "other.example", "/"),
        (b"/", b"[::1]:8080", "[::1]", "/"),
        (b"*", b"h", "h", "*"),
    ],
)
def test_request_info_target_forms(
    target: bytes, host: bytes, want_host: str, want_path: str
) -> None:
    method = b"OPTIONS" if target == b"*" else b"GET"
    request = parsed(method + b" " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    info = request_info(request)
    assert (info.host, info.path) == (want_host, want_path)


@pytest.mark.parametrize(
    ("target", "want"),
    [
        (b"http://h/a/b?c=1", b"/a/b?c=1"),
        (b"http://h", b"/"),
        (b"http://h?x", b"/?x"),
        (b"https://user@h:8/p", b"/p"),
    ],
)
def test_absolute_form_targets_go_upstream_in_origin_form(target: bytes, want: bytes) -> None:
    from podnet.proxy.exchange import _origin_form

    assert _origin_form(target) == want


def test_header_view_is_a_mapping_of_first_values() -> None:
    view = HeaderView(Headers([(b"A", b"1"), (b"b", b"2"), (b"a", b"3")]))
    assert dict(view) == {"a": "1", "b": "2"}
    assert len(view) == 2
    with pytest.raises(KeyError):
        view["c"]


# -- original destination -------------------------------------------------------------------


def test_format_destination_v4_and_v6() -> None:
    v4 = struct.pack("!HH4s8x", socket.AF_INET, 8080, socket.inet_aton("10.96.0.7"))
    assert format_destination(v4, socket.AF_INET) == "10.96.0.7:8080"
    v6 = struct.pack(
        "!HHI16sI", socket.AF_INET6, 443, 0, socket.inet_pton(socket.AF_INET6, "fd00:96::5"), 0
    )
    assert format_destination(v6, socket.AF_INET6) == "[fd00:96::5]:443"


def test_original_destination_of_a_socket_that_was_not_redirected_is_empty() -> None:
    assert original_destination(None) == ""
    with socket.socket() as sock:
        assert original_destination(sock) == ""


# -- command line pieces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:0", ("::1", 0)),
        (":80", ("0.0.0.0", 80)),
    ],
)
def test_parse_address(text: str, want: tuple[str, int]) -> None:
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["8080", "host:", "host:99999", "host:http"])
def test_parse_address_refuses_what_is_not_host_port(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_address(text)


def test_access_log_lines_are_json_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    fields: dict[str, Any] = {
        "client": "127.0.0.1:5000",
        "method": "GET",
        "path": "/a",
        "host": "h",
        "status": 200,
        "bytes": 12,
        "duration": 0.001,
        "route": "r",
        "backend": "b",
        "endpoint": "127.0.0.1:80",
        "attempts": 1,
    }
    log.record(**fields)
    log.record(**{**fields, "status": 503})
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["status"] for line in lines] == [200, 503]
    assert set(lines[0]) == {*fields, "time", "worker"}
    assert lines[0]["time"].endswith("Z")


# -- snapshots ------------------------------------------------------------------------------


def snapshot(version: int, port: int = 8080) -> Snapshot:
    ref = BackendRef(name="web", service="web")
    endpoints = (SnapshotEndpoint("127.0.0.1", port),)
    spec = RouteSpec(name="r", backends=(ref,), timeouts=Timeouts(header_read=2, idle=7))
    return Snapshot("p", version, (ResolvedRoute(spec, (ResolvedBackend(ref, endpoints),)),))


def test_load_snapshot_reports_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(PodnetError, match="cannot load snapshot"):
        load_snapshot(path)
    with pytest.raises(PodnetError):
        load_snapshot(tmp_path / "missing.json")


def test_snapshot_file_reload_keeps_the_current_snapshot_when_the_new_one_is_broken(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(snapshot(1).to_dict()))
    seen: list[int] = []
    feed = SnapshotFile(path, lambda s: seen.append(s.version))
    feed.load()
    path.write_text("[]")
    feed.reload()
    path.write_text(json.dumps(snapshot(2).to_dict()))
    feed.reload()
    assert seen == [1, 2]


def test_engine_swap_keeps_runtime_state_and_takes_the_strictest_connection_timeouts() -> None:
    async def run() -> None:
        engine = Engine()
        assert engine.router is None
        engine.swap(snapshot(1))
        first = engine.router
        assert first is not None
        route = first.routes()[0]
        endpoint = route.backends[0].endpoints[0]
        endpoint.start()
        engine.swap(snapshot(2))
        assert engine.router is not first and engine.version == 2
        assert engine.router.routes()[0].backends[0].endpoints[0].in_flight == 1
        assert (engine.header_read, engine.idle) == (2, 7)
        assert engine.gauges()["podnet_proxy_snapshot_version"] == 2.0

    asyncio.run(run())


# -- pools and flow control -------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> None:
        return None


def test_pool_is_lifo_skips_closed_connections_and_is_bounded() -> None:
    async def run() -> None:
        pool = Pool(max_idle=2)
        a, b, c = (Upstream(None) for _ in range(3))
        for up in (a, b, c):
            up.connection_made(FakeTransport())  # type: ignore[arg-type]
            pool.put(up)
        assert c.transport.closed  # type: ignore[union-attr]
        b.connection_lost(None)
        assert pool.get() is a
        assert pool.get() is None

    asyncio.run(run())


def test_pools_sweep_closes_connections_idle_too_long() -> None:
    async def run() -> None:
        pools = Pools()
        up = Upstream(None)
        transport = FakeTransport()
        up.connection_made(transport)  # type: ignore[arg-type]
        pools.put("127.0.0.1:80", up)
        assert pools.idle_count() == 1
        now = asyncio.get_running_loop().time()
        pools.sweep(now, idle_timeout=60)
        assert pools.idle_count() == 1
        pools.sweep(now + 61, idle_timeout=60)
        assert transport.closed and pools.idle_count() == 0

    asyncio.run(run())


def test_side_pauses_reading_on_a_backlog_and_resumes_when_it_is_consumed() -> None:
    async def run() -> None:
        side = Side(Role.SERVER)
        transport = FakeTransport()
        side.connection_made(transport)  # type: ignore[arg-type]
        side.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        for _ in range(BACKLOG + 1):
            side.data_received(b"x")
        assert not transport.reading
        await side.next_event()  # the request
        while side.events:
            event = await side.next_event()
            assert isinstance(event, Data)
        assert transport.reading

    asyncio.run(run())


def test_agent_feed_long_polls_and_applies_new_versions(tmp_path: Path) -> None:
    from podnet.proxy.feed import AgentFeed

    path = tmp_path / "agent.sock"
    asked: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ")[1].decode()
        asked.append(target)
        if "wait=" not in target:
            body = json.dumps(snapshot(5).to_dict()).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        elif len(asked) == 2:
            writer.write(b"HTTP/1.1 304 Not Modified\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def run() -> None:
        server = await asyncio.start_unix_server(handle, str(path))
        seen: list[int] = []
        feed = AgentFeed(path, "p1", lambda s: seen.append(s.version))
        task = asyncio.create_task(feed.follow())
        for _ in range(100):
            if len(asked) >= 3:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        server.close()
        assert seen == [5]
        assert asked[:3] == [
            "/v1/proxies/p1/snapshot",
            "/v1/proxies/p1/snapshot?wait=5",
            "/v1/proxies/p1/snapshot?wait=5",
        ]

    asyncio.run(run())
