"""What a proxy changes in the messages it forwards (RFC 9110 §7.6).

* Hop-by-hop fields go: Connection, Keep-Alive, Proxy-Connection, TE,
  Trailer, Transfer-Encoding, Upgrade, Proxy-Authenticate,
  Proxy-Authorization, and every field the Connection header names -- except
  Host and Content-Length, which a client could otherwise strip with
  ``Connection: host`` or ``Connection: content-length`` to confuse routing
  or framing (RFC 9110 §7.6.1 forbids naming such fields).
* Framing is re-created, never copied: a chunked request is forwarded with a
  fresh ``Transfer-Encoding: chunked``; Content-Length (validated) stays. A
  response's framing is chosen by the client-side connection when it sends.
* An accepted Upgrade is re-announced (``Connection: upgrade`` + ``Upgrade``)
  so the proxy can pass it through.
* Trailers are forwarded without hop-by-hop fields and without the fields
  RFC 9110 §6.5.1 keeps out of trailers (:func:`forward_trailers`).
* Added: ``Via: <version> <pseudonym>`` (appended as a new line),
  ``X-Forwarded-For`` (the client address appended to the existing list),
  ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` (replaced: a client may not
  choose them). Host is preserved.
"""

from __future__ import annotations

import functools

from podnet.proxy.events import Request, Response
from podnet.proxy.framing import Body
from podnet.proxy.headers import Headers, split_list

__all__ = [
    "HOP_BY_HOP",
    "add_forwarding",
    "forward_request",
    "forward_response",
    "forward_trailers",
    "strip_hop_by_hop",
]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
_PROTECTED = frozenset({b"host", b"content-length"})
_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")
_NOT_IN_TRAILERS = frozenset(
    {
        b"content-length",
        b"content-encoding",
        b"content-range",
        b"content-type",
        b"host",
        b"authorization",
        b"cookie",
        b"set-cookie",
        b"expect",
        b"max-forwards",
        b"cache-control",
        b"location",
        b"www-authenticate",
    }
)


@functools.lru_cache(maxsize=1024)
def _valid(value: bytes) -> bytes:
    """``value`` checked as a field value (cached: a proxy adds few distinct values --
    its protocol, its Via, its clients' addresses -- so the check runs once per value).

    Raises:
        LocalProtocolError: not a valid field value.
    """
    return Headers([(b"x", value)]).raw_items()[0][1]


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Remove hop-by-hop fields and the fields named in Connection (but not Host/Content-Length)."""
    if b"connection" not in headers:
        return headers.without(HOP_BY_HOP)
    named = set(split_list(headers.get_all(b"connection"))) - _PROTECTED
    return headers.without(HOP_BY_HOP | named)


def add_forwarding(
    headers: Headers, *, client: bytes, proto: bytes, host: bytes | None, via: bytes
) -> Headers:
    """Append the client to X-Forwarded-For, set X-Forwarded-Proto/-Host, add a Via line.

    Raises:
        LocalProtocolError: a value is not a valid field value.
    """
    client = _valid(client)
    chain = headers.get_all(b"x-forwarded-for")  # values of a Headers: valid already
    added = [
        (b"X-Forwarded-For", b", ".join([*chain, client]) if chain else client),
        (b"X-Forwarded-Proto", _valid(proto)),
    ]
    if host is not None:
        added.append((b"X-Forwarded-Host", _valid(host)))
    added.append((b"Via", _valid(via)))
    return headers.without(_FORWARDED)._extended_trusted(added)


def forward_request(
    request: Request, *, client: bytes, proto: bytes = b"http", pseudonym: bytes = b"podnet"
) -> Request:
    """The request to send upstream for ``request`` received from ``client`` (its IP).

    The result is HTTP/1.1. An HTTP/1.0 request without Host gets one from its
    absolute-form target; when it has none either, the caller must add Host
    (the upstream connection refuses to send an HTTP/1.1 request without it).
    The result has no facts yet: the upstream connection derives them when sending.
    """
    headers = strip_hop_by_hop(request.headers)
    extra: list[tuple[bytes, bytes]] = []
    if b"host" not in headers and request.authority is not None:
        extra.append((b"Host", _valid(request.authority)))
    upgrade = request.upgrade
    if upgrade is not None and not request.is_connect:
        extra += [(b"Connection", b"upgrade"), (b"Upgrade", _valid(upgrade))]
    if request.framing.body is Body.CHUNKED:
        extra.append((b"Transfer-Encoding", b"chunked"))
    if extra:
        headers = headers._extended_trusted(extra)
    headers = add_forwarding(
        headers,
        client=client,
        proto=proto,
        host=request.headers.get(b"host"),
        via=request.version + b" " + pseudonym,
    )
    return Request(request.method, request.target, b"1.1", headers)


def forward_trailers(trailers: Headers) -> Headers:
    """Trailer fields fit to forward: hop-by-hop fields and those RFC 9110 §6.5.1
    forbids in trailers (framing, routing, authentication, content metadata) are dropped,
    so that a recipient that merges trailers into the header section cannot be steered."""
    return strip_hop_by_hop(trailers).without(_NOT_IN_TRAILERS)


def forward_response(response: Response, *, pseudonym: bytes = b"podnet") -> Response:
    """The response to send downstream for ``response`` received from upstream."""
    headers = strip_hop_by_hop(response.headers)
    extra = [(b"Via", _valid(response.version + b" " + pseudonym))]
    if response.status == 101:
        upgrade = response.headers.get(b"upgrade")  # a value of a Headers: valid
        if upgrade is not None:
            extra = [(b"Connection", b"upgrade"), (b"Upgrade", upgrade), *extra]
    return Response(response.status, response.reason, headers._extended_trusted(extra))
