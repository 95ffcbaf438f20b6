"""Events of the whoami request parser: what a connection's bytes amount to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["ContinueExpected", "Event", "Rejected", "Request"]


class Request(NamedTuple):
    """One complete request; its body, if any, was read and discarded."""

    method: bytes
    target: bytes
    version: bytes
    #: Header fields in arrival order, names as sent, values without OWS.
    headers: list[tuple[bytes, bytes]]
    #: Request line and header lines as received, each ending in LF.
    head: bytes
    #: The Host header's value (empty when an HTTP/1.0 request has none).
    host: bytes
    #: False when the connection closes after this request's response.
    keep_alive: bool
    #: How many body bytes the request carried (counted, not kept).
    body_length: int = 0


@dataclass(frozen=True, slots=True)
class ContinueExpected:
    """The client sent ``Expect: 100-continue`` and waits before its body."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The request cannot be served: answer ``status`` and close."""

    status: int
    detail: str


Event = Request | ContinueExpected | Rejected
