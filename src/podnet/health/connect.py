"""How a probe opens its TCP connection, here or inside a pod's network namespace.

A probe calls a :data:`Connector` with (address, port) and gets asyncio
streams. The default is :func:`asyncio.open_connection` in the agent's own
namespace. To check an endpoint from inside a pod (its ``127.0.0.1``, or an
address only routed there), the socket must be *created* in that namespace;
once created it stays there, and connecting, reading and writing work from
any thread. :func:`socket_connector` turns a blocking :data:`SocketFactory`
into a connector: the factory runs on a worker thread (a netns switch is a
thread hop, see :func:`podnet.kernel.netns.run_in`), the connect runs on the
event loop. :func:`netns_connector` is that, for a named netns.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable

__all__ = [
    "Connector",
    "SocketFactory",
    "Streams",
    "default_connector",
    "netns_connector",
    "netns_socket_factory",
    "socket_connector",
]

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]

#: ``await connect(address, port)``: connected streams, or OSError.
Connector = Callable[[str, int], Awaitable[Streams]]

#: ``factory(family)``: a new, unconnected TCP socket; may block (a thread hop).
SocketFactory = Callable[[socket.AddressFamily], socket.socket]


async def default_connector(address: str, port: int) -> Streams:
    """Connect from the agent's own network namespace."""
    return await asyncio.open_connection(address, port)


def _family(address: str) -> socket.AddressFamily:
    version = ipaddress.ip_address(address).version
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def _close_abandoned(future: asyncio.Future[socket.socket]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


async def _new_socket(factory: SocketFactory, family: socket.AddressFamily) -> socket.socket:
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, factory, family)
    try:
        # Shielded: a probe cancelled (timed out) meanwhile must not lose the
        # socket the thread is still making; it is closed when it arrives.
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_close_abandoned)
        raise


def socket_connector(factory: SocketFactory) -> Connector:
    """A connector whose sockets come from ``factory``, called on a worker thread.

    Args:
        factory: makes an unconnected TCP socket of the given family.
    """

    async def connect(address: str, port: int) -> Streams:
        sock = await _new_socket(factory, _family(address))
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
            return await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise

    return connect


def netns_socket_factory(netns: str | None) -> SocketFactory:
    """A factory that creates TCP sockets inside the named netns (None: this thread's)."""
    from podnet.kernel import netns as kernel_netns  # ctypes and libc, only when asked

    def make(family: socket.AddressFamily) -> socket.socket:
        return kernel_netns.run_in(netns, functools.partial(socket.socket, family))

    return make


def netns_connector(netns: str) -> Connector:
    """A connector whose connections start inside the named netns.

    A missing netns fails the probe with podnet's ``NotFound``.
    """
    return socket_connector(netns_socket_factory(netns))
