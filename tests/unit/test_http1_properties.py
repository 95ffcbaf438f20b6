"""Properties: serialise-then-parse is the identity, and byte boundaries never matter.

The split property is checked on valid messages and on messages with one byte
changed: whichever way the bytes are cut, the parser must report the same
events, or fail with the same status.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podnet.proxy.headers import parse_fields
from podnet.proxy.http1 import (
    Connection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Headers,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    State,
)
from podnet.proxy.serialize import reason_phrase

# No deadline: these tests must not depend on how fast the machine is.
PROFILE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150)

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESERVED = {
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"upgrade",
    b"expect",
    b"content_length",
    b"transfer_encoding",
    b"keep-alive",
}

tokens = st.text(TCHARS, min_size=1, max_size=12).map(str.encode)
names = tokens.filter(lambda name: name.lower() not in RESERVED)
values = st.one_of(
    st.just(b""),
    st.from_regex(rb"\A[\x21-\x7e\x80-\xff]{1,8}(?:[ \t]{1,3}[\x21-\x7e\x80-\xff]{1,8}){0,3}\Z"),
)
fields = st.lists(st.tuples(names, values), max_size=6)
bodies = st.binary(max_size=200)
methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"PURGE"])
targets = st.from_regex(rb"\A/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,30}(?:\?[A-Za-z0-9=&%]{0,10})?\Z")


@st.composite
def pieces(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random points (possibly into empty pieces)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass
class Message:
    head: Request | Response
    body: bytes
    trailers: Headers
    wire: bytes


def merged(events: list[Event]) -> list[Event]:
    """Consecutive Data events joined: the boundaries are not part of the meaning."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        elif not (isinstance(event, Data) and not event.data):
            out.append(event)
    return out


def outcome(role: Role, chunks: list[bytes], method: bytes = b"GET") -> list[Event] | int:
    """The merged events of feeding ``chunks`` and EOF, or the status of the error."""
    conn = Connection(role) if role is Role.SERVER else sent_request(method)
    events: list[Event] = []
    try:
        for chunk in chunks:
            events += conn.receive_data(chunk)
        events += conn.receive_eof()
    except RemoteProtocolError as error:
        return error.status
    return merged(events)


def sent_request(method: bytes) -> Connection:
    conn = Connection(Role.CLIENT)
    conn.send(Request(method, b"/", b"1.1", Headers([(b"Host", b"h")])))
    conn.send(EndOfMessage())
    return conn


@st.composite
def requests(draw: st.DrawFn) -> Message:
    body, chunked = draw(bodies), draw(st.booleans())
    framing = (
        (b"Transfer-Encoding", b"chunked") if chunked else (b"Content-Length", b"%d" % len(body))
    )
    headers = Headers([(b"Host", b"example.com"), *draw(fields), framing])
    trailers = Headers(draw(fields)) if chunked else Headers()
    request = Request(draw(methods), draw(targets), b"1.1", headers)
    conn = Connection(Role.CLIENT)
    wire = conn.send(request)
    for piece in draw(pieces(body)):
        wire += conn.send(Data(piece))
    wire += conn.send(EndOfMessage(trailers))
    return Message(request, body, trailers, wire)


@st.composite
def responses(draw: st.DrawFn) -> tuple[Message, bytes]:
    """A response sent by a SERVER connection to a GET or HEAD, and that method."""
    method = draw(st.sampled_from([b"GET", b"HEAD"]))
    status = draw(st.sampled_from([200, 201, 204, 304, 404, 500, 299]))
    bodyless = method == b"HEAD" or status in (204, 304)
    body = b"" if bodyless else draw(bodies)
    framing = draw(st.sampled_from(["length", "chunked", "unknown"]))
    extra = {"length": [(b"Content-Length", b"%d" % len(body))], "chunked": [], "unknown": []}
    if framing == "chunked":
        extra["chunked"] = [(b"Transfer-Encoding", b"chunked")]
    headers = Headers([*draw(fields), *extra[framing]])
    trailers = Headers(draw(fields)) if framing != "length" and not bodyless else Headers()
    server = Connection(Role.SERVER)
    server.receive_data(b"%s / HTTP/1.1\r\nHost: h\r\n\r\n" % method)
    response = Response(status, draw(st.sampled_from([b"", b"Fine", b"With  spaces"])), headers)
    wire = server.send(response)
    for piece in draw(pieces(body)):
        wire += server.send(Data(piece))
    wire += server.send(EndOfMessage(trailers))
    if framing == "unknown" and not bodyless:
        headers = headers.with_field(b"Transfer-Encoding", b"chunked")
    reason = response.reason or reason_phrase(status)
    return Message(Response(status, reason, headers), body, trailers, wire), method


def expected(message: Message) -> list[Event]:
    body = [Data(message.body)] if message.body else []
    return [message.head, *body, EndOfMessage(message.trailers), ConnectionClosed()]


@PROFILE
@given(requests(), st.data())
def test_request_round_trip_under_any_split(message: Message, data: st.DataObject) -> None:
    assert outcome(Role.SERVER, data.draw(pieces(message.wire))) == expected(message)


@PROFILE
@given(requests())
def test_request_round_trip_byte_at_a_time(message: Message) -> None:
    chunks = [message.wire[i : i + 1] for i in range(len(message.wire))]
    assert outcome(Role.SERVER, chunks) == expected(message)


@PROFILE
@given(responses(), st.data())
def test_response_round_trip_under_any_split(
    sent: tuple[Message, bytes], data: st.DataObject
) -> None:
    message, method = sent
    chunks = data.draw(pieces(message.wire))
    assert outcome(Role.CLIENT, chunks, method) == expected(message)


@PROFILE
@given(st.lists(requests(), min_size=1, max_size=4), st.data())
def test_pipelined_requests_under_any_split(messages: list[Message], data: st.DataObject) -> None:
    conn = Connection(Role.SERVER)
    wire = b"".join(message.wire for message in messages)
    events: list[Event] = []
    for chunk in data.draw(pieces(wire)):
        events += conn.receive_data(chunk)
    for message in messages:
        assert merged(events) == expected(message)[:-1]
        conn.send(Response(204, b"", Headers()))
        conn.send(EndOfMessage())
        events = conn.start_next_cycle()
    assert events == [] and conn.their_state is State.IDLE


@st.composite
def mutated(draw: st.DrawFn, wire: bytes) -> bytes:
    """``wire`` with one byte replaced, inserted or deleted (biased towards framing bytes)."""
    position = draw(st.integers(0, len(wire)))
    byte = draw(st.sampled_from([b"\r", b"\n", b" ", b"\t", b":", b"0", b"f", b";", b"\x00", b"a"]))
    action = draw(st.sampled_from(["replace", "insert", "delete"]))
    if action == "insert":
        return wire[:position] + byte + wire[position:]
    if action == "delete":
        return wire[:position] + wire[position + 1 :]
    return wire[:position] + byte + wire[position + 1 :]


@PROFILE
@given(requests().flatmap(lambda m: mutated(m.wire)), st.data())
def test_mutated_requests_parse_the_same_under_any_split(wire: bytes, data: st.DataObject) -> None:
    whole = outcome(Role.SERVER, [wire])
    assert outcome(Role.SERVER, data.draw(pieces(wire))) == whole
    assert outcome(Role.SERVER, [wire[i : i + 1] for i in range(len(wire))]) == whole


@PROFILE
@given(responses().flatmap(lambda sent: st.tuples(mutated(sent[0].wire), st.just(sent[1]))))
def test_mutated_responses_parse_the_same_byte_at_a_time(sent: tuple[bytes, bytes]) -> None:
    wire, method = sent
    whole = outcome(Role.CLIENT, [wire], method)
    assert outcome(Role.CLIENT, [wire[i : i + 1] for i in range(len(wire))], method) == whole
    assert whole == 502 or isinstance(whole, list)


@PROFILE
@given(st.binary(max_size=300), st.sampled_from(list(Role)))
def test_arbitrary_bytes_only_ever_raise_protocol_errors(data: bytes, role: Role) -> None:
    result = outcome(role, [data])
    assert isinstance(result, list) or result in {400, 414, 431, 501, 502, 505}


@PROFILE
@given(st.lists(st.tuples(tokens, values), max_size=10))
def test_field_block_round_trip(pairs: list[tuple[bytes, bytes]]) -> None:
    headers = Headers(pairs)
    block = headers.field_block()
    parsed = parse_fields(block, 0, len(block), max_fields=100)
    assert parsed == headers and parsed.raw_items() == headers.raw_items()
