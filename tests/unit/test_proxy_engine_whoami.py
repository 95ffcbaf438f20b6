"""whoami's test paths used by the proxy engine's tests: /status, /upload, /count,
/delay, /bytes (streamed) and the /ws WebSocket echo."""

from __future__ import annotations

import asyncio
import os

import pytest

from podnet.workload.answers import Responder
from podnet.workload.http1 import Request, RequestParser
from podnet.workload.special import (
    WebSocketEcho,
    bytes_length,
    delay_of,
    frame,
    is_websocket,
    unmask,
    websocket_accept,
)
from podnet.workload.whoami import WhoamiOptions, WhoamiServer


def request(raw: bytes) -> Request:
    events = RequestParser().feed(raw)
    assert isinstance(events[-1], Request), events
    return events[-1]


def test_status_upload_and_count_answers() -> None:
    responder = Responder("w", [])
    peer = responder.peer("1.2.3.4:5")
    answer = responder.answer(request(b"GET /status/503 HTTP/1.1\r\nHost: h\r\n\r\n"), peer)
    assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b"\r\n\r\n503\n")
    answer = responder.answer(request(b"GET /status/204 HTTP/1.1\r\nHost: h\r\n\r\n"), peer)
    assert answer.startswith(b"HTTP/1.1 204 ") and answer.endswith(b"\r\n\r\n")
    assert responder.answer(
        request(b"GET /status/99 HTTP/1.1\r\nHost: h\r\n\r\n"), peer
    ).startswith(b"HTTP/1.1 400 ")
    chunked = (
        b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert responder.answer(request(chunked), peer).endswith(b"\r\n\r\n5\n")
    counted = responder.answer(request(b"GET /count HTTP/1.1\r\nHost: h\r\n\r\n"), peer)
    assert counted.endswith(b"\r\n\r\n4\n")  # /count itself is not counted


def test_special_path_parsing() -> None:
    assert delay_of(request(b"GET /delay/0.25?x HTTP/1.1\r\nHost: h\r\n\r\n")) == 0.25
    assert delay_of(request(b"GET /delay/abc HTTP/1.1\r\nHost: h\r\n\r\n")) is None
    assert bytes_length(request(b"GET /bytes/1000 HTTP/1.1\r\nHost: h\r\n\r\n")) == 1000
    assert bytes_length(request(b"GET /bytes/-1 HTTP/1.1\r\nHost: h\r\n\r\n")) is None


def test_websocket_handshake_accept_key_is_rfc6455s() -> None:
    # RFC 6455 §1.3's example key and accept value.
    handshake = request(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    assert is_websocket(handshake)
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in websocket_accept(handshake)
    assert not is_websocket(request(b"GET /ws HTTP/1.1\r\nHost: h\r\n\r\n"))


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 200_000])
def test_websocket_echo_of_every_length_form_fed_in_pieces(size: int) -> None:
    echo = WebSocketEcho()
    payload = os.urandom(size)
    data = frame(0x2, payload, mask=b"\x01\x02\x03\x04") + frame(0x9, b"p", mask=b"abcd")
    out = b""
    for i in range(0, len(data), 7777):
        answer, close = echo.feed(data[i : i + 7777])
        assert not close
        out += answer
    assert out == frame(0x2, payload) + frame(0xA, b"p")
    assert echo.feed(frame(0x8, b"\x03\xe8", mask=b"abcd")) == (frame(0x8, b"\x03\xe8"), True)


def test_unmask_is_its_own_inverse() -> None:
    data = os.urandom(1001)
    assert unmask(unmask(data, b"wxyz"), b"wxyz") == data


def test_bytes_are_streamed_and_a_delayed_answer_follows_in_order() -> None:
    async def run() -> None:
        async with WhoamiServer(WhoamiOptions(host="127.0.0.1", port=0), addresses=[]) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /bytes/3000000 HTTP/1.1\r\nHost: h\r\n\r\n")
            writer.write(b"GET /delay/0.2 HTTP/1.1\r\nHost: h\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"Content-Length: 3000000\r\n" in head
            body = await reader.readexactly(3_000_000)
            assert body == bytes(3_000_000)
            second = await reader.readuntil(b"\r\n\r\n")  # after the stream, in order
            assert second.startswith(b"HTTP/1.1 200 ")
            writer.close()

    asyncio.run(run())
