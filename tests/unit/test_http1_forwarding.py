"""Forwarding: hop-by-hop removal, X-Forwarded-*, Via, and re-framing end to end."""

from __future__ import annotations

from podnet.proxy.http1 import (
    HOP_BY_HOP,
    Connection,
    Data,
    EndOfMessage,
    Event,
    Headers,
    Request,
    Response,
    Role,
    add_forwarding,
    forward_request,
    forward_response,
    forward_trailers,
    strip_hop_by_hop,
)


def test_strip_hop_by_hop() -> None:
    headers = Headers(
        [(name.decode(), b"x") for name in sorted(HOP_BY_HOP) if name != b"connection"]
        + [
            (b"Connection", b"X-Secret, keep-alive, HOST, Content-Length"),
            (b"X-Secret", b"s"),
            (b"Host", b"a"),
            (b"Content-Length", b"3"),
            (b"Accept", b"*/*"),
        ]
    )
    stripped = strip_hop_by_hop(headers)
    assert stripped.raw_items() == [(b"Host", b"a"), (b"Content-Length", b"3"), (b"Accept", b"*/*")]


def test_add_forwarding_appends_and_replaces() -> None:
    headers = Headers(
        [
            (b"Host", b"app"),
            (b"X-Forwarded-For", b"203.0.113.7"),
            (b"X-Forwarded-For", b"198.51.100.1, 10.1.1.1"),
            (b"X-Forwarded-Proto", b"https"),
            (b"X-Forwarded-Host", b"spoofed"),
            (b"Via", b"1.0 edge"),
        ]
    )
    out = add_forwarding(headers, client=b"2001:db8::1", proto=b"http", host=b"app", via=b"1.1 p")
    assert out.raw_items() == [
        (b"Host", b"app"),
        (b"Via", b"1.0 edge"),
        (b"X-Forwarded-For", b"203.0.113.7, 198.51.100.1, 10.1.1.1, 2001:db8::1"),
        (b"X-Forwarded-Proto", b"http"),
        (b"X-Forwarded-Host", b"app"),
        (b"Via", b"1.1 p"),
    ]


def test_forward_request_reframes_and_keeps_host() -> None:
    request = Request(
        b"POST",
        b"/upload",
        b"1.1",
        Headers(
            [
                (b"Host", b"files.example"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Connection", b"keep-alive, X-Hop"),
                (b"X-Hop", b"1"),
                (b"TE", b"trailers"),
                (b"Proxy-Authorization", b"Basic eA=="),
                (b"Content-Type", b"text/plain"),
            ]
        ),
    )
    out = forward_request(request, client=b"10.0.0.9", proto=b"https")
    assert out.version == b"1.1" and out.facts is None
    assert out.headers.raw_items() == [
        (b"Host", b"files.example"),
        (b"Content-Type", b"text/plain"),
        (b"Transfer-Encoding", b"chunked"),
        (b"X-Forwarded-For", b"10.0.0.9"),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-Host", b"files.example"),
        (b"Via", b"1.1 podnet"),
    ]


def test_forward_request_keeps_an_upgrade_and_http10_via() -> None:
    upgrade = Request(
        b"GET",
        b"/ws",
        b"1.1",
        Headers([(b"Host", b"a"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]),
    )
    headers = forward_request(upgrade, client=b"1.2.3.4").headers
    assert headers.get(b"connection") == b"upgrade" and headers.get(b"upgrade") == b"websocket"
    old = Request(b"GET", b"/", b"1.0", Headers([(b"Host", b"a")]))
    assert forward_request(old, client=b"1.2.3.4", pseudonym=b"edge").headers.get(b"via") == (
        b"1.0 edge"
    )


def test_forward_response() -> None:
    response = Response(
        200,
        b"OK",
        Headers(
            [(b"Transfer-Encoding", b"chunked"), (b"Keep-Alive", b"timeout=5"), (b"ETag", b"x")]
        ),
        b"1.0",
    )
    out = forward_response(response)
    assert out.headers.raw_items() == [(b"ETag", b"x"), (b"Via", b"1.0 podnet")]
    switching = Response(101, b"", Headers([(b"Connection", b"upgrade"), (b"Upgrade", b"ws")]))
    assert forward_response(switching).headers.raw_items() == [
        (b"Connection", b"upgrade"),
        (b"Upgrade", b"ws"),
        (b"Via", b"1.1 podnet"),
    ]


def _proxy_once(request_bytes: bytes, response_bytes: bytes) -> tuple[bytes, bytes]:
    """Run one request through a proxy made of two connections; return what each peer gets."""
    downstream, upstream = Connection(Role.SERVER), Connection(Role.CLIENT)
    to_upstream = to_client = b""
    for event in downstream.receive_data(request_bytes):
        sent = forward_request(event, client=b"192.0.2.1") if isinstance(event, Request) else event
        to_upstream += upstream.send(sent)
    events: list[Event] = upstream.receive_data(response_bytes) + upstream.receive_eof()
    for event in events:
        if isinstance(event, Response):
            to_client += downstream.send(forward_response(event))
        elif isinstance(event, (Data, EndOfMessage)):
            to_client += downstream.send(event)
    return to_upstream, to_client


def test_chunked_request_and_close_delimited_response_through_a_proxy() -> None:
    request = (
        b"POST /p HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
    )
    to_upstream, to_client = _proxy_once(
        request, b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nbody until close"
    )
    assert to_upstream == (
        b"POST /p HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n"
        b"X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: app\r\n"
        b"Via: 1.1 podnet\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
    )
    assert to_client == (
        b"HTTP/1.1 200 OK\r\nServer: old\r\nVia: 1.0 podnet\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\nbody until close\r\n0\r\n\r\n"
    )


def test_smuggling_attempt_never_reaches_the_upstream_as_framing() -> None:
    """Connection: content-length cannot strip the length the proxy framed the body by."""
    request = (
        b"POST / HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\n"
        b"hello"
    )
    to_upstream, _ = _proxy_once(request, b"HTTP/1.1 204 No Content\r\n\r\n")
    assert b"Content-Length: 5\r\n" in to_upstream and to_upstream.endswith(b"\r\n\r\nhello")


def test_forward_trailers_drops_what_trailers_may_not_carry() -> None:
    trailers = Headers(
        [
            (b"X-Checksum", b"abc"),
            (b"Content-Length", b"0"),
            (b"Host", b"evil"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Server-Timing", b"db;dur=53"),
        ]
    )
    assert forward_trailers(trailers).raw_items() == [
        (b"X-Checksum", b"abc"),
        (b"Server-Timing", b"db;dur=53"),
    ]


def test_http10_request_without_host_gets_one_from_an_absolute_target() -> None:
    request = Request(b"GET", b"http://app.example:8080/x", b"1.0", Headers())
    out = forward_request(request, client=b"1.2.3.4")
    assert out.headers.get(b"host") == b"app.example:8080"
    assert (
        Connection(Role.CLIENT).send(out).startswith(b"GET http://app.example:8080/x HTTP/1.1\r\n")
    )
