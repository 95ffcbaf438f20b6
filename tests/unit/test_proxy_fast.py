"""The fast lane's recognizer: a strict subset of the core, byte-identical output.

Two properties, on generated messages that mix boring and odd fields: what
:func:`parse_simple_request` / :func:`parse_simple_response` accept, the core
accepts as one whole message; and the bytes they produce are the bytes the
core (Connection + forward_request / forward_response) would send. Every
smuggling case of test_http1_smuggling is refused by the recognizer (it then
goes the general way, where that suite checks the verdict).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_http1_smuggling import REQUESTS, RESPONSES

from podnet.proxy.fast import (
    NEED_MORE,
    SimpleResponse,
    parse_simple_request,
    parse_simple_response,
)
from podnet.proxy.http1 import (
    Connection,
    Data,
    EndOfMessage,
    Headers,
    Limits,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    forward_request,
    forward_response,
)

PROFILE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300)
LIMITS = Limits()
CLIENT = b"10.1.2.3"


def core_request(raw: bytes) -> bytes | None:
    """What the core sends upstream for ``raw``, or None when it is not one whole request."""
    conn = Connection(Role.SERVER)
    try:
        events = conn.receive_data(raw)
    except RemoteProtocolError:
        return None
    if not events or not isinstance(events[0], Request) or conn.buffered:
        return None
    if not isinstance(events[-1], EndOfMessage):
        return None
    upstream = Connection(Role.CLIENT)
    out = upstream.send(forward_request(events[0], client=CLIENT))
    for event in events[1:-1]:
        assert isinstance(event, Data)
        out += upstream.send(event)
    return out + upstream.send(EndOfMessage())


def core_response(raw: bytes, *, close: bool) -> bytes | None:
    """What the core sends the client for ``raw`` answering a GET, or None on an error."""
    upstream = Connection(Role.CLIENT)
    upstream.send(Request(b"GET", b"/", b"1.1", Headers([(b"Host", b"h")])))
    upstream.send(EndOfMessage())
    try:
        events = upstream.receive_data(raw)
    except RemoteProtocolError:
        return None
    if not events or not isinstance(events[-1], EndOfMessage):
        return None
    head = events[0]
    assert isinstance(head, Response)
    server = Connection(Role.SERVER)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    response = forward_response(head)
    if close:
        response.headers = response.headers.with_field(b"Connection", b"close")
    out = server.send(response)
    for event in events[1:-1]:
        assert isinstance(event, Data)
        out += server.send(event)
    return out + server.send(EndOfMessage())


tchars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.one_of(
    st.text(tchars, min_size=1, max_size=10).map(str.encode),
    st.sampled_from(
        [
            b"Host",
            b"host",
            b"Content-Length",
            b"Transfer-Encoding",
            b"Content_Length",
            b"Connection",
            b"Upgrade",
            b"Expect",
            b"TE",
            b"Keep-Alive",
            b"X-Forwarded-For",
            b"X-Forwarded-Host",
            b"Cookie",
            b"Via",
            b"Bad Name",
            b"",
        ]
    ),
)
values = st.one_of(
    st.sampled_from(
        [
            b"",
            b"0",
            b"5",
            b"h",
            b"chunked",
            b"close",
            b"keep-alive",
            b"Keep-Alive, keep-alive",
            b"keep-alive, x",
            b"a b",
            b"x\r\ny",
            b"\x00",
        ]
    ),
    st.from_regex(rb"\A[\x21-\x7e\x80-\xff]{1,8}(?:[ \t]{1,2}[\x21-\x7e]{1,4}){0,2}\Z"),
)
seps = st.sampled_from([b": ", b":", b":  ", b" : ", b":\t"])
field_lines = st.lists(
    st.tuples(names, seps, values, st.sampled_from([b"", b" "])).map(
        lambda t: t[0] + t[1] + t[2] + t[3] + b"\r\n"
    ),
    max_size=6,
)
request_lines = st.sampled_from(
    [
        b"GET / HTTP/1.1\r\n",
        b"GET /a/b?c=d HTTP/1.1\r\n",
        b"DELETE /x HTTP/1.1\r\n",
        b"HEAD / HTTP/1.1\r\n",
        b"GET / HTTP/1.0\r\n",
        b"GET http://h/ HTTP/1.1\r\n",
        b"GET  / HTTP/1.1\r\n",
        b"GET /#f HTTP/1.1\r\n",
        b"CONNECT h:1 HTTP/1.1\r\n",
        b"OPTIONS * HTTP/1.1\r\n",
        b"\r\nGET / HTTP/1.1\r\n",
    ]
)


@PROFILE
@given(
    request_lines,
    st.booleans(),
    st.sampled_from([None, b"0", b"3", b"5", b"03"]),
    field_lines,
    st.sampled_from([b"", b"abc", b"abcde", b"GET / HTTP/1.1\r\n"]),
)
def test_simple_requests_are_a_subset_of_the_core_with_the_same_output(
    line: bytes, with_host: bool, length: bytes | None, lines: list[bytes], after: bytes
) -> None:
    host = [b"Host: example.com:8080\r\n"] if with_host else []
    cl = [] if length is None else [b"Content-Length: " + length + b"\r\n"]
    raw = line + b"".join(host + lines + cl) + b"\r\n" + after
    simple = parse_simple_request(raw, LIMITS)
    if simple is not None:
        assert simple.forwarded(CLIENT) == core_request(raw)
        assert simple.raw == raw and raw.endswith(simple.body)


def test_a_typical_request_is_simple_and_forwarded_like_the_core() -> None:
    raw = b"GET /x?y HTTP/1.1\r\nHost: shop\r\nUser-Agent:curl \r\nAccept:  */*\r\n\r\n"
    simple = parse_simple_request(raw, LIMITS)
    assert simple is not None
    assert simple.forwarded(CLIENT) == core_request(raw)
    assert simple.forwarded(CLIENT).endswith(
        b"X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: shop\r\nVia: 1.1 podnet\r\n\r\n"
    )


def test_a_small_body_in_the_same_read_is_simple() -> None:
    raw = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    simple = parse_simple_request(raw, LIMITS)
    assert simple is not None and simple.body == b"hello"
    assert simple.forwarded(CLIENT) == core_request(raw)
    assert simple.forwarded(CLIENT).endswith(b"Via: 1.1 podnet\r\n\r\nhello")
    assert parse_simple_request(raw[:-1], LIMITS) is None  # the rest of the body comes later
    assert parse_simple_request(raw + b"!", LIMITS) is None  # bytes after the body
    assert parse_simple_request(raw.replace(b"5", b"5, 5"), LIMITS) is None


def test_every_smuggling_request_goes_the_general_way() -> None:
    for name, data, _ in REQUESTS:
        assert parse_simple_request(data, LIMITS) is None, name
        assert parse_simple_request(data + b"\r\n\r\n", LIMITS) is None, name
        head, _, body = data.partition(b"\r\n\r\n")
        fixed = head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        assert parse_simple_request(fixed, LIMITS) is None, name


status_lines = st.sampled_from(
    [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200\r\n",
        b"HTTP/1.1 404 Not Here\r\n",
        b"HTTP/1.1 204 No Content\r\n",
        b"HTTP/1.1 304 Not Modified\r\n",
        b"HTTP/1.1 503 Busy\r\n",
        b"HTTP/1.1 100 Continue\r\n",
        b"HTTP/1.0 200 OK\r\n",
        b"HTTP/1.1 200 O\x00K\r\n",
    ]
)


@PROFILE
@given(
    status_lines,
    st.sampled_from([None, 0, 3, 5]),
    field_lines,
    st.binary(max_size=8),
    st.booleans(),
)
def test_simple_responses_are_a_subset_of_the_core_with_the_same_output(
    line: bytes, length: int | None, lines: list[bytes], body: bytes, close: bool
) -> None:
    cl = [] if length is None else [b"Content-Length: %d\r\n" % length]
    raw = line + b"".join(cl + lines) + b"\r\n" + body
    result = parse_simple_response(raw, LIMITS)
    if isinstance(result, SimpleResponse):
        assert result.size == len(raw)
        assert result.client_bytes(raw, close) == core_response(raw, close=close)
    elif result == NEED_MORE:
        assert length is not None and len(body) < length


def test_a_typical_response_is_simple_and_needs_its_whole_body() -> None:
    raw = b"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 5\r\n\r\nhello"
    assert parse_simple_response(raw[:-2], LIMITS) == NEED_MORE
    result = parse_simple_response(raw, LIMITS)
    assert isinstance(result, SimpleResponse)
    assert result.client_bytes(raw, False) == core_response(raw, close=False)
    assert result.client_bytes(raw, True) == core_response(raw, close=True)
    assert parse_simple_response(raw + b"H", LIMITS) is None  # bytes after it: not simple


def test_every_smuggling_response_goes_the_general_way() -> None:
    for name, data in RESPONSES:
        assert not isinstance(parse_simple_response(data, LIMITS), SimpleResponse), name


def test_keep_alive_connection_fields_stay_simple_and_are_dropped_like_the_core_does() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nKeep-Alive: 300\r\n\r\n"
    simple = parse_simple_request(raw, LIMITS)
    assert simple is not None
    assert simple.forwarded(CLIENT) == core_request(raw)
    assert b"eep-" not in simple.forwarded(CLIENT)
    assert simple.fields()[1] == [b"host", b"connection", b"keep-alive"]  # routing sees them
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, te\r\n\r\n"
    assert parse_simple_request(raw, LIMITS) is None
    answer = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
    answer += b"Content-Length: 2\r\n\r\nok"
    result = parse_simple_response(answer, LIMITS)
    assert isinstance(result, SimpleResponse)
    assert result.client_bytes(answer, False) == core_response(answer, close=False)
    closing = answer.replace(b"Connection: keep-alive", b"Connection: close")
    assert parse_simple_response(closing, LIMITS) is None
