"""HTTP/1.1 for the proxy, without I/O: bytes in, events out; events in, bytes out.

This module is the public face of the framing core; it re-exports the API
from the modules that implement it.

Theory of operation
-------------------

A :class:`Connection` is one side of one TCP connection. The proxy holds two
per client request: a ``SERVER`` connection facing the client (it parses
requests and serialises responses) and a ``CLIENT`` connection facing the
upstream (it serialises requests and parses responses). Neither touches a
socket: the proxy feeds what it reads to :meth:`Connection.receive_data` (and
:meth:`Connection.receive_eof`) and gets events back; it passes events to
:meth:`Connection.send` and writes the bytes it gets back::

    client -bytes-> SERVER conn -Request..End-> forward_request()  -> CLIENT conn -> upstream
    client <-bytes- SERVER conn <-Response..End- forward_response() <- CLIENT conn <- upstream

Both sides of the cycle are tracked by the tables of :mod:`~podnet.proxy.state`
(IDLE -> SEND_BODY -> DONE for the client, IDLE -> SEND_RESPONSE -> SEND_BODY
-> DONE for the server, plus MUST_CLOSE, CLOSED, MIGHT_SWITCH, SWITCHED,
ERROR). A cycle ends when both are DONE; :meth:`Connection.start_next_cycle`
then starts the next one on a persistent connection.

The work is split by concern, each module documenting its decisions:

* :mod:`~podnet.proxy.head` -- start lines, limits (414/431), line endings;
* :mod:`~podnet.proxy.headers` -- field syntax, one regular expression per
  block on the fast path;
* :mod:`~podnet.proxy.framing` -- RFC 9112 §6.3 body length, keep-alive,
  Host, Upgrade, Expect: the smuggling defences;
* :mod:`~podnet.proxy.body` -- Content-Length, chunked and close-delimited
  bodies, streamed as ``Data`` events as bytes arrive; the chunked encoder;
* :mod:`~podnet.proxy.state` -- the request/response cycle as data tables;
* :mod:`~podnet.proxy.connection` -- the state machine that joins them;
* :mod:`~podnet.proxy.forwarding` -- hop-by-hop removal, Via, X-Forwarded-*;
* :mod:`~podnet.proxy.serialize` -- heads to bytes, error responses.

Flow control and buffering. Body bytes are never accumulated: every call
emits what has arrived. What stays buffered is an incomplete head (bounded by
``max_head``), an incomplete chunk line (``max_chunk_line``) and bytes that
arrive while the peer must wait -- a pipelined request while the current
response is still going, or bytes after a switch proposal. While
:attr:`Connection.should_pause_reading` is true the proxy should stop reading
the socket; a peer that pushes more than ``max_buffer`` bytes anyway is
refused.

Switching protocols. A request with ``Connection: upgrade`` + ``Upgrade``, or
a CONNECT, proposes a switch; after its end the client side waits in
MIGHT_SWITCH (its bytes are buffered, not parsed). A 101 (or a 2xx to
CONNECT) moves both sides to SWITCHED; :attr:`Connection.trailing_data` then
hands the buffered bytes to the proxy's passthrough. Any other final response
declines and the cycle goes on as HTTP.

Errors. The peer's framing mistakes raise :class:`RemoteProtocolError` with
the status to answer (:func:`error_response` renders it); a ``CLIENT``
connection reports every upstream mistake as 502. Invalid sends raise
:class:`LocalProtocolError`. Either way the connection must close.

Decisions (details and reasons in each module)
----------------------------------------------

* Strict parsing, no leniency switches: bare LF, bare CR, obs-fold,
  whitespace before a colon, control bytes in values: 400 (``head``, ``headers``).
* Content-Length: one field line, 1-18 digits; lists and repeats, even of
  identical values, are refused rather than collapsed (``framing``).
* Transfer-Encoding: only ``chunked`` alone; another final coding or chunked
  twice is 400, ``gzip, chunked`` is 501; TE with CL, or in HTTP/1.0, is 400;
  ``Content_Length``/``Transfer_Encoding`` look-alikes are 400 (``framing``).
* Chunk sizes: at most 16 hex digits and below 2**60; chunk extensions are
  parsed by the RFC grammar and dropped (``body``).
* Request line > 8 KiB: 414; head > 32 KiB or > 100 fields: 431; HTTP/1.x
  with x > 1 reads as 1.1; another major version: 505 (``head``).
* The proxy re-frames what it forwards and never copies framing headers;
  Connection cannot remove Host or Content-Length (``forwarding``).
* podnet sends HTTP/1.1 only: a response of unknown length is chunked for an
  HTTP/1.1 client and close-delimited for an HTTP/1.0 one, which never gets a
  1xx (``connection``).
* When the peer closes, pipelined requests not yet started are dropped; a
  ``CLIENT`` connection refuses bytes an upstream sends while no request is
  outstanding (a stale ``408`` on a pooled connection must not answer the
  next request) (``connection``).
"""

from __future__ import annotations

from podnet.proxy.body import ChunkedEncoder
from podnet.proxy.connection import Connection
from podnet.proxy.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from podnet.proxy.events import ConnectionClosed, Data, EndOfMessage, Event, Request, Response
from podnet.proxy.forwarding import (
    HOP_BY_HOP,
    add_forwarding,
    forward_request,
    forward_response,
    forward_trailers,
    strip_hop_by_hop,
)
from podnet.proxy.framing import CHUNKED, NO_BODY, UNTIL_CLOSE, Body, Facts, Framing
from podnet.proxy.head import Limits
from podnet.proxy.headers import Headers
from podnet.proxy.serialize import error_response, request_head, response_head
from podnet.proxy.state import Role, State

__all__ = [
    "CHUNKED",
    "HOP_BY_HOP",
    "NO_BODY",
    "UNTIL_CLOSE",
    "Body",
    "ChunkedEncoder",
    "Connection",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Event",
    "Facts",
    "Framing",
    "Headers",
    "Limits",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "Role",
    "State",
    "add_forwarding",
    "error_response",
    "forward_request",
    "forward_response",
    "forward_trailers",
    "request_head",
    "response_head",
    "strip_hop_by_hop",
]
