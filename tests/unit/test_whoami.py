"""podnet whoami: the sans-I/O parser, the answers, and the server over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.errors import Conflict, InvalidInput
from podnet.workload import (
    addresses,
    answers,
    connection,
    events,
    http1,
    listen,
    request_head,
    whoami,
)
from podnet.workload.addresses import format_peer, host_addresses, parse_addr_dump
from podnet.workload.answers import Responder
from podnet.workload.http1 import ContinueExpected, Event, Rejected, Request, RequestParser
from podnet.workload.whoami import WhoamiOptions, WhoamiServer, main, resolve_name, serve

IO_TIMEOUT = 5.0
ADDRESSES = ["127.0.0.1", "::1", "192.0.2.7"]


def requests_of(events: list[Event]) -> list[Request]:
    assert all(isinstance(e, Request) for e in events), events
    return [e for e in events if isinstance(e, Request)]


def feed_bytewise(parser: RequestParser, data: bytes) -> list[Event]:
    events: list[Event] = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
    return events


GET = b"GET /a?b=1 HTTP/1.1\r\nHost: example\r\nX-Test:  yes  \r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n"
)


# -- parser: requests -------------------------------------------------------


def test_parse_simple_get() -> None:
    (request,) = requests_of(RequestParser().feed(GET))
    assert request.method == b"GET"
    assert request.target == b"/a?b=1"
    assert request.version == b"HTTP/1.1"
    assert request.headers == [(b"Host", b"example"), (b"X-Test", b"yes")]
    assert request.host == b"example"
    assert request.keep_alive
    assert request.head == b"GET /a?b=1 HTTP/1.1\nHost: example\nX-Test:  yes  \n"


def test_parse_split_across_reads() -> None:
    parser = RequestParser()
    events = feed_bytewise(parser, GET)
    assert requests_of(events)[0].target == b"/a?b=1"
    assert not parser.has_partial


def test_parse_waits_for_whole_head() -> None:
    parser = RequestParser()
    assert parser.feed(GET[:-1]) == []
    assert parser.has_partial
    assert len(parser.feed(GET[-1:])) == 1


def test_parse_pipelined_in_order() -> None:
    stream = GET + POST + CHUNKED + GET.replace(b"/a?b=1", b"/last")
    targets = [r.target for r in requests_of(RequestParser().feed(stream))]
    assert targets == [b"/a?b=1", b"/p", b"/c", b"/last"]


def test_parse_content_length_body_discarded_across_reads() -> None:
    parser = RequestParser()
    assert parser.feed(POST[:-3]) == []
    assert parser.in_body
    events = parser.feed(POST[-3:] + GET)
    assert [r.target for r in requests_of(events)] == [b"/p", b"/a?b=1"]
    assert not parser.in_body


def test_parse_chunked_body_bytewise() -> None:
    parser = RequestParser()
    events = feed_bytewise(parser, CHUNKED + GET)
    assert [r.target for r in requests_of(events)] == [b"/c", b"/a?b=1"]


def test_parse_chunked_with_bare_lf_and_no_trailers() -> None:
    data = b"POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n"
    assert len(requests_of(RequestParser().feed(data))) == 1


def test_parse_lf_only_head_and_leading_empty_lines() -> None:
    (request,) = requests_of(RequestParser().feed(b"\r\n\nGET / HTTP/1.1\nHost: h\n\n"))
    assert request.host == b"h"


def test_parse_empty_lines_alone_are_not_buffered() -> None:
    parser = RequestParser()
    for _ in range(100):
        assert parser.feed(b"\r\n" * 1000) == []
    assert not parser.has_partial


def test_parse_expect_continue() -> None:
    head = b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    parser = RequestParser()
    assert parser.feed(head) == [ContinueExpected()]
    assert requests_of(parser.feed(b"abc"))[0].method == b"PUT"


def test_parse_no_continue_without_body() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n"
    assert len(requests_of(RequestParser().feed(head))) == 1


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", True),
    ],
)
def test_parse_keep_alive(head: bytes, keep_alive: bool) -> None:
    parser = RequestParser()
    found = requests_of(parser.feed(head + GET))
    assert found[0].keep_alive is keep_alive
    assert len(found) == (2 if keep_alive else 1)
    assert parser.done is not keep_alive


def test_parse_nothing_after_close() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert parser.feed(GET) == []


@given(st.lists(st.integers(min_value=0, max_value=len(GET + POST + CHUNKED)), max_size=12))
@settings(max_examples=150, deadline=None)
def test_parse_any_split_gives_the_same_requests(cuts: list[int]) -> None:
    stream = GET + POST + CHUNKED + GET
    expected = RequestParser().feed(stream)
    parser = RequestParser()
    events: list[Event] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for start, end in itertools.pairwise(bounds):
        events += parser.feed(stream[start:end])
    assert events == expected


# -- parser: rejections and limits ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\x00\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc", 400),
    ],
)
def test_parse_rejects(data: bytes, status: int) -> None:
    parser = RequestParser()
    events = parser.feed(data)
    assert len(events) == 1
    assert isinstance(events[0], Rejected)
    assert events[0].status == status
    assert parser.done
    assert parser.feed(GET) == []


def test_parse_duplicate_equal_content_length_is_accepted() -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok"
    assert len(requests_of(RequestParser().feed(data))) == 1


def rejection(events: list[Event]) -> int:
    assert len(events) == 1 and isinstance(events[0], Rejected), events
    return events[0].status


def test_limit_head_without_end() -> None:
    parser = RequestParser(max_head=1024)
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n") == []
    assert rejection(parser.feed(b"X-Big: " + b"a" * 2000)) == 431


def test_limit_head_with_end() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
    assert rejection(RequestParser(max_head=1024).feed(data)) == 431


def test_limit_head_default_is_64k() -> None:
    fits = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n"
    assert len(requests_of(RequestParser().feed(fits))) == 1
    big = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    assert rejection(RequestParser().feed(big)) == 431


def test_limit_content_length_body() -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n"
    assert rejection(RequestParser(max_body=100).feed(data)) == 413


def test_limit_chunked_body() -> None:
    parser = RequestParser(max_body=100)
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert parser.feed(head + b"32\r\n" + b"a" * 50 + b"\r\n") == []
    assert rejection(parser.feed(b"33\r\n")) == 413


def test_limit_chunk_size_line() -> None:
    parser = RequestParser()
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert rejection(parser.feed(head + b"1;" + b"e" * 5000)) == 400


def test_limit_trailers() -> None:
    parser = RequestParser(max_head=1024)
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    assert parser.feed(head) == []
    for _ in range(100):
        events = parser.feed(b"T: " + b"t" * 100 + b"\r\n")
        if events:
            break
    assert rejection(events) == 431


# -- answers --------------------------------------------------------------------


def answer(responder: Responder, data: bytes) -> bytes:
    (request,) = requests_of(RequestParser().feed(data))
    return responder.answer(request, responder.peer("10.0.0.9:4242"))


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], {k.lower(): v for k, v in fields.items()}, body


def test_answer_text() -> None:
    status, fields, body = split_response(answer(Responder("pod-1", ADDRESSES), GET))
    assert status == "HTTP/1.1 200 OK"
    assert fields["content-type"] == "text/plain; charset=utf-8"
    assert int(fields["content-length"]) == len(body)
    assert "date" in fields
    assert body.decode().splitlines() == [
        "Hostname: pod-1",
        "IP: 127.0.0.1",
        "IP: ::1",
        "IP: 192.0.2.7",
        "RemoteAddr: 10.0.0.9:4242",
        "GET /a?b=1 HTTP/1.1",
        "Host: example",
        "X-Test:  yes  ",
    ]


def test_answer_json() -> None:
    data = b"GET /api?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
    _, fields, body = split_response(answer(Responder("pod-1", ADDRESSES), data))
    assert fields["content-type"] == "application/json"
    assert json.loads(body) == {
        "hostname": "pod-1",
        "ip": ADDRESSES,
        "remote_addr": "10.0.0.9:4242",
        "method": "GET",
        "url": "/api?x=1",
        "host": "h",
        "headers": {"Host": ["h"], "X-A": ["1", "2"]},
    }


def test_answer_health_ignores_status() -> None:
    status, _, body = split_response(
        answer(Responder("p", [], status=503), b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
    )
    assert (status, body) == ("HTTP/1.1 200 OK", b"ok\n")


def test_answer_head_has_length_but_no_body() -> None:
    raw = answer(Responder("p", ADDRESSES), GET.replace(b"GET", b"HEAD", 1))
    _, fields, body = split_response(raw)
    assert body == b""
    full = split_response(answer(Responder("p", ADDRESSES), GET))[2]
    assert int(fields["content-length"]) == len(full) - len(b"GET") + len(b"HEAD")


def test_answer_204_has_no_content_fields() -> None:
    status, fields, body = split_response(answer(Responder("p", [], status=204), GET))
    assert status == "HTTP/1.1 204 No Content"
    assert "content-length" not in fields
    assert body == b""


def test_answer_connection_fields() -> None:
    responder = Responder("p", [])
    assert split_response(answer(responder, b"GET / HTTP/1.0\r\n\r\n"))[1]["connection"] == "close"
    keep = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    assert split_response(answer(responder, keep))[1]["connection"] == "keep-alive"
    assert "connection" not in split_response(answer(responder, GET))[1]


def test_answer_absolute_form_target() -> None:
    data = b"GET http://h/api HTTP/1.1\r\nHost: h\r\n\r\n"
    assert split_response(answer(Responder("p", []), data))[1]["content-type"] == "application/json"


def test_reject_response() -> None:
    status, fields, body = split_response(Responder("p", []).reject(Rejected(431, "too big")))
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert fields["connection"] == "close"
    assert int(fields["content-length"]) == len(body)


def test_date_is_cached_per_second() -> None:
    now = [1_700_000_000.2]
    responder = Responder("p", [], clock=lambda: now[0])
    first = split_response(answer(responder, GET))[1]["date"]
    assert first == "Tue, 14 Nov 2023 22:13:20 GMT"
    now[0] += 1.0
    assert split_response(answer(responder, GET))[1]["date"] == "Tue, 14 Nov 2023 22:13:21 GMT"


# -- addresses and names ----------------------------------------------------------


def test_host_addresses_include_loopback() -> None:
    found = host_addresses()
    assert "127.0.0.1" in found
    assert len(found) == len(set(found))


def test_ioctl_fallback_includes_loopback() -> None:
    assert (1, "127.0.0.1") in addresses._ioctl_addresses()


def nlmsg(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(payload), kind, 2, 1, 0) + payload
    return raw + b"\0" * (-len(raw) % 4)


def test_parse_addr_dump() -> None:
    v4 = struct.pack("=BBBBI", socket.AF_INET, 8, 0, 254, 3)
    v4 += struct.pack("=HH", 8, 1) + socket.inet_aton("10.0.0.2")  # IFA_ADDRESS: peer
    v4 += struct.pack("=HH", 8, 2) + socket.inet_aton("10.0.0.1")  # IFA_LOCAL: ours
    v6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 2)
    v6 += struct.pack("=HH", 20, 1) + socket.inet_pton(socket.AF_INET6, "fd00::5")
    found, done = parse_addr_dump(nlmsg(20, v4) + nlmsg(20, v6))
    assert (found, done) == ([(3, "10.0.0.1"), (2, "fd00::5")], False)
    assert parse_addr_dump(nlmsg(3, b"\0" * 4)) == ([], True)
    with pytest.raises(OSError):
        parse_addr_dump(nlmsg(2, struct.pack("=i", -1) + b"\0" * 16))


@pytest.mark.parametrize(
    ("peer", "text"),
    [
        (("127.0.0.1", 80), "127.0.0.1:80"),
        (("::1", 80, 0, 0), "[::1]:80"),
        (("::ffff:10.1.2.3", 81, 0, 0), "10.1.2.3:81"),
        (("fe80::1%eth0", 82, 0, 2), "[fe80::1%eth0]:82"),
    ],
)
def test_format_peer(peer: tuple[object, ...], text: str) -> None:
    assert format_peer(peer) == text


def test_resolve_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODNET_POD", "from-env")
    assert resolve_name("given") == "given"
    assert resolve_name(None) == "from-env"
    monkeypatch.delenv("PODNET_POD")
    assert resolve_name(None) == socket.gethostname()


@pytest.mark.parametrize(
    "kwargs", [{"status": 99}, {"status": 600}, {"port": 70000}, {"delay": -1.0}]
)
def test_options_are_checked(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(InvalidInput):
        WhoamiOptions(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "module", [events, request_head, http1, answers, addresses, connection, listen, whoami]
)
def test_exported_names_exist(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert len(set(names)) == len(names)
    assert all(hasattr(module, name) for name in names)


# -- the server over loopback -------------------------------------------------------

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(whoami.new_event_loop, id="uvloop"),
]


class ServerThread(threading.Thread):
    """``serve`` in a thread with its own event loop, so tests can block on I/O."""

    def __init__(self, options: WhoamiOptions, loop_factory: LoopFactory) -> None:
        super().__init__(daemon=True)
        self.options = options
        self.loop_factory = loop_factory
        self.ready = threading.Event()
        self.server: WhoamiServer | None = None
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None

    def started(self, server: WhoamiServer) -> None:
        self.server = server
        self.ready.set()

    async def serve(self) -> None:
        self.loop, self.stop_event = asyncio.get_running_loop(), asyncio.Event()
        await serve(self.options, stop=self.stop_event, ready=self.started)

    def run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                runner.run(self.serve())
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()

    def stop(self) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.join(IO_TIMEOUT + 5)
        assert not self.is_alive(), "whoami did not stop"
        assert self.error is None, self.error


@contextlib.contextmanager
def running(
    loop_factory: LoopFactory = whoami.new_event_loop, **changes: Any
) -> Iterator[WhoamiServer]:
    """Run ``serve`` on 127.0.0.1, port 0, quietly, as "test-pod"."""
    options = WhoamiOptions(host="127.0.0.1", port=0, name="test-pod", quiet=True)
    thread = ServerThread(dataclasses.replace(options, **changes), loop_factory)
    thread.start()
    try:
        assert thread.ready.wait(IO_TIMEOUT), "whoami did not start"
        assert thread.server is not None, thread.error
        yield thread.server
    finally:
        thread.stop()


def get(
    server: WhoamiServer, path: str = "/", conn: http.client.HTTPConnection | None = None
) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=IO_TIMEOUT)
    try:
        conn.request("GET", path, headers={"X-Test": "yes"})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        if own:
            conn.close()


def exchange(port: int, data: bytes, limit: int = 1 << 20) -> bytes:
    """Send raw bytes; read until the server closes (bounded in time and size)."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(data)
        return read_to_eof(sock, limit)


def read_to_eof(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    received = b""
    while len(received) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    raise AssertionError("server did not close")


def request_line(body: bytes) -> bytes:
    """The request line echoed in a text answer (the line after RemoteAddr)."""
    lines = body.split(b"\n")
    index = next(i for i, line in enumerate(lines) if line.startswith(b"RemoteAddr: "))
    return lines[index + 1]


def split_responses(raw: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    responses = []
    pos = 0
    for _ in range(100):
        if pos >= len(raw):
            break
        end = raw.index(b"\r\n\r\n", pos)
        status, fields, _ = split_response(raw[pos : end + 4])
        length = int(fields.get("content-length", "0"))
        responses.append((status, fields, raw[end + 4 : end + 4 + length]))
        pos = end + 4 + length
    return responses


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_server_text_answer(loop_factory: LoopFactory) -> None:
    with running(loop_factory) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=IO_TIMEOUT)
        with contextlib.closing(conn):
            status, fields, body = get(server, "/some/path?q=1", conn)
            client_port = conn.sock.getsockname()[1]
        port = server.port
    assert status == 200
    assert int(fields["content-length"]) == len(body)
    lines = body.decode().splitlines()
    assert lines[0] == "Hostname: test-pod"
    assert lines[1 : 1 + len(server.addresses)] == [f"IP: {a}" for a in server.addresses]
    assert "IP: 127.0.0.1" in lines
    assert f"RemoteAddr: 127.0.0.1:{client_port}" in lines
    rest = lines[lines.index(f"RemoteAddr: 127.0.0.1:{client_port}") + 1 :]
    assert rest[0] == "GET /some/path?q=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}" in rest
    assert "X-Test: yes" in rest


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_server_api_and_health(loop_factory: LoopFactory) -> None:
    with running(loop_factory) as server:
        status, fields, body = get(server, "/api")
        health = get(server, "/health")
        port = server.port
    assert status == 200
    assert fields["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["hostname"] == "test-pod"
    assert doc["ip"] == server.addresses
    assert doc["remote_addr"].startswith("127.0.0.1:")
    assert (doc["method"], doc["url"]) == ("GET", "/api")
    assert doc["host"] == f"127.0.0.1:{port}"
    assert doc["headers"]["X-Test"] == ["yes"]
    assert health[0] == 200
    assert health[2] == b"ok\n"


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_server_keep_alive_reuses_connection(loop_factory: LoopFactory) -> None:
    with running(loop_factory) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=IO_TIMEOUT)
        with contextlib.closing(conn):
            bodies = [get(server, f"/n{i}", conn)[2] for i in range(5)]
            sock = conn.sock
            conn.request("POST", "/chunked", body=iter([b"abc", b"def"]), encode_chunked=True)
            assert conn.getresponse().read().startswith(b"Hostname: test-pod")
            conn.request("POST", "/sized", body=b"x" * 100_000)
            response = conn.getresponse()
            assert (response.status, response.read()[:9]) == (200, b"Hostname:")
            assert get(server, "/last", conn)[0] == 200
            assert conn.sock is sock
            assert server.connections == 1
    remotes = {line for body in bodies for line in body.split(b"\n") if b"RemoteAddr" in line}
    assert len(remotes) == 1


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_server_pipelined_requests_answered_in_order(loop_factory: LoopFactory) -> None:
    requests = (
        b"".join(f"GET /p{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for i in range(20))
        + b"GET /end HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    with running(loop_factory) as server:
        responses = split_responses(exchange(server.port, requests))
    targets = [request_line(body).split()[1] for _, _, body in responses]
    assert targets == [f"/p{i}".encode() for i in range(20)] + [b"/end"]
    assert responses[-1][1]["connection"] == "close"


def test_server_status_option() -> None:
    with running(status=503) as server:
        assert get(server, "/")[0] == 503
        assert get(server, "/api")[0] == 503
        assert get(server, "/health")[0] == 200


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_server_delay_option(loop_factory: LoopFactory) -> None:
    with running(loop_factory, delay=0.3) as server:
        start = time.monotonic()
        status, _, _ = get(server, "/slow")
        assert time.monotonic() - start >= 0.3
        assert status == 200
        pipelined = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /health HTTP/1.1\r\nHost: h\r\n"
        pipelined += b"Connection: close\r\n\r\n"
        start = time.monotonic()
        responses = split_responses(exchange(server.port, pipelined))
        assert time.monotonic() - start >= 0.3
    assert [r[2].split(b"\n")[0] for r in responses] == [b"Hostname: test-pod", b"ok"]


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_server_delayed_answer_after_client_half_close(loop_factory: LoopFactory) -> None:
    with (
        running(loop_factory, delay=0.1) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock,
    ):
        sock.sendall(b"GET /half HTTP/1.1\r\nHost: h\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        raw = read_to_eof(sock)
    ((status, _, body),) = split_responses(raw)
    assert status == "HTTP/1.1 200 OK"
    assert request_line(body) == b"GET /half HTTP/1.1"


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_server_400_on_garbage_and_close(loop_factory: LoopFactory) -> None:
    with running(loop_factory) as server:
        raw = exchange(server.port, b"GARBAGE\r\n\r\n")
        still_serving = get(server, "/health")[0]
    ((status, fields, body),) = split_responses(raw)
    assert status == "HTTP/1.1 400 Bad Request"
    assert fields["connection"] == "close"
    assert body.startswith(b"400 Bad Request")
    assert still_serving == 200


def test_server_431_on_huge_head() -> None:
    with running() as server:
        big = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock:
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(big)
            raw = read_to_eof(sock)
    assert raw.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_server_http10_closes(loop_factory: LoopFactory) -> None:
    with running(loop_factory) as server:
        raw = exchange(server.port, b"GET /ten HTTP/1.0\r\n\r\n")
        kept = b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"
        both = split_responses(exchange(server.port, kept))
    ((status, fields, body),) = split_responses(raw)
    assert status == "HTTP/1.1 200 OK"
    assert fields["connection"] == "close"
    assert b"GET /ten HTTP/1.0" in body
    assert [r[1]["connection"] for r in both] == ["keep-alive", "close"]


def test_server_expect_continue() -> None:
    with running() as server:
        head = b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(head + b"Connection: close\r\n\r\n")
            interim = sock.recv(1024)
            sock.sendall(b"body")
            raw = read_to_eof(sock)
    assert interim == answers.CONTINUE
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_server_idle_timeout(loop_factory: LoopFactory) -> None:
    with running(loop_factory, idle_timeout=0.2) as server:
        assert exchange(server.port, b"") == b""  # idle: closed without a word
        partial = exchange(server.port, b"GET / HTTP/1.1\r\nHost")
    assert partial.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_server_stop_lets_delayed_answers_out() -> None:
    async def scenario() -> bytes:
        options = WhoamiOptions(host="127.0.0.1", port=0, delay=0.2, quiet=True)
        server = WhoamiServer(options, addresses=ADDRESSES)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        await writer.drain()
        for _ in range(100):  # wait until the request arrived
            if server.connections:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await server.stop(grace=IO_TIMEOUT)
        data = await asyncio.wait_for(reader.read(), IO_TIMEOUT)
        writer.close()
        return data

    raw = asyncio.run(scenario())
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")


def test_server_dual_stack_default() -> None:
    if not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6")

    async def scenario() -> list[bytes]:
        async with WhoamiServer(WhoamiOptions(port=0, quiet=True), addresses=[]) as server:
            assert server.endpoints[0].startswith("[::]:")
            found = []
            for host in ("127.0.0.1", "::1"):
                reader, writer = await asyncio.open_connection(host, server.port)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                found.append(await asyncio.wait_for(reader.read(), IO_TIMEOUT))
                writer.close()
            return found

    v4, v6 = asyncio.run(scenario())
    assert b"RemoteAddr: 127.0.0.1:" in v4
    assert b"RemoteAddr: [::1]:" in v6


# -- the command line ----------------------------------------------------------------


def test_main_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--status", "99", "--quiet"]) == 2
    assert "status 99" in capsys.readouterr().err


def test_main_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["--host", "127.0.0.1", "--port", str(port), "--quiet"]) == 1
    assert "already in use" in capsys.readouterr().err


def test_bind_error_translation() -> None:
    error = listen.bind_error(OSError(98, "Address already in use"), None, 80)
    assert isinstance(error, Conflict)
    assert "port 80" in str(error)


def test_cli_runs_and_stops_on_sigterm() -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "PODNET_POD": "cli-pod"}
    command = [sys.executable, "-m", "podnet.workload.whoami", "--host", "127.0.0.1", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout is not None
            line = read_line(proc.stdout, IO_TIMEOUT + 5)
            assert line.startswith("whoami listening on 127.0.0.1:")
            assert line.endswith(" as cli-pod")
            port = int(line.split()[3].rpartition(":")[2])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT)
            with contextlib.closing(conn):
                conn.request("GET", "/")
                assert conn.getresponse().read().startswith(b"Hostname: cli-pod\n")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=IO_TIMEOUT + 5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=IO_TIMEOUT)


def read_line(stream: IO[bytes], timeout: float) -> str:
    """Read one line from a pipe, giving up after ``timeout`` seconds."""
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert box, "no line in time"
    return box[0].decode().strip()
