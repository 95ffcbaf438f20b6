"""Listening sockets for workloads, with bind errors a person can act on."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

from podnet.errors import Conflict, InvalidInput, PodnetError

__all__ = ["BACKLOG", "bind_error", "dual_stack_socket", "listen"]

BACKLOG = 1024
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


def bind_error(exc: OSError, host: str | None, port: int) -> PodnetError:
    """Translate a failure to listen into podnet's error, with a hint."""
    where = f"port {port}" if host is None else f"{host} port {port}"
    if isinstance(exc, socket.gaierror):
        return InvalidInput(f"cannot resolve --host {host!r}", hint="give an IP address")
    if exc.errno == errno.EADDRINUSE:
        return Conflict(f"{where} is already in use", hint="choose another --port")
    if exc.errno == errno.EACCES:
        return PodnetError(
            f"not allowed to listen on {where}",
            hint="ports below 1024 need root or CAP_NET_BIND_SERVICE; try --port 8080",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return InvalidInput(f"{host} is not an address of this host", hint="leave --host out")
    return PodnetError(f"cannot listen on {where}: {exc.strerror or exc}")


def dual_stack_socket(port: int) -> socket.socket:
    """A listening socket on every address: ``[::]`` taking IPv4 too, else 0.0.0.0."""
    if socket.has_dualstack_ipv6():
        try:
            return socket.create_server(
                ("::", port), family=socket.AF_INET6, backlog=BACKLOG, dualstack_ipv6=True
            )
        except OSError as exc:
            if exc.errno not in _NO_IPV6:  # IPv6 present in the kernel but off
                raise
    return socket.create_server(("0.0.0.0", port), backlog=BACKLOG)


async def listen(
    factory: Callable[[], asyncio.BaseProtocol], host: str | None, port: int
) -> asyncio.Server:
    """Serve ``factory``'s protocols on ``host`` (None: every address) and ``port``.

    Raises:
        PodnetError: the address is in use, not allowed, or not on this host.
    """
    loop = asyncio.get_running_loop()
    try:
        if host is None:
            sock = dual_stack_socket(port)
            try:
                return await loop.create_server(factory, sock=sock, backlog=BACKLOG)
            except BaseException:
                sock.close()
                raise
        return await loop.create_server(factory, host, port, backlog=BACKLOG)
    except OSError as exc:
        raise bind_error(exc, host, port) from None
