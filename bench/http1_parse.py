"""Micro-benchmark: podnet's HTTP/1.1 framing core against httptools' raw parse.

Parses a typical request and a typical response, each a fixed byte string,
many times, and prints parses per second for podnet and for httptools (llhttp
with the callbacks a proxy needs: URL/status, each header, body, end) and the
ratio. Both sides get the whole message in one ``receive_data``/``feed_data``
call, as after one socket read.

* request: ``receive_data(request)`` on a fresh SERVER connection ->
  Request, EndOfMessage;
* response: ``receive_data(response)`` on a CLIENT connection that has sent
  its request -> Response, Data, EndOfMessage;
* httptools: ``feed_data`` on a fresh parser with collecting callbacks.

Connections and parsers are made before the clock starts, so only parsing is
timed. A last line times a whole keep-alive server cycle (parse the request,
send a 200, reset), which is what the proxy pays per request on one side.

Usage: ``python bench/http1_parse.py [--seconds S]`` (default 1 s per case,
best of 5 rounds). Not a test: it prints numbers, it asserts nothing about them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httptools

from podnet.proxy.http1 import Connection, EndOfMessage, Headers, Request, Response, Role

REQUEST = (
    b"GET /api/v1/users/42?fields=name,email HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: application/json\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=8f14e45fceea167a5a36dedd4bea2543\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.24.0\r\n"
    b"Date: Sat, 21 Nov 2026 15:00:00 GMT\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 27\r\n"
    b"Connection: keep-alive\r\n"
    b"Cache-Control: no-cache\r\n"
    b"\r\n"
    b'{"id":42,"name":"Ada Lov"}\n'
)
T = TypeVar("T")
ROUNDS = 5
BATCH = 2000
Parser = Any  # httptools has no type hints
UPSTREAM_REQUEST = Request(b"GET", b"/api/v1/users/42", b"1.1", Headers([(b"Host", b"api")]))
RESPONSE_HEAD = Response(200, b"OK", Headers([(b"Content-Length", b"0")]))


class _Collector:
    """httptools callbacks doing what a proxy needs: keep URL/status, headers, body."""

    __slots__ = ("body", "done", "headers", "url")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.url = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


def request_connection() -> Connection:
    return Connection(Role.SERVER)


def response_connection() -> Connection:
    conn = Connection(Role.CLIENT)
    conn.send(UPSTREAM_REQUEST)
    conn.send(EndOfMessage())
    return conn


def podnet_parse(data: bytes, events: int) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        assert len(conn.receive_data(data)) == events

    return run


def httptools_parse(data: bytes) -> Callable[[Parser], None]:
    def run(parser: Parser) -> None:
        parser.feed_data(data)

    return run


def httptools_request_parser() -> Parser:
    return httptools.HttpRequestParser(_Collector())


def httptools_response_parser() -> Parser:
    return httptools.HttpResponseParser(_Collector())


def keepalive_cycle() -> Callable[[], None]:
    """One request parsed, a 200 sent, the cycle reset: the keep-alive server loop."""
    conn = Connection(Role.SERVER)
    end = EndOfMessage()

    def run() -> None:
        conn.receive_data(REQUEST)
        conn.send(RESPONSE_HEAD)
        conn.send(end)
        conn.start_next_cycle()

    return run


def best_rates(
    cases: list[tuple[Callable[[], Any], Callable[[Any], None]]], seconds: float
) -> list[float]:
    """Best calls per second of each ``(prepare, run)`` case; ``prepare`` is not timed.

    The cases take turns, round after round, so that load from elsewhere on the
    machine hits them alike and their ratio stays meaningful.
    """
    best = [0.0] * len(cases)
    for _ in range(ROUNDS):
        for index, (prepare, run) in enumerate(cases):
            best[index] = max(best[index], _rate(prepare, run, seconds / ROUNDS))
    return best


def _rate(prepare: Callable[[], T], run: Callable[[T], None], seconds: float) -> float:
    calls, elapsed = 0, 0.0
    while elapsed < seconds:
        states = [prepare() for _ in range(BATCH)]
        start = time.perf_counter()
        for state in states:
            run(state)
        elapsed += time.perf_counter() - start
        calls += BATCH
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case")
    seconds = parser.parse_args().seconds
    cycle = keepalive_cycle()
    rates = best_rates(
        [
            (request_connection, podnet_parse(REQUEST, 2)),
            (httptools_request_parser, httptools_parse(REQUEST)),
            (response_connection, podnet_parse(RESPONSE, 3)),
            (httptools_response_parser, httptools_parse(RESPONSE)),
            (_none, lambda _: cycle()),
        ],
        seconds,
    )
    rows = [
        ("request  -> Request, End", REQUEST, rates[0], rates[1]),
        ("response -> Response, Data, End", RESPONSE, rates[2], rates[3]),
    ]
    print(f"{'case':34s} {'bytes':>5s} {'podnet/s':>11s} {'httptools/s':>11s} {'ratio':>6s}")
    for name, data, ours, theirs in rows:
        print(f"{name:34s} {len(data):5d} {ours:11,.0f} {theirs:11,.0f} {theirs / ours:5.1f}x")
    print(f"{'keep-alive cycle (parse+send+reset)':34s} {'':5s} {rates[4]:11,.0f}")
    print("ratio = httptools parses/s / podnet parses/s (1.0x would be parity)")


def _none() -> None:
    return None


if __name__ == "__main__":
    main()
