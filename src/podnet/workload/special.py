"""whoami's test paths that need more than one canned answer, without I/O.

* ``/delay/SECONDS`` -- the usual answer, held back SECONDS (at most 3600);
* ``/bytes/N`` -- N bytes of body, streamed in :data:`CHUNK` pieces as the
  client reads them (the connection writes them; this module frames the head);
* ``/ws`` -- a WebSocket (RFC 6455) echo: text, binary and continuation frames
  come back unmasked with the same opcode, ping gets pong, close gets close.

:class:`WebSocketEcho` parses client frames from a byte stream and returns
the bytes to answer, plus whether the connection should close.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Final

from podnet.workload.http1 import Request

__all__ = [
    "CHUNK",
    "SPECIAL",
    "WebSocketEcho",
    "bytes_length",
    "delay_of",
    "is_websocket",
    "websocket_accept",
]

#: Targets that the connection handles itself (a fast ``startswith`` test).
SPECIAL: Final = (b"/delay/", b"/bytes/", b"/ws")
CHUNK: Final = 64 * 1024
MAX_BYTES: Final = 1 << 40
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_FRAME: Final = 16 * 1024 * 1024


def _number(target: bytes, prefix: bytes) -> bytes | None:
    if not target.startswith(prefix):
        return None
    return target[len(prefix) :].partition(b"?")[0]


def delay_of(request: Request) -> float | None:
    """Seconds ``/delay/S`` asks for, or None for another path (or a bad number)."""
    text = _number(request.target, b"/delay/")
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= 3600 else None


def bytes_length(request: Request) -> int | None:
    """N of ``/bytes/N``, or None."""
    text = _number(request.target, b"/bytes/")
    if not text or not text.isdigit() or int(text) > MAX_BYTES:
        return None
    return int(text)


def _header(request: Request, name: bytes) -> bytes | None:
    for field, value in request.headers:
        if field.lower() == name:
            return value
    return None


def is_websocket(request: Request) -> bool:
    """A WebSocket opening handshake to ``/ws``."""
    if request.target.partition(b"?")[0] != b"/ws" or request.method != b"GET":
        return False
    upgrade = _header(request, b"upgrade") or b""
    return b"websocket" in upgrade.lower() and _header(request, b"sec-websocket-key") is not None


def websocket_accept(request: Request) -> bytes:
    """The 101 answer to a WebSocket handshake."""
    key = _header(request, b"sec-websocket-key") or b""
    accept = base64.b64encode(hashlib.sha1(key.strip() + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def frame(opcode: int, payload: bytes, *, mask: bytes | None = None) -> bytes:
    """One final WebSocket frame (masked when ``mask`` is given, as clients must)."""
    size = len(payload)
    first = bytes([0x80 | opcode])
    bit = 0x80 if mask is not None else 0
    if size < 126:
        length = bytes([bit | size])
    elif size < 65536:
        length = bytes([bit | 126]) + struct.pack("!H", size)
    else:
        length = bytes([bit | 127]) + struct.pack("!Q", size)
    if mask is None:
        return first + length + payload
    return first + length + mask + unmask(payload, mask)


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` (its own inverse)."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return value.to_bytes(size, "big")


class WebSocketEcho:
    """Echo WebSocket frames; :meth:`feed` returns (answer bytes, close)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        self._buf += data
        out: list[bytes] = []
        while True:
            parsed = self._next()
            if parsed is None:
                return b"".join(out), False
            opcode, payload = parsed
            if opcode == 0x8:  # close: answer close, then the connection ends
                out.append(frame(0x8, payload[:2]))
                return b"".join(out), True
            if opcode == 0x9:
                out.append(frame(0xA, payload))
            elif opcode in (0x0, 0x1, 0x2):
                out.append(frame(opcode, payload))

    def _next(self) -> tuple[int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        opcode, masked, size = buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F
        pos = 2
        if size == 126:
            if len(buf) < 4:
                return None
            size, pos = struct.unpack_from("!H", buf, 2)[0], 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, pos = struct.unpack_from("!Q", buf, 2)[0], 10
        if size > _MAX_FRAME:
            return 0x8, b"\x03\xf1"  # 1009: message too big
        mask = b""
        if masked:
            mask, pos = buf[pos : pos + 4], pos + 4
        if len(buf) < pos + size:
            return None
        payload = buf[pos : pos + size]
        self._buf = buf[pos + size :]
        return opcode, unmask(payload, mask) if masked else payload
