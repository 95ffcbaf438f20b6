"""Active checks of one endpoint: TCP connect, or HTTP GET and compare the status.

Every probe runs under one deadline, the check's ``timeout``, that covers the
connect, the request and the response head (``asyncio.timeout``); the
connection is always closed. A probe never raises for what the endpoint
does: it returns a :class:`ProbeResult` whose ``reason`` says, for a person,
why it failed (``timeout``, ``connection refused``, ``status 500, expected
200``, ...). Only cancellation propagates.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from podnet.errors import InvalidInput, PodnetError
from podnet.health.connect import Connector, default_connector
from podnet.health.response import MAX_HEAD, ResponseError, StatusReader
from podnet.model.network import IPAddress
from podnet.model.service import HealthCheck

__all__ = [
    "TIMEOUT",
    "ProbeResult",
    "check_path",
    "describe_error",
    "http_request",
    "probe",
]

#: The reason of a probe that ran out of time.
TIMEOUT = "timeout"
_READ_SIZE = 4096
_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EPIPE: "connection reset",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe; ``reason`` is empty when it passed."""

    ok: bool
    reason: str = ""


_PASS = ProbeResult(True)


def check_path(path: str) -> str:
    """``path`` if it can go on a request line as it is.

    Raises:
        InvalidInput: it does not start with ``/`` or has spaces, controls or non-ASCII.
    """
    if not path.startswith("/") or not all(0x21 <= ord(c) <= 0x7E for c in path):
        raise InvalidInput(
            f"health check path {path!r} is not valid",
            hint="give an absolute path without spaces, e.g. /health",
        )
    return path


def http_request(path: str, address: IPAddress, port: int) -> bytes:
    """The GET a check sends: Host is the endpoint, the connection closes after.

    Raises:
        InvalidInput: ``path`` is not valid (see :func:`check_path`).
    """
    host = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
    return (
        f"GET {check_path(path)} HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: podnet-health/1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def _ip(address: str | IPAddress) -> IPAddress:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise InvalidInput(f"endpoint address {address!r} is not an IP address") from None


def describe_error(exc: OSError) -> str:
    """A short reason for a failed connection."""
    if isinstance(exc, TimeoutError):  # ETIMEDOUT from the kernel
        return TIMEOUT
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    if exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


async def _tcp(connect: Connector, address: str, port: int) -> ProbeResult:
    _, writer = await connect(address, port)
    writer.close()
    return _PASS


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = StatusReader(MAX_HEAD)
    while True:  # bounded: each round takes >= 1 byte, MAX_HEAD bytes at most
        data = await reader.read(_READ_SIZE)
        if not data:
            raise ResponseError("closed before the response head")
        status = head.feed(data)
        if status is not None:
            return status


async def _http(
    connect: Connector, address: str, port: int, request: bytes, expect: int
) -> ProbeResult:
    reader, writer = await connect(address, port)
    try:
        writer.write(request)
        await writer.drain()
        status = await _read_status(reader)
    finally:
        writer.close()
    if status != expect:
        return ProbeResult(False, f"status {status}, expected {expect}")
    return _PASS


async def _bounded(attempt: Coroutine[Any, Any, ProbeResult], timeout: float) -> ProbeResult:
    try:
        # asyncio.timeout, not wait_for: on 3.11, wait_for swallows a cancellation
        # that lands as the probe completes (CPython gh-86296, fixed in 3.12 by
        # rebuilding wait_for on asyncio.timeout), and the monitor could not stop.
        async with asyncio.timeout(timeout):
            return await attempt
    except TimeoutError:
        return ProbeResult(False, TIMEOUT)
    except OSError as exc:
        return ProbeResult(False, describe_error(exc))
    except ResponseError as exc:
        return ProbeResult(False, str(exc))
    except PodnetError as exc:  # from a connector: the pod's netns is gone, say
        return ProbeResult(False, exc.message)


async def probe(
    check: HealthCheck,
    address: str | IPAddress,
    port: int,
    *,
    connect: Connector | None = None,
) -> ProbeResult:
    """Run ``check`` once against ``address``:``port``.

    Args:
        check: kind ``tcp`` connects, ``http`` sends GET ``path`` and passes iff the
            status is ``expect_status``, ``none`` passes without I/O.
        address: the endpoint's IP address.
        port: its TCP port.
        connect: opens the connection (default: from this network namespace).

    Returns:
        The result; failures carry a reason, ``timeout`` after ``check.timeout``.

    Raises:
        InvalidInput: the address is not an IP address, or the check's path is not valid.
    """
    if check.kind == "none":
        return _PASS
    ip = _ip(address)
    connect = connect or default_connector
    if check.kind == "http":
        request = http_request(check.path, ip, port)
        return await _bounded(
            _http(connect, str(ip), port, request, check.expect_status), check.timeout
        )
    return await _bounded(_tcp(connect, str(ip), port), check.timeout)
