"""The HTTP/1.1 connection: cycles, bodies, keep-alive, pipelining, 100-continue, switching."""

from __future__ import annotations

import importlib

import pytest

from podnet.proxy import http1
from podnet.proxy.framing import Body
from podnet.proxy.http1 import (
    CHUNKED,
    NO_BODY,
    Connection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Framing,
    Headers,
    Limits,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    State,
)

END = EndOfMessage()


def raw_request(
    method: bytes = b"GET", target: bytes = b"/", *fields: bytes, version: bytes = b"1.1"
) -> bytes:
    return b"%s %s HTTP/%s\r\n%s\r\n" % (
        method,
        target,
        version,
        b"".join(f + b"\r\n" for f in fields),
    )


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


def body(events: list[Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, Data))


def upstream(method: bytes = b"GET", *fields: tuple[bytes, bytes]) -> Connection:
    conn = Connection(Role.CLIENT)
    conn.send(Request(method, b"/", b"1.1", Headers([(b"Host", b"a"), *fields])))
    conn.send(END)
    return conn


def respond(conn: Connection, *fields: tuple[bytes, bytes], data: bytes = b"") -> bytes:
    """Send a 200 with ``data`` on a server connection; return the bytes."""
    headers = Headers([(b"Content-Length", str(len(data))), *fields])
    return conn.send(Response(200, b"OK", headers)) + conn.send(Data(data)) + conn.send(END)


# -- requests --------------------------------------------------------------------


def test_get_request_events_and_states() -> None:
    conn = Connection(Role.SERVER)
    events = conn.receive_data(raw_request(b"GET", b"/a?b=c", b"Host: example.com", b"X-Y:  z "))
    request = events[0]
    assert events == [
        Request(b"GET", b"/a?b=c", b"1.1", Headers([(b"Host", b"example.com"), (b"X-Y", b"z")])),
        EndOfMessage(),
    ]
    assert isinstance(request, Request)
    assert request.headers.raw_items() == [(b"Host", b"example.com"), (b"X-Y", b"z")]
    assert list(request.headers) == [(b"host", b"example.com"), (b"x-y", b"z")]
    assert (request.keep_alive, request.framing, request.upgrade) == (True, NO_BODY, None)
    assert (conn.their_state, conn.our_state) == (State.DONE, State.SEND_RESPONSE)
    assert conn.should_pause_reading


def test_content_length_body_streams_as_it_arrives() -> None:
    conn = Connection(Role.SERVER)
    head = raw_request(b"POST", b"/", b"Host: a", b"Content-Length: 10")
    assert kinds(conn.receive_data(head + b"abc")) == ["Request", "Data"]
    assert conn.trailing_data == (b"", False)
    assert conn.receive_data(b"defg") == [Data(b"defg")]
    assert conn.receive_data(b"hij") == [Data(b"hij"), END]


def test_large_body_is_never_buffered() -> None:
    conn = Connection(Role.SERVER)
    size, piece = 1 << 20, b"x" * 65536
    conn.receive_data(raw_request(b"PUT", b"/f", b"Host: a", b"Content-Length: %d" % size))
    for _ in range(size // len(piece)):
        events = conn.receive_data(piece)
        assert events[0] == Data(piece)
        assert conn.trailing_data[0] == b""
    assert events[-1] == END


def test_chunked_body_with_extensions_and_trailers() -> None:
    conn = Connection(Role.SERVER)
    data = raw_request(b"POST", b"/", b"Host: a", b"Transfer-Encoding: Chunked") + (
        b"5;name=value\r\nhello\r\n"
        b'6 ; q = "a \\" b" ;x\r\n world\r\n'
        b"A\r\n0123456789\r\n"
        b"0\r\nX-Checksum: abc\r\nX-Other:  1 \r\n\r\n"
    )
    events = conn.receive_data(data)
    assert events[0].framing is CHUNKED  # type: ignore[union-attr]
    assert body(events) == b"hello world0123456789"
    assert events[-1] == EndOfMessage(Headers([(b"X-Checksum", b"abc"), (b"X-Other", b"1")]))


def test_zero_length_and_chunked_empty_bodies() -> None:
    conn = Connection(Role.SERVER)
    events = conn.receive_data(raw_request(b"POST", b"/", b"Host: a", b"Content-Length: 0"))
    assert kinds(events) == ["Request", "EndOfMessage"]
    respond(conn)
    conn.start_next_cycle()
    data = raw_request(b"POST", b"/", b"Host: a", b"Transfer-Encoding: chunked") + b"0\r\n\r\n"
    assert kinds(conn.receive_data(data)) == ["Request", "EndOfMessage"]


def test_leading_empty_lines_are_skipped() -> None:
    conn = Connection(Role.SERVER)
    events = conn.receive_data(b"\r\n\r\n" + raw_request(b"GET", b"/", b"Host: a"))
    assert kinds(events) == ["Request", "EndOfMessage"]


def test_later_http_1x_minor_reads_as_1_1() -> None:
    events = Connection(Role.SERVER).receive_data(b"GET / HTTP/1.7\r\nHost: a\r\n\r\n")
    assert events[0].version == b"1.1"  # type: ignore[union-attr]


def test_method_token_is_case_sensitive_and_unknown_methods_pass() -> None:
    events = Connection(Role.SERVER).receive_data(raw_request(b"purge", b"/", b"Host: a"))
    assert events[0].method == b"purge"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("method", "target"),
    [
        (b"OPTIONS", b"*"),
        (b"GET", b"http://example.com/x?y"),
        (b"CONNECT", b"example.com:443"),
        (b"CONNECT", b"[::1]:8443"),
        (b"GET", b"/%7Euser/a;b,c=d!$&'()*+@:"),
    ],
)
def test_request_target_forms(method: bytes, target: bytes) -> None:
    events = Connection(Role.SERVER).receive_data(raw_request(method, target, b"Host: a"))
    assert events[0].target == target  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("target", "host", "authority"),
    [
        (b"/x", b"a.example:8080", b"a.example:8080"),
        (b"http://b.example/x", b"a.example", b"b.example"),
        (b"http://user@b.example:81?q", b"a.example", b"b.example:81"),
    ],
)
def test_authority(target: bytes, host: bytes, authority: bytes) -> None:
    request = Request(b"GET", target, b"1.1", Headers([(b"Host", host)]))
    assert request.authority == authority
    assert Request(b"CONNECT", b"c:443", b"1.1", Headers([(b"Host", host)])).authority == b"c:443"


def test_obs_text_in_values_is_accepted() -> None:
    events = Connection(Role.SERVER).receive_data(
        raw_request(b"GET", b"/", b"Host: a", b"X: caf\xe9")
    )
    assert events[0].headers.get(b"x") == b"caf\xe9"  # type: ignore[union-attr]


def test_empty_host_and_ipv6_host() -> None:
    for host in (b"", b"[2001:db8::1]:8080"):
        events = Connection(Role.SERVER).receive_data(raw_request(b"GET", b"/", b"Host: " + host))
        assert events[0].authority == host  # type: ignore[union-attr]


# -- keep-alive -------------------------------------------------------------------


def test_http11_persists_and_cycles() -> None:
    conn = Connection(Role.SERVER)
    for _ in range(3):
        assert kinds(conn.receive_data(raw_request(b"GET", b"/", b"Host: a"))) == [
            "Request",
            "EndOfMessage",
        ]
        assert respond(conn, data=b"ok") == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        assert (conn.our_state, conn.their_state) == (State.DONE, State.DONE)
        assert conn.start_next_cycle() == []


def test_connection_close_request() -> None:
    conn = Connection(Role.SERVER)
    events = conn.receive_data(raw_request(b"GET", b"/", b"Host: a", b"Connection: Close"))
    assert not events[0].keep_alive  # type: ignore[union-attr]
    assert conn.their_state is State.MUST_CLOSE
    sent = respond(conn)
    assert sent == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert conn.our_state is State.MUST_CLOSE
    with pytest.raises(LocalProtocolError):
        conn.start_next_cycle()


def test_http10_defaults_to_close() -> None:
    conn = Connection(Role.SERVER)
    events = conn.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    assert events[0].version == b"1.0" and not events[0].keep_alive  # type: ignore[union-attr]
    head = conn.send(Response(200, b"OK", Headers([(b"Content-Type", b"text/plain")])))
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    assert conn.send(Data(b"raw body")) == b"raw body"  # close-delimited, not chunked
    assert conn.send(END) == b""
    assert conn.our_state is State.MUST_CLOSE


def test_http10_keep_alive_token() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    sent = respond(conn, data=b"x")
    assert sent == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx"
    conn.start_next_cycle()


def test_http10_client_gets_no_interim_responses() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(b"PUT / HTTP/1.0\r\nContent-Length: 1\r\n\r\n")
    assert conn.send(Response(100, b"", Headers())) == b""
    assert conn.our_state is State.SEND_RESPONSE


def test_http10_client_gets_close_delimited_instead_of_chunked() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    headers = Headers([(b"Transfer-Encoding", b"chunked")])
    assert conn.send(Response(200, b"OK", headers)) == (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
    )
    assert conn.send(Data(b"abc")) == b"abc"
    assert not conn.keep_alive


def test_response_connection_close_ends_server_side() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(raw_request(b"GET", b"/", b"Host: a"))
    respond(conn, (b"Connection", b"close"))
    assert conn.our_state is State.MUST_CLOSE and conn.their_state is State.MUST_CLOSE


# -- pipelining ------------------------------------------------------------------


def test_pipelined_requests_wait_for_the_cycle() -> None:
    conn = Connection(Role.SERVER)
    first = raw_request(b"POST", b"/1", b"Host: a", b"Content-Length: 3") + b"abc"
    second = raw_request(b"GET", b"/2", b"Host: a")
    third = raw_request(b"GET", b"/3", b"Host: a")
    events = conn.receive_data(first + second + third[:10])
    assert kinds(events) == ["Request", "Data", "EndOfMessage"]
    assert conn.should_pause_reading
    assert conn.receive_data(third[10:]) == []
    respond(conn)
    events = conn.start_next_cycle()
    assert events[0].target == b"/2"  # type: ignore[union-attr]
    respond(conn)
    assert conn.start_next_cycle()[0].target == b"/3"  # type: ignore[union-attr]
    respond(conn)
    assert conn.start_next_cycle() == []
    assert not conn.should_pause_reading


def test_paused_buffer_is_bounded() -> None:
    conn = Connection(Role.SERVER, Limits(max_buffer=1000))
    conn.receive_data(raw_request(b"GET", b"/", b"Host: a"))
    conn.receive_data(b"x" * 1000)
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"x")


def test_start_next_cycle_before_the_cycle_ends() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(raw_request(b"GET", b"/", b"Host: a"))
    with pytest.raises(LocalProtocolError):
        conn.start_next_cycle()


# -- 100-continue -----------------------------------------------------------------


def test_expect_100_continue() -> None:
    conn = Connection(Role.SERVER)
    head = raw_request(b"PUT", b"/", b"Host: a", b"Content-Length: 4", b"Expect: 100-Continue")
    request = conn.receive_data(head)[0]
    assert isinstance(request, Request) and request.expect_continue
    assert conn.client_is_waiting_for_100_continue
    assert conn.send(Response(100, b"", Headers())) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not conn.client_is_waiting_for_100_continue
    assert conn.receive_data(b"data") == [Data(b"data"), END]
    respond(conn)
    conn.start_next_cycle()


def test_expect_continue_ends_when_the_client_sends_anyway() -> None:
    conn = Connection(Role.SERVER)
    head = raw_request(b"PUT", b"/", b"Host: a", b"Content-Length: 4", b"Expect: 100-continue")
    conn.receive_data(head + b"da")
    assert not conn.client_is_waiting_for_100_continue


def test_expect_continue_not_for_http10_or_empty_bodies() -> None:
    conn = Connection(Role.SERVER)
    events = conn.receive_data(
        b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    )
    assert not events[0].expect_continue  # type: ignore[union-attr]
    conn = Connection(Role.SERVER)
    conn.receive_data(raw_request(b"GET", b"/", b"Host: a", b"Expect: 100-continue"))
    assert not conn.client_is_waiting_for_100_continue


# -- switching protocols ----------------------------------------------------------

UPGRADE = raw_request(
    b"GET", b"/chat", b"Host: a", b"Connection: keep-alive, Upgrade", b"Upgrade: websocket"
)


def test_upgrade_accepted() -> None:
    conn = Connection(Role.SERVER)
    events = conn.receive_data(UPGRADE + b"\x81\x05hello")
    assert kinds(events) == ["Request", "EndOfMessage"]
    assert events[0].upgrade == b"websocket"  # type: ignore[union-attr]
    assert conn.their_state is State.MIGHT_SWITCH
    assert conn.receive_data(b"\x81\x01!") == []
    headers = Headers([(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")])
    sent = conn.send(Response(101, b"", headers))
    assert sent.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert (conn.our_state, conn.their_state) == (State.SWITCHED, State.SWITCHED)
    assert conn.trailing_data == (b"\x81\x05hello\x81\x01!", False)
    assert conn.receive_eof() == [ConnectionClosed()]
    assert conn.trailing_data[1]


def test_upgrade_declined_goes_on_as_http() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(UPGRADE + raw_request(b"GET", b"/next", b"Host: a"))
    respond(conn)
    assert conn.their_state is State.DONE
    assert conn.start_next_cycle()[0].target == b"/next"  # type: ignore[union-attr]


def test_upgrade_needs_the_connection_token_and_http11() -> None:
    plain = raw_request(b"GET", b"/", b"Host: a", b"Upgrade: websocket")
    assert Connection(Role.SERVER).receive_data(plain)[0].upgrade is None  # type: ignore[union-attr]
    old = b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert Connection(Role.SERVER).receive_data(old)[0].upgrade is None  # type: ignore[union-attr]


def test_upgrade_with_a_body_switches_after_the_body() -> None:
    conn = Connection(Role.SERVER)
    head = raw_request(
        b"POST", b"/", b"Host: a", b"Connection: upgrade", b"Upgrade: h2c", b"Content-Length: 2"
    )
    conn.receive_data(head + b"a")
    assert conn.their_state is State.SEND_BODY
    with pytest.raises(LocalProtocolError):  # the request is not complete yet
        conn.send(Response(101, b"", Headers([(b"Upgrade", b"h2c")])))


def test_connect_tunnel() -> None:
    conn = Connection(Role.SERVER)
    events = conn.receive_data(raw_request(b"CONNECT", b"db:5432", b"Host: db:5432") + b"\x00\x01")
    assert events[0].is_connect  # type: ignore[union-attr]
    assert conn.send(Response(200, b"Connection Established", Headers())) == (
        b"HTTP/1.1 200 Connection Established\r\n\r\n"
    )
    assert conn.our_state is State.SWITCHED
    assert conn.trailing_data == (b"\x00\x01", False)


def test_connect_refused_goes_on_as_http() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(raw_request(b"CONNECT", b"db:5432", b"Host: db:5432"))
    conn.send(Response(403, b"", Headers([(b"Content-Length", b"0")])))
    conn.send(END)
    conn.start_next_cycle()


def test_101_without_proposal_cannot_be_sent() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(raw_request(b"GET", b"/", b"Host: a"))
    with pytest.raises(LocalProtocolError):
        conn.send(Response(101, b"", Headers([(b"Upgrade", b"websocket")])))
    with pytest.raises(LocalProtocolError):
        conn.send(Response(200, b"", Headers()))  # the connection is unusable now


# -- end of stream ----------------------------------------------------------------


def test_eof_between_requests() -> None:
    conn = Connection(Role.SERVER)
    assert conn.receive_eof() == [ConnectionClosed()]
    assert conn.their_state is State.CLOSED
    assert conn.receive_eof() == []
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"GET")


def test_half_close_after_request_still_allows_the_response() -> None:
    conn = Connection(Role.SERVER)
    events = conn.receive_data(raw_request(b"GET", b"/", b"Host: a")) + conn.receive_eof()
    assert kinds(events) == ["Request", "EndOfMessage", "ConnectionClosed"]
    sent = respond(conn)
    assert b"Connection: close" in sent
    assert (conn.our_state, conn.their_state) == (State.MUST_CLOSE, State.CLOSED)
    assert conn.send(ConnectionClosed()) == b""
    assert (conn.our_state, conn.their_state) == (State.CLOSED, State.CLOSED)


def test_eof_drops_pipelined_requests() -> None:
    conn = Connection(Role.SERVER)
    data = raw_request(b"GET", b"/1", b"Host: a") + raw_request(b"GET", b"/2", b"Host: a")
    events = conn.receive_data(data) + conn.receive_eof()
    assert kinds(events) == ["Request", "EndOfMessage", "ConnectionClosed"]


# -- sending responses --------------------------------------------------------------


def _server_after_get(version: bytes = b"1.1", method: bytes = b"GET") -> Connection:
    conn = Connection(Role.SERVER)
    host = b"Host: a\r\n" if version == b"1.1" else b""
    conn.receive_data(b"%s / HTTP/%s\r\n%s\r\n" % (method, version, host))
    return conn


def test_response_without_length_is_chunked_for_http11() -> None:
    conn = _server_after_get()
    assert conn.send(Response(200, b"OK", Headers([(b"X", b"1")]))) == (
        b"HTTP/1.1 200 OK\r\nX: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert conn.send(Data(b"hello")) == b"5\r\nhello\r\n"
    assert conn.send(Data(b"")) == b""
    assert conn.send(Data(b"x" * 26)) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert conn.send(EndOfMessage(Headers([(b"X-Sum", b"9")]))) == b"0\r\nX-Sum: 9\r\n\r\n"
    assert conn.keep_alive


def test_content_length_is_enforced_on_send() -> None:
    conn = _server_after_get()
    conn.send(Response(200, b"", Headers([(b"Content-Length", b"3")])))
    with pytest.raises(LocalProtocolError):
        conn.send(Data(b"abcd"))
    conn = _server_after_get()
    conn.send(Response(200, b"", Headers([(b"Content-Length", b"3")])))
    conn.send(Data(b"ab"))
    with pytest.raises(LocalProtocolError):
        conn.send(END)
    conn = _server_after_get()
    conn.send(Response(200, b"", Headers([(b"Content-Length", b"0")])))
    with pytest.raises(LocalProtocolError):
        conn.send(EndOfMessage(Headers([(b"X", b"1")])))  # trailers need chunked


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)])
def test_bodyless_responses_keep_their_content_length_and_send_no_body(
    method: bytes, status: int
) -> None:
    conn = _server_after_get(method=method)
    head = conn.send(Response(status, b"", Headers([(b"Content-Length", b"42")])))
    assert head.endswith(b"Content-Length: 42\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(Data(b"x"))


def test_bodyless_response_gets_no_chunked_coding() -> None:
    conn = _server_after_get(method=b"HEAD")
    assert conn.send(Response(200, b"OK", Headers())) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert conn.send(END) == b""
    conn.start_next_cycle()


def test_out_of_order_sends() -> None:
    conn = Connection(Role.SERVER)
    with pytest.raises(LocalProtocolError):
        conn.send(Data(b"x"))
    assert conn.our_state is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.send(Response(200, b"", Headers()))
    with pytest.raises(LocalProtocolError):
        Connection(Role.SERVER).send(Request(b"GET", b"/", b"1.1", Headers([(b"Host", b"a")])))
    with pytest.raises(LocalProtocolError):
        Connection(Role.CLIENT).send(Response(200, b"", Headers()))
    with pytest.raises(LocalProtocolError):
        _server_after_get().send(Response(100, b"", Headers([(b"Content-Length", b"x")])))
    with pytest.raises(LocalProtocolError):
        _server_after_get().send(b"HTTP/1.1 200 OK\r\n\r\n")  # type: ignore[arg-type]


def test_invalid_start_lines_cannot_be_sent() -> None:
    for request in (
        Request(b"GE T", b"/", b"1.1", Headers([(b"Host", b"a")])),
        Request(b"GET", b"/a b", b"1.1", Headers([(b"Host", b"a")])),
        Request(b"GET", b"/", b"1.1", Headers()),  # no Host
        Request(b"GET", b"/", b"1.1", Headers([(b"Host", b"a"), (b"Content-Length", b"-1")])),
    ):
        with pytest.raises(LocalProtocolError):
            Connection(Role.CLIENT).send(request)
    for response in (Response(200, b"O\r\nK", Headers()), Response(1000, b"", Headers())):
        with pytest.raises(LocalProtocolError):
            _server_after_get().send(response)


def test_error_answer_after_a_bad_request() -> None:
    conn = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert (conn.our_state, conn.their_state) == (State.IDLE, State.ERROR)
    sent = conn.send(Response(info.value.status, b"", Headers([(b"Content-Length", b"0")])))
    assert sent == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    conn.send(END)
    assert (conn.our_state, conn.their_state) == (State.MUST_CLOSE, State.ERROR)


def test_error_answer_after_a_bad_body() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(raw_request(b"POST", b"/", b"Host: a", b"Transfer-Encoding: chunked"))
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"zz\r\n")
    sent = conn.send(Response(400, b"", Headers([(b"Content-Length", b"0")])))
    assert b"Connection: close" in sent


def test_timeout_answer_before_any_request() -> None:
    conn = Connection(Role.SERVER)
    sent = conn.send(Response(408, b"", Headers([(b"Content-Length", b"0")])))
    assert sent == b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    conn.send(END)
    assert (conn.our_state, conn.their_state) == (State.MUST_CLOSE, State.MUST_CLOSE)


# -- the upstream side --------------------------------------------------------------


def test_client_sends_requests() -> None:
    conn = Connection(Role.CLIENT)
    head = Headers([(b"Host", b"up"), (b"Content-Length", b"5")])
    assert conn.send(Request(b"POST", b"/x", b"1.0", head)) == (
        b"POST /x HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\n\r\n"
    )
    assert conn.our_state is State.SEND_BODY and conn.their_state is State.SEND_RESPONSE
    assert conn.send(Data(b"hello")) + conn.send(END) == b"hello"
    conn = Connection(Role.CLIENT)
    head = Headers([(b"Host", b"up"), (b"Transfer-Encoding", b"chunked")])
    conn.send(Request(b"POST", b"/x", b"1.1", head))
    assert conn.send(Data(b"hi")) + conn.send(END) == b"2\r\nhi\r\n0\r\n\r\n"
    conn = Connection(Role.CLIENT)
    conn.send(Request(b"GET", b"/", b"1.1", Headers([(b"Host", b"up")])))
    with pytest.raises(LocalProtocolError):  # no framing header: no body
        conn.send(Data(b"x"))


def test_response_with_content_length() -> None:
    conn = upstream()
    events = conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
    response = events[0]
    assert response == Response(200, b"OK", Headers([(b"Content-Length", b"5")]))
    assert isinstance(response, Response) and response.facts is not None
    assert response.facts.framing == Framing(Body.LENGTH, 5)
    assert conn.receive_data(b"lo") == [Data(b"lo"), END]
    assert (conn.our_state, conn.their_state) == (State.DONE, State.DONE)
    conn.start_next_cycle()


def test_response_until_close() -> None:
    conn = upstream()
    events = conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nab")
    assert kinds(events) == ["Response", "Data"]
    assert not conn.keep_alive
    assert conn.receive_data(b"cd") == [Data(b"cd")]
    assert conn.receive_eof() == [END, ConnectionClosed()]
    assert conn.their_state is State.CLOSED


def test_response_to_head_ignores_content_length_and_cycles() -> None:
    conn = upstream(b"HEAD")
    events = conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    assert kinds(events) == ["Response", "EndOfMessage"]
    conn.start_next_cycle()
    conn.send(Request(b"GET", b"/", b"1.1", Headers([(b"Host", b"a")])))
    conn.send(END)
    events = conn.receive_data(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    )
    assert body(events) == b"x"


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int) -> None:
    conn = upstream()
    events = conn.receive_data(b"HTTP/1.1 %d X\r\nContent-Length: 7\r\n\r\n" % status)
    assert kinds(events) == ["Response", "EndOfMessage"]


def test_interim_responses_before_the_final_one() -> None:
    conn = upstream(b"PUT", (b"Content-Length", b"0"), (b"Expect", b"100-continue"))
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    )
    events = conn.receive_data(data)
    assert [getattr(e, "status", None) for e in events] == [100, 103, 201, None]
    assert events[0].informational  # type: ignore[union-attr]


def test_response_without_reason_phrase() -> None:
    events = upstream().receive_data(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
    assert events[0] == Response(200, b"", Headers([(b"Content-Length", b"0")]))


def test_response_close_and_http10_keep_alive() -> None:
    conn = upstream()
    conn.receive_data(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert conn.their_state is State.MUST_CLOSE
    conn = upstream()
    data = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    conn.receive_data(data)
    assert conn.keep_alive
    conn.start_next_cycle()
    conn = upstream()
    conn.receive_data(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not conn.keep_alive


def test_upstream_switches_after_101_or_connect_2xx() -> None:
    conn = upstream(b"GET", (b"Connection", b"upgrade"), (b"Upgrade", b"websocket"))
    events = conn.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nfr")
    assert kinds(events) == ["Response"]
    assert conn.their_state is State.SWITCHED and conn.trailing_data == (b"fr", False)
    conn = Connection(Role.CLIENT)
    conn.send(Request(b"CONNECT", b"db:5432", b"1.1", Headers([(b"Host", b"db:5432")])))
    conn.send(END)
    events = conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n\x00")
    assert kinds(events) == ["Response"]
    assert conn.our_state is State.SWITCHED and conn.trailing_data == (b"\x00", False)


def test_early_response_while_the_request_body_is_sent() -> None:
    conn = Connection(Role.CLIENT)
    head = Headers([(b"Host", b"a"), (b"Content-Length", b"4")])
    conn.send(Request(b"POST", b"/", b"1.1", head))
    conn.send(Data(b"ab"))
    events = conn.receive_data(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
    assert kinds(events) == ["Response", "EndOfMessage"]
    assert (conn.our_state, conn.their_state) == (State.SEND_BODY, State.DONE)
    conn.send(Data(b"cd"))
    conn.send(END)
    conn.start_next_cycle()


def test_upstream_closing_idle_connection() -> None:
    conn = Connection(Role.CLIENT)
    assert conn.receive_eof() == [ConnectionClosed()]
    assert conn.our_state is State.MUST_CLOSE


# -- the public surface ----------------------------------------------------------------

MODULES = [
    "body",
    "connection",
    "errors",
    "events",
    "forwarding",
    "framing",
    "head",
    "headers",
    "http1",
    "serialize",
    "state",
]


@pytest.mark.parametrize("name", MODULES)
def test_exported_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(f"podnet.proxy.{name}")
    assert module.__doc__
    assert sorted(module.__all__) == sorted(set(module.__all__))
    for export in module.__all__:
        assert hasattr(module, export), export
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
        and callable(value)
    }
    assert defined <= set(module.__all__), defined - set(module.__all__)


def test_http1_reexports_the_api() -> None:
    for name in ("Connection", "Request", "Response", "Headers", "forward_request", "Limits"):
        assert name in http1.__all__


def test_no_request_is_parsed_after_an_unprompted_answer() -> None:
    conn = Connection(Role.SERVER)
    conn.send(Response(408, b"", Headers([(b"Content-Length", b"0")])))
    assert conn.receive_data(raw_request(b"GET", b"/", b"Host: a")) == []
    assert conn.their_state is State.MUST_CLOSE and conn.should_pause_reading
