"""Framing attacks and malformed messages: each is refused with the right status.

Every case is fed twice, whole and one byte at a time, and must fail the same
way both times: a parser whose verdict depends on how the bytes were split is
itself a smuggling vector. Responses from an upstream fail with 502.
"""

from __future__ import annotations

import pytest

from podnet.proxy.http1 import (
    Connection,
    EndOfMessage,
    Event,
    Headers,
    Limits,
    RemoteProtocolError,
    Request,
    Role,
    State,
    error_response,
)

H = b"Host: example.com\r\n"


def feed_whole(conn: Connection, data: bytes) -> list[Event]:
    events = conn.receive_data(data)
    return events + conn.receive_eof()


def feed_bytewise(conn: Connection, data: bytes) -> list[Event]:
    events: list[Event] = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1])
    return events + conn.receive_eof()


def upstream(method: bytes = b"GET") -> Connection:
    conn = Connection(Role.CLIENT)
    conn.send(Request(method, b"/", b"1.1", Headers([(b"Host", b"a")])))
    conn.send(EndOfMessage())
    return conn


def rejected(data: bytes, *, role: Role) -> list[int]:
    """The status of the error for whole and byte-wise feeding."""
    statuses = []
    for feed in (feed_whole, feed_bytewise):
        conn = Connection(role) if role is Role.SERVER else upstream()
        with pytest.raises(RemoteProtocolError) as info:
            feed(conn, data)
        assert info.value.must_close
        assert conn.their_state is State.ERROR
        assert not conn.keep_alive
        statuses.append(info.value.status)
    return statuses


# (id, request bytes, status). Host is added where the case is not about Host.
REQUESTS = [
    # -- CL.TE / TE.CL: both framing headers
    ("cl-te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
    ("te-cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"Content-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400),
    ("te-cl-zero", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", 400),
    ("cl-te-obfuscated", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n"
     b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    # -- TE.TE obfuscation
    ("te-xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    ("te-chunked-identity", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked, identity\r\n\r\n", 400),
    ("te-identity", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("te-gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("te-chunked-param", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    ("te-quoted", b"POST / HTTP/1.1\r\n" + H + b'Transfer-Encoding: "chunked"\r\n\r\n', 400),
    ("te-inner-space", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chu nked\r\n\r\n", 400),
    ("te-empty", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \r\n\r\n", 400),
    ("te-comma-only", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: ,\r\n\r\n", 400),
    ("te-duplicate-lines", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", 400),
    ("te-duplicate-list", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("te-second-line-identity", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("te-gzip-chunked", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("te-space-before-colon", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding : chunked\r\n\r\n", 400),
    ("te-tab-before-colon", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding\t: chunked\r\n\r\n", 400),
    ("te-obs-fold", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n", 400),
    ("te-folded-under-other", b"POST / HTTP/1.1\r\n" + H + b"X-Foo: bar\r\n"
     b" Transfer-Encoding: chunked\r\n\r\n", 400),
    ("te-leading-space-name", b"POST / HTTP/1.1\r\n" + H
     + b" Transfer-Encoding: chunked\r\n\r\n", 400),
    ("te-vertical-tab", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: \x0bchunked\r\n\r\n", 400),
    ("te-formfeed", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\x0c\r\n\r\n", 400),
    ("te-nul", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\x00\r\n\r\n", 400),
    ("te-underscore", b"POST / HTTP/1.1\r\n" + H + b"Transfer_Encoding: chunked\r\n\r\n", 400),
    ("cl-underscore", b"POST / HTTP/1.1\r\n" + H + b"Content_Length: 5\r\n\r\nhello", 400),
    ("te-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # -- Content-Length
    ("cl-differing-lines", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Content-Length: 6\r\n\r\nhello!", 400),
    ("cl-identical-lines", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Content-Length: 5\r\n\r\nhello", 400),
    ("cl-list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!", 400),
    ("cl-identical-list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("cl-plus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    ("cl-minus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\n", 400),
    ("cl-hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("cl-decimal", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5.0\r\n\r\nhello", 400),
    ("cl-inner-space", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 0\r\n\r\n", 400),
    ("cl-empty", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n", 400),
    ("cl-letters", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: five\r\n\r\n", 400),
    ("cl-huge", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000000000000000000\r\n\r\n", 400),
    ("cl-overflow-u64", b"POST / HTTP/1.1\r\n" + H
     + b"Content-Length: 18446744073709551621\r\n\r\nhello", 400),
    ("cl-unicode-digit", b"POST / HTTP/1.1\r\n" + H
     + "Content-Length: \u0665\r\n\r\n".encode(), 400),
    ("cl-space-before-colon", b"POST / HTTP/1.1\r\n" + H + b"Content-Length : 5\r\n\r\nhello",
     400),
    # -- chunked body syntax
    ("chunk-non-hex", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"g\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-0x", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-negative", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"-1\r\n", 400),
    ("chunk-empty-size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-overflow", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"1000000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-too-large", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"1000000000000000\r\n", 400),
    ("chunk-size-trailing-space", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-leading-space", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-bare-lf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-bare-cr", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\rhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-empty", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5;\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-no-value", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5;a=\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-open-quote", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b'5;a="x\r\nhello\r\n0\r\n\r\n', 400),
    ("chunk-ext-control", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5;a=\x01\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-bare-lf-inside", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-data-no-crlf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhelloX\r\n0\r\n\r\n", 400),
    ("chunk-data-bare-lf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\n0\r\n\r\n", 400),
    ("chunk-data-too-long", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"3\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-line-too-long", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-trailer-obs-fold", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n", 400),
    ("chunk-trailer-bare-lf", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\n", 400),
    ("chunk-last-then-lf", b"POST / HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\n", 400),
    # -- field syntax
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\r\n\tb\r\n\r\n", 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-Foo : a\r\n\r\n", 400),
    ("name-with-space", b"GET / HTTP/1.1\r\n" + H + b"X Foo: a\r\n\r\n", 400),
    ("name-with-at", b"GET / HTTP/1.1\r\n" + H + b"X@Foo: a\r\n\r\n", 400),
    ("name-non-ascii", b"GET / HTTP/1.1\r\n" + H + b"X-F\xc3\xa9: a\r\n\r\n", 400),
    ("empty-name", b"GET / HTTP/1.1\r\n" + H + b": a\r\n\r\n", 400),
    ("no-colon", b"GET / HTTP/1.1\r\n" + H + b"X-Foo a\r\n\r\n", 400),
    ("value-nul", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\x00b\r\n\r\n", 400),
    ("value-del", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\x7fb\r\n\r\n", 400),
    ("value-escape", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\x1bb\r\n\r\n", 400),
    ("value-bare-cr", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\rb\r\n\r\n", 400),
    ("value-bare-lf", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\nb\r\n\r\n", 400),
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare-lf-end", b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("lf-first", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # -- Host
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("two-hosts-same", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("host-list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    ("host-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("host-slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: evil@a\r\n\r\n", 400),
    ("host-bad-port", b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    ("host-http10-two", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    # -- request line
    ("method-bad-char", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method-empty", b" / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("double-space", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("tab-separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("trailing-space", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
    ("missing-version", b"GET /\r\n" + H + b"\r\n", 400),
    ("version-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("version-garbage", b"GET / HTTP/1.1x\r\n" + H + b"\r\n", 400),
    ("version-two-digits", b"GET / HTTP/11.1\r\n" + H + b"\r\n", 400),
    ("version-no-minor", b"GET / HTTP/1\r\n" + H + b"\r\n", 400),
    ("version-2", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("version-0.9", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    ("target-relative", b"GET index.html HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-star-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-fragment", b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-non-ascii", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-nul", b"GET /a\x00 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("connect-origin-form", b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("connect-no-port", b"CONNECT example.com HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    # -- limits
    ("request-line-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("head-too-large", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 40000 + b"\r\n\r\n",
     431),
    ("many-small-fields", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n" * 101 + b"\r\n", 431),
    # -- incomplete at EOF
    ("eof-in-head", b"GET / HTTP/1.1\r\nHost: a\r\n", 400),
    ("eof-in-body", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nhello", 400),
    ("eof-in-chunk", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhel", 400),
    ("eof-before-last-chunk", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n", 400),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "status"), [c[1:] for c in REQUESTS], ids=[c[0] for c in REQUESTS]
)
def test_request_rejected(data: bytes, status: int) -> None:
    assert rejected(data, role=Role.SERVER) == [status, status]


RESPONSES = [
    ("cl-te", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("te-cl", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
    ("cl-differing", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
    ("cl-list", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"),
    ("cl-sign", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
    ("te-gzip", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
    ("te-gzip-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    ("te-xchunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n"),
    ("te-http10", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n"),
    ("space-before-colon", b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
    ("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    ("value-control", b"HTTP/1.1 200 OK\r\nSet-Cookie: a\x01\r\nContent-Length: 0\r\n\r\n"),
    ("status-4-digits", b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status-2-digits", b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status-below-100", b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"),
    ("status-no-space", b"HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n"),
    ("status-version", b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status-reason-control", b"HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n"),
    ("not-http", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    ("chunk-bad", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("chunk-no-crlf", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n"),
    ("switch-not-proposed", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
    ("eof-before-response", b""),
    ("eof-in-head", b"HTTP/1.1 200 OK\r\nContent-Le"),
    ("eof-in-body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"),
    ("eof-in-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
    ("head-too-large", b"HTTP/1.1 200 OK\r\nX: " + b"a" * 40000 + b"\r\n\r\n"),
]


@pytest.mark.parametrize("data", [c[1] for c in RESPONSES], ids=[c[0] for c in RESPONSES])
def test_upstream_response_rejected_with_502(data: bytes) -> None:
    assert rejected(data, role=Role.CLIENT) == [502, 502]


def test_upstream_error_keeps_the_original_status_as_cause() -> None:
    conn = upstream()
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
    assert (info.value.status, info.value.cause_status) == (502, 501)
    assert str(info.value).startswith("upstream: ")


def test_bytes_from_idle_upstream_are_refused() -> None:
    """A stale 408 on a pooled connection must not answer the next request."""
    conn = Connection(Role.CLIENT)
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
    assert info.value.status == 502


def test_bytes_after_complete_response_are_refused_on_next_cycle() -> None:
    conn = upstream()
    events = conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert [type(e) for e in events] == [type(events[0]), EndOfMessage]
    with pytest.raises(RemoteProtocolError):
        conn.start_next_cycle()


def test_error_is_sticky() -> None:
    conn = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.receive_eof()


def test_error_response_bytes() -> None:
    conn = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(b"GET /" + b"a" * 9000)
    assert error_response(info.value) == (
        b"HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )


def test_414_and_431_found_before_the_head_ends() -> None:
    """Limits are enforced on partial heads: the proxy never buffers past them."""
    conn = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(b"GET /" + b"a" * 8300)
    assert info.value.status == 414
    conn = Connection(Role.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(100):
            conn.receive_data(b"X-Foo: " + b"a" * 1000 + b"\r\n")
    assert info.value.status == 431


def test_bare_lf_found_before_the_head_ends() -> None:
    conn = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"GET / HTTP/1.1\nHo")


def test_framing_lookalike_passes_when_not_framing() -> None:
    """Other underscore names are ordinary fields (only framing look-alikes are refused)."""
    conn = Connection(Role.SERVER)
    events = conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX_Custom: 1\r\n\r\n")
    assert isinstance(events[0], Request)
    assert events[0].headers.get(b"x_custom") == b"1"


ACCEPTED = [
    ("te-tab", b"Transfer-Encoding:\tchunked", b"5\r\nhello\r\n0\r\n\r\n"),
    ("te-ows", b"Transfer-Encoding:   chunked \t", b"5\r\nhello\r\n0\r\n\r\n"),
    ("te-case", b"transfer-encoding: CHUNKED", b"5\r\nhello\r\n0\r\n\r\n"),
    ("te-empty-elements", b"Transfer-Encoding: , chunked,", b"5\r\nhello\r\n0\r\n\r\n"),
    ("cl-ows", b"Content-Length:\t 5 ", b"hello"),
    ("cl-leading-zeros", b"content-length: 00005", b"hello"),
    ("chunk-upper-hex-ext", b"Transfer-Encoding: chunked", b'5 ; a="b;c"\r\nhello\r\n0\r\n\r\n'),
]


@pytest.mark.parametrize(("field", "body"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_legitimate_variants_are_accepted(field: bytes, body: bytes) -> None:
    """Strictness must not turn into refusing what RFC 9110/9112 allow."""
    data = b"POST / HTTP/1.1\r\n" + H + field + b"\r\n\r\n" + body
    for feed in (feed_whole, feed_bytewise):
        events = feed(Connection(Role.SERVER), data)
        assert b"".join(e.data for e in events if hasattr(e, "data")) == b"hello"
        assert isinstance(events[-2], EndOfMessage)


def test_limits_are_configurable() -> None:
    limits = Limits(max_request_line=20, max_head=60, max_fields=2)
    with pytest.raises(RemoteProtocolError) as info:
        Connection(Role.SERVER, limits).receive_data(b"GET /" + b"a" * 30 + b" HTTP/1.1\r\n\r\n")
    assert info.value.status == 414
    with pytest.raises(RemoteProtocolError) as info:
        Connection(Role.SERVER, limits).receive_data(
            b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"
        )
    assert info.value.status == 431
    with pytest.raises(RemoteProtocolError) as info:
        Connection(Role.SERVER, limits).receive_data(b"GET / HTTP/1.1\r\nHost: " + b"a" * 60)
    assert info.value.status == 431
