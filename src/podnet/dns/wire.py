"""DNS on the wire: bytes in, bytes or a forward decision out. No I/O.

Theory of operation: the server hands every datagram, and every message a
:class:`TcpFramer` cuts out of a TCP stream, to :func:`respond`, which parses
it, asks :func:`~podnet.dns.answer.answer` and renders the reply within the
client's size limit. Nothing a client sends can make it raise:

* fewer than 12 bytes (no header), or a response (QR set): no reply at all,
  so podnet never answers garbage with more than it got, nor loops with
  another server;
* a header followed by anything dnspython cannot parse: a bare FORMERR made
  of the header (ID, opcode and RD copied, no sections: 12 bytes);
* over UDP, a reply larger than the client's limit (512 bytes without EDNS,
  else its EDNS payload size, capped at podnet's ``MAX_UDP_PAYLOAD``) loses
  the records that do not fit and gets TC, so the client asks again over TCP
  (RFC 1035 4.2.1, RFC 6891 6.2.5). Over TCP the limit is 65535.

A :class:`Responder` is :func:`respond` with a memory: replies depend only on
the query's bytes after its ID, the transport and the zone, so it keeps the
rendered replies of the current zone and answers a repeated query by
patching in the new ID. It keeps small ones only (queries up to 512 bytes,
replies up to ``MAX_UDP_PAYLOAD``), so its memory stays a few megabytes, and
none with several addresses in one answer: dnspython shuffles those per
reply, which spreads clients over the endpoints of a headless service.
"""

from __future__ import annotations

import struct

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from podnet.dns.answer import MAX_UDP_PAYLOAD, Forward, Reply, answer
from podnet.dns.records import Zone

__all__ = [
    "HEADER_SIZE",
    "MALFORMED",
    "MAX_TCP_MESSAGE",
    "UDP_LIMIT",
    "Responder",
    "TcpFramer",
    "frame",
    "header_reply",
    "parse_query",
    "render",
    "reply_limit",
    "respond",
]

HEADER_SIZE = 12
#: The limit of a client without EDNS (RFC 1035 2.3.4).
UDP_LIMIT = 512
MAX_TCP_MESSAGE = 0xFFFF
#: What dnspython raises for bytes it cannot parse as a DNS message.
MALFORMED: tuple[type[Exception], ...] = (
    dns.exception.DNSException,
    ValueError,
    IndexError,
    struct.error,
)
_QR = 0x8000
_KEEP = 0x7800 | dns.flags.RD  # opcode and RD, copied from the query
_HEADER = struct.Struct("!HHHHHH")


def respond(wire: bytes, zone: Zone, *, tcp: bool, can_forward: bool) -> bytes | Forward | None:
    """What to send back for the DNS message ``wire``.

    Args:
        wire: one message as received (a datagram, or a TCP message without
            its length prefix).
        zone: the current snapshot.
        tcp: whether the reply goes back over TCP (no size limit but 65535).
        can_forward: whether upstreams exist for names outside the zone.

    Returns:
        The reply's bytes, a :class:`~podnet.dns.answer.Forward`, or None when
        nothing must be sent.
    """
    return Responder(can_forward=can_forward, cache_size=0).respond(wire, zone, tcp=tcp)


class Responder:
    """:func:`respond` that keeps rendered replies for the zone it last saw.

    Args:
        can_forward: whether upstreams exist for names outside the zone.
        cache_size: how many replies to keep (oldest dropped first); 0: none.
    """

    __slots__ = ("_can_forward", "_entries", "_size", "_zone")

    def __init__(self, *, can_forward: bool, cache_size: int = 4096) -> None:
        self._can_forward = can_forward
        self._size = cache_size
        self._zone: Zone | None = None
        self._entries: dict[tuple[bool, bytes], bytes] = {}

    def respond(self, wire: bytes, zone: Zone, *, tcp: bool) -> bytes | Forward | None:
        """Like :func:`respond`, from the cache when this query was answered before."""
        if zone is not self._zone:
            self._zone = zone
            self._entries.clear()
        key = (tcp, wire[2:])
        kept = self._entries.get(key)
        if kept is not None:
            return wire[:2] + kept
        query = parse_query(wire)
        if not isinstance(query, dns.message.Message):
            return query
        decision = answer(query, zone, can_forward=self._can_forward)
        if isinstance(decision, Forward):
            return decision
        reply = render(decision.message, reply_limit(query, tcp=tcp))
        if len(wire) <= UDP_LIMIT and len(reply) <= MAX_UDP_PAYLOAD and _keepable(decision):
            self._keep(key, reply[2:])
        return reply

    def _keep(self, key: tuple[bool, bytes], body: bytes) -> None:
        if len(self._entries) >= self._size:
            if not self._size:
                return
            del self._entries[next(iter(self._entries))]
        self._entries[key] = body

    def __len__(self) -> int:
        return len(self._entries)


def _keepable(reply: Reply) -> bool:
    """False when an answer holds several addresses (shuffled on each reply)."""
    return all(
        len(rrset) == 1 or rrset.rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rrset in reply.message.answer
    )


def parse_query(wire: bytes) -> dns.message.Message | bytes | None:
    """The query in ``wire``; else the FORMERR to send, or None to send nothing."""
    if len(wire) < HEADER_SIZE or wire[2] & 0x80:
        return None
    try:
        return dns.message.from_wire(wire)
    except MALFORMED:
        return header_reply(wire, dns.rcode.FORMERR)


def header_reply(wire: bytes, rcode: dns.rcode.Rcode) -> bytes | None:
    """A bare reply to the header of ``wire``: its ID, opcode and RD, ``rcode``.

    For queries that cannot be parsed, or answered at all (SERVFAIL); None
    when ``wire`` has no header.
    """
    if len(wire) < HEADER_SIZE:
        return None
    ident, flags = struct.unpack_from("!HH", wire)
    return _HEADER.pack(ident, _QR | (flags & _KEEP) | (rcode & 0xF), 0, 0, 0, 0)


def reply_limit(query: dns.message.Message, *, tcp: bool) -> int:
    """The most bytes a reply to ``query`` may have on its transport."""
    if tcp:
        return MAX_TCP_MESSAGE
    if query.edns < 0:
        return UDP_LIMIT
    return max(UDP_LIMIT, min(query.payload, MAX_UDP_PAYLOAD))


def render(message: dns.message.Message, limit: int) -> bytes:
    """``message`` in wire form within ``limit`` bytes: records that do not fit are
    left out, and TC is set when an answer or authority record was."""
    return message.to_wire(max_size=limit, prefer_truncation=True)


def frame(wire: bytes) -> bytes:
    """``wire`` with its TCP length prefix (RFC 1035 4.2.2)."""
    return len(wire).to_bytes(2, "big") + wire


class TcpFramer:
    """Cuts a TCP byte stream into DNS messages: each has a 2-byte length prefix.

    Bytes in (:meth:`receive`), whole messages out. It holds at most one
    incomplete message (under 64 KiB) between calls.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return every message it completes, in order."""
        self._buffer += data
        messages: list[bytes] = []
        while len(self._buffer) >= 2:
            size = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + size:
                break
            messages.append(bytes(self._buffer[2 : 2 + size]))
            del self._buffer[: 2 + size]
        return messages

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole message yet."""
        return len(self._buffer)
