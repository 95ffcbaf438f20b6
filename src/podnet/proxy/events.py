"""The events a connection emits while parsing and accepts for sending.

One message is ``Request`` or ``Response``, zero or more ``Data``, then
``EndOfMessage``. Interim (1xx) responses are ``Response`` events with no
Data/EndOfMessage after them. ``ConnectionClosed`` reports that the peer
closed its side, between messages or at the end of a close-delimited body.

Events are slotted dataclasses (cheap to create on the hot path); treat them
as immutable. A parsed ``Request``/``Response`` carries the
:class:`~podnet.proxy.framing.Facts` the parser derived; an event built by the
caller has ``facts=None`` and the connection derives them when sending.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podnet.proxy.framing import Facts, Framing, request_facts
from podnet.proxy.headers import Headers

__all__ = ["ConnectionClosed", "Data", "EndOfMessage", "Event", "Request", "Response"]


@dataclass(slots=True)
class Request:
    """A request head. ``version`` is b"1.0" or b"1.1" (later 1.x reads as 1.1)."""

    method: bytes
    target: bytes
    version: bytes
    headers: Headers
    facts: Facts | None = field(default=None, repr=False, compare=False)

    def _facts(self) -> Facts:
        if self.facts is None:
            self.facts = request_facts(self.method, self.version, self.headers)
        return self.facts

    @property
    def framing(self) -> Framing:
        """Where the request body ends."""
        return self._facts().framing

    @property
    def keep_alive(self) -> bool:
        """The client allows the connection to persist after this request."""
        return self._facts().keep_alive

    @property
    def expect_continue(self) -> bool:
        """The client waits for ``100 Continue`` before sending the body."""
        return self._facts().expect_continue

    @property
    def upgrade(self) -> bytes | None:
        """The protocols the client proposes to switch to (Upgrade), if any."""
        return self._facts().upgrade

    @property
    def is_connect(self) -> bool:
        """A CONNECT request: a 2xx answer turns the connection into a tunnel."""
        return self.method == b"CONNECT"

    @property
    def authority(self) -> bytes | None:
        """Where the request is going: the authority of an absolute-form target
        (RFC 9112 §3.2.2 says it overrides Host), the target of CONNECT, else Host."""
        if self.method == b"CONNECT":
            return self.target
        scheme, sep, rest = self.target.partition(b"://")
        if sep and scheme[:1].isalpha():
            authority = rest.split(b"/", 1)[0].split(b"?", 1)[0]
            return authority.rpartition(b"@")[2]
        return self._facts().host


@dataclass(slots=True)
class Response:
    """A response head: final (status >= 200) or interim (1xx)."""

    status: int
    reason: bytes
    headers: Headers
    version: bytes = b"1.1"
    facts: Facts | None = field(default=None, repr=False, compare=False)

    @property
    def informational(self) -> bool:
        """An interim 1xx response (101 included)."""
        return self.status < 200


@dataclass(slots=True)
class Data:
    """A piece of a body, as it arrived (chunk boundaries are not kept)."""

    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    """The end of a body; ``trailers`` holds chunked trailer fields, if any.

    Trailer fields are never merged into the header section by this module
    (RFC 9110 §6.5.1); the proxy forwards or drops them.
    """

    trailers: Headers = field(default_factory=Headers)


@dataclass(slots=True)
class ConnectionClosed:
    """The peer closed its side of the connection."""


Event = Request | Response | Data | EndOfMessage | ConnectionClosed
