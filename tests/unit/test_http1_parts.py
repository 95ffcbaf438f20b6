"""The parts under the connection: headers, framing facts, bodies, the state tables."""

from __future__ import annotations

import pytest

from podnet.proxy.body import ChunkedEncoder, ChunkedReader, CloseWriter, LengthReader
from podnet.proxy.errors import LocalProtocolError, RemoteProtocolError
from podnet.proxy.events import Data, EndOfMessage, Event
from podnet.proxy.framing import CHUNKED, NO_BODY, UNTIL_CLOSE, request_facts, response_facts
from podnet.proxy.head import Limits
from podnet.proxy.headers import Headers, parse_fields, split_list
from podnet.proxy.serialize import reason_phrase, request_head, response_head
from podnet.proxy.state import TRANSITIONS, CycleState, Kind, Role, State

# -- Headers ------------------------------------------------------------------------


def test_headers_lookup_and_order() -> None:
    headers = Headers([("Host", "a"), (b"Set-Cookie", b"x=1"), (b"set-cookie", b"y=2")])
    assert headers.get(b"set-cookie") == b"x=1"
    assert headers.get_all(b"set-cookie") == [b"x=1", b"y=2"]
    assert headers.get(b"missing") is None
    assert b"host" in headers and b"Host" not in headers
    assert headers.names() == [b"host", b"set-cookie", b"set-cookie"]
    assert headers.raw_items()[0] == (b"Host", b"a")
    assert len(headers) == 3 and headers and not Headers()
    assert headers.select(frozenset({b"set-cookie", b"nope"})) == {b"set-cookie": [b"x=1", b"y=2"]}


def test_headers_equality_ignores_name_case_but_not_order() -> None:
    assert Headers([(b"A", b"1")]) == Headers([(b"a", b"1")])
    assert Headers([(b"A", b"1"), (b"B", b"2")]) != Headers([(b"B", b"2"), (b"A", b"1")])
    assert Headers() != [(b"a", b"1")]
    assert "b'A'" in repr(Headers([(b"A", b"1")]))


def test_headers_are_immutable_values() -> None:
    base = Headers([(b"A", b"1"), (b"B", b"2")])
    assert base.without([b"a"]) == Headers([(b"B", b"2")])
    assert base.without([b"zzz"]) is base
    assert base.with_field(b"C", b" 3 ") == Headers([(b"A", b"1"), (b"B", b"2"), (b"C", b"3")])
    assert base.replaced(b"a", b"9") == Headers([(b"B", b"2"), (b"a", b"9")])
    assert base.extended([(b"C", b"3")]).raw_items()[-1] == (b"C", b"3")
    assert base == Headers([(b"A", b"1"), (b"B", b"2")])
    assert base.field_block() == b"A: 1\r\nB: 2\r\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [(b"A B", b"x"), (b"", b"x"), (b"A:", b"x"), (b"A", b"x\r\nB: y"), (b"A", b"\x00"),
     (b"A", b"x\ny"), (b"A", b"\x7f"), ("Ä", "x"), ("A", "€")],
)  # fmt: skip
def test_headers_refuse_invalid_fields(name: bytes | str, value: bytes | str) -> None:
    with pytest.raises(LocalProtocolError):
        Headers([(name, value)])
    with pytest.raises(LocalProtocolError):
        Headers().with_field(name, value)


def test_parse_fields_strips_ows_and_keeps_inner_whitespace() -> None:
    block = b"A:x\r\nB: \t y  z \t\r\nC:\r\nD:   \r\n"
    headers = parse_fields(block, 0, len(block), max_fields=10)
    assert headers.raw_items() == [(b"A", b"x"), (b"B", b"y  z"), (b"C", b""), (b"D", b"")]


def test_parse_fields_is_linear_on_hostile_whitespace() -> None:
    """A value full of spaces that never ends in CRLF must not backtrack quadratically."""
    block = b"A: x" + b" " * 30000 + b"y" + b" \t" * 10000 + b"\x01\r\n"
    with pytest.raises(RemoteProtocolError):
        parse_fields(block, 0, len(block), max_fields=10)


def test_split_list() -> None:
    assert split_list([b"Keep-Alive, ,Upgrade", b"  close\t"]) == [
        b"keep-alive",
        b"upgrade",
        b"close",
    ]
    assert split_list([]) == []


# -- framing facts ------------------------------------------------------------------


def facts_for(*fields: tuple[bytes, bytes], version: bytes = b"1.1"):  # type: ignore[no-untyped-def]
    return request_facts(b"POST", version, Headers([(b"Host", b"a"), *fields]))


def test_request_framing() -> None:
    assert facts_for().framing is NO_BODY
    assert facts_for((b"Content-Length", b"007")).framing.length == 7
    assert facts_for((b"Transfer-Encoding", b"CHUNKED")).framing is CHUNKED
    assert facts_for((b"Transfer-Encoding", b"chunked,")).framing is CHUNKED  # empty element
    assert facts_for((b"Content-Length", b"999999999999999999")).framing.length == 10**18 - 1


def test_response_framing_table() -> None:
    cl = Headers([(b"Content-Length", b"5")])
    te = Headers([(b"Transfer-Encoding", b"chunked")])
    none = Headers()
    assert response_facts(200, b"1.1", cl, b"GET").framing.length == 5
    assert response_facts(200, b"1.1", te, b"GET").framing is CHUNKED
    assert response_facts(200, b"1.1", none, b"GET").framing is UNTIL_CLOSE
    assert not response_facts(200, b"1.1", none, b"GET").keep_alive
    assert response_facts(200, b"1.1", cl, b"HEAD").framing is NO_BODY
    assert response_facts(200, b"1.1", te, b"CONNECT").framing is NO_BODY
    assert response_facts(407, b"1.1", cl, b"CONNECT").framing.length == 5
    for status in (100, 101, 103, 204, 304):
        assert response_facts(status, b"1.1", te, b"GET").framing is NO_BODY
    assert response_facts(200, b"1.1", Headers([(b"Content-Length", b"0")]), b"GET").keep_alive


def test_response_framing_is_validated_even_when_unused() -> None:
    bad = Headers([(b"Content-Length", b"1"), (b"Transfer-Encoding", b"chunked")])
    with pytest.raises(RemoteProtocolError):
        response_facts(304, b"1.1", bad, b"GET")


def test_upgrade_and_expect_facts() -> None:
    facts = facts_for((b"Connection", b"Upgrade"), (b"Upgrade", b"h2c"), (b"Upgrade", b"ws"))
    assert facts.upgrade == b"h2c, ws"
    assert facts_for((b"Expect", b"100-CONTINUE")).expect_continue
    assert not facts_for((b"Expect", b"something-else")).expect_continue


# -- bodies -------------------------------------------------------------------------


def read_all(reader: ChunkedReader | LengthReader, data: bytes) -> tuple[list[Event], int]:
    events: list[Event] = []
    pos = reader.read(data, 0, events)
    return events, pos


def test_chunked_reader_accepts_valid_syntax() -> None:
    data = (
        b"0005\r\nhello\r\n"
        b"a;ext\r\n0123456789\r\n"
        b'1 ;  a = b ; c="q\\"uote\\\\" ;d\r\n!\r\n'
        b"FFFFFFFFFFFFFFF\r\n"
    )
    events, pos = read_all(ChunkedReader(Limits()), data)
    assert events == [Data(b"hello"), Data(b"0123456789"), Data(b"!")]
    assert pos == len(data)  # waiting for 2**60 - 1 bytes, which is allowed


def test_chunked_reader_stops_at_the_end() -> None:
    data = b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1"
    reader = ChunkedReader(Limits())
    events, pos = read_all(reader, data)
    assert events == [Data(b"x"), EndOfMessage()]
    assert data[pos:] == b"GET / HTTP/1.1"
    more: list[Event] = []
    assert reader.read(data, pos, more) == pos and more == []


def test_chunked_reader_trailer_limits() -> None:
    reader = ChunkedReader(Limits(max_head=100))
    with pytest.raises(RemoteProtocolError):
        read_all(reader, b"0\r\nX: " + b"a" * 200)
    reader = ChunkedReader(Limits(max_request_line=10, max_head=100))
    with pytest.raises(RemoteProtocolError) as info:
        read_all(reader, b"0\r\nX: " + b"a" * 200)
    assert info.value.status == 431  # a trailer has no request line to be 414 about
    reader = ChunkedReader(Limits(max_fields=1))
    with pytest.raises(RemoteProtocolError):
        read_all(reader, b"0\r\nX: 1\r\nY: 2\r\n\r\n")


def test_length_reader_eof() -> None:
    with pytest.raises(RemoteProtocolError):
        LengthReader(3).eof()


def test_chunked_encoder() -> None:
    encoder = ChunkedEncoder()
    assert encoder.encode(b"") == b""
    assert encoder.encode(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert encoder.finish() == b"0\r\n\r\n"
    assert encoder.finish(Headers([(b"T", b"1")])) == b"0\r\nT: 1\r\n\r\n"


def test_close_writer() -> None:
    assert CloseWriter().write(b"abc") == b"abc"
    assert CloseWriter().finish(Headers()) == b""
    with pytest.raises(LocalProtocolError):
        CloseWriter().finish(Headers([(b"T", b"1")]))


# -- serialisers --------------------------------------------------------------------


def test_heads() -> None:
    headers = Headers([(b"Host", b"a")])
    assert request_head(b"GET", b"/x", headers) == b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    assert response_head(404, b"", Headers()) == b"HTTP/1.1 404 Not Found\r\n\r\n"
    assert response_head(299, b"", Headers()) == b"HTTP/1.1 299 \r\n\r\n"
    assert response_head(200, b"Fine", Headers()) == b"HTTP/1.1 200 Fine\r\n\r\n"
    assert reason_phrase(413) == b"Content Too Large"
    assert reason_phrase(502) == b"Bad Gateway"


# -- state tables -------------------------------------------------------------------

ALL_STATES = list(State)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("kind", list(Kind))
def test_everything_outside_the_table_is_refused(role: Role, kind: Kind) -> None:
    for state in ALL_STATES:
        cycle = CycleState()
        cycle.states[role] = state
        if (state, kind) in TRANSITIONS[role]:
            cycle.process(role, kind)
        else:
            with pytest.raises(LocalProtocolError):
                cycle.process(role, kind)


def test_a_full_cycle_through_the_tables() -> None:
    cycle = CycleState()
    steps = [
        (Role.CLIENT, Kind.REQUEST, State.SEND_BODY, State.SEND_RESPONSE),
        (Role.SERVER, Kind.INTERIM, State.SEND_BODY, State.SEND_RESPONSE),
        (Role.CLIENT, Kind.DATA, State.SEND_BODY, State.SEND_RESPONSE),
        (Role.CLIENT, Kind.END, State.DONE, State.SEND_RESPONSE),
        (Role.SERVER, Kind.RESPONSE, State.DONE, State.SEND_BODY),
        (Role.SERVER, Kind.END, State.DONE, State.DONE),
    ]
    for role, kind, client, server in steps:
        cycle.process(role, kind)
        assert (cycle.states[Role.CLIENT], cycle.states[Role.SERVER]) == (client, server)
    cycle.start_next_cycle()
    assert cycle.describe() == "client=idle, server=idle"


def test_switch_proposal_rules() -> None:
    cycle = CycleState()
    cycle.process(Role.CLIENT, Kind.REQUEST)
    cycle.propose_switch()
    cycle.process(Role.CLIENT, Kind.END)
    assert cycle.states[Role.CLIENT] is State.MIGHT_SWITCH
    cycle.process(Role.SERVER, Kind.SWITCH)
    assert set(cycle.states.values()) == {State.SWITCHED}
    declined = CycleState()
    declined.process(Role.CLIENT, Kind.REQUEST)
    declined.propose_switch()
    declined.process(Role.CLIENT, Kind.END)
    declined.process(Role.SERVER, Kind.RESPONSE)
    assert declined.states[Role.CLIENT] is State.DONE and not declined.switch_proposed


def test_keep_alive_off_and_failures() -> None:
    cycle = CycleState()
    cycle.process(Role.CLIENT, Kind.REQUEST)
    cycle.process(Role.CLIENT, Kind.END)
    cycle.disable_keep_alive()
    assert cycle.states[Role.CLIENT] is State.MUST_CLOSE
    failed = CycleState()
    failed.fail(Role.CLIENT)
    assert failed.states == {Role.CLIENT: State.ERROR, Role.SERVER: State.IDLE}
    assert not failed.keep_alive
    with pytest.raises(LocalProtocolError):
        failed.start_next_cycle()
