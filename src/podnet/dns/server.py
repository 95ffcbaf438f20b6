"""podnet's DNS server: the zone over UDP and TCP, forwarding the rest upstream.

The agent runs one on each network's gateway address, port 53; pods'
resolv.conf points there. From code::

    server = DnsServer(lambda: current_zone, [("10.89.0.1", 53)], upstreams=[("10.0.0.2", 53)])
    await server.start()      # returns once every socket answers, or raises
    ...
    await server.stop()

``start`` binds UDP and TCP on the same port of every listen address (with
port 0, a free port both share) and returns only when all are answering: that
is the readiness signal. When one address cannot be bound, the ones already
bound are released and :class:`~podnet.errors.PodnetError` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from podnet.dns.forward import Forwarder
from podnet.dns.handler import Counters, Limits, QueryHandler, ZoneProvider
from podnet.dns.protocols import TcpClients, TcpProtocol, UdpProtocol
from podnet.errors import Conflict, InvalidInput, PodnetError

__all__ = ["BACKLOG", "DnsServer"]

BACKLOG = 256
_PORT_TRIES = 20  # port 0: UDP's free port may be taken for TCP; try another
_CLOSE_GRACE = 1.0


class DnsServer:
    """Serves the provider's zone on UDP and TCP, forwarding other names.

    Args:
        zone_provider: returns the current zone, once per query; the agent
            swaps in a new snapshot by making it return another zone.
        listen: ``(address, port)`` pairs to serve on (port 0: a free one).
        upstreams: servers for names outside the zone; none: REFUSED.
        limits: timeouts and caps (defaults are for a node's pods).
    """

    def __init__(
        self,
        zone_provider: ZoneProvider,
        listen: Sequence[tuple[str, int]],
        upstreams: Sequence[tuple[str, int]] = (),
        *,
        limits: Limits | None = None,
    ) -> None:
        if not listen:
            raise InvalidInput("the DNS server has no address to listen on")
        self.limits = limits or Limits()
        self.listen = tuple(listen)
        self.upstreams = tuple(upstreams)
        forwarder = (
            Forwarder(self.upstreams, timeout=self.limits.forward_timeout) if upstreams else None
        )
        self._handler = QueryHandler(zone_provider, forwarder, self.limits)
        self._clients = TcpClients(self.limits.max_tcp_clients)
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []

    @property
    def serving(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return bool(self._udp)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound ``(address, port)`` of each listen address (UDP and TCP alike)."""
        return [t.get_extra_info("sockname")[:2] for t in self._udp]

    @property
    def counters(self) -> Counters:
        return self._handler.counters

    @property
    def tcp_clients(self) -> int:
        """TCP connections open now."""
        return len(self._clients)

    async def start(self) -> None:
        """Bind every listen address, UDP and TCP, and start answering.

        Raises:
            PodnetError: an address is in use, not allowed, or not on this host.
        """
        if self.serving:
            return
        try:
            for host, port in self.listen:
                await self._bind(host, port)
        except BaseException:
            await self._close_sockets()
            raise

    async def stop(self) -> None:
        """Stop answering: close every socket and connection, cancel forwarding."""
        await self._close_sockets()
        await self._handler.close()

    async def _bind(self, host: str, port: int) -> None:
        for _ in range(_PORT_TRIES if port == 0 else 1):
            udp = await self._bind_udp(host, port)
            bound = int(udp.get_extra_info("sockname")[1])
            try:
                tcp = await self._bind_tcp(host, bound)
            except OSError as exc:
                udp.close()
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    continue
                raise _bind_error(exc, host, bound) from None
            self._udp.append(udp)
            self._tcp.append(tcp)
            return
        raise Conflict(f"found no port free for both UDP and TCP on {host}")

    async def _bind_udp(self, host: str, port: int) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        handler = self._handler
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UdpProtocol(handler), local_addr=(host, port)
            )
        except OSError as exc:
            raise _bind_error(exc, host, port) from None
        return transport

    async def _bind_tcp(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        handler, clients, idle = self._handler, self._clients, self.limits.tcp_idle_timeout
        return await loop.create_server(
            lambda: TcpProtocol(handler, clients, idle),
            host,
            port,
            backlog=BACKLOG,
            reuse_address=True,
        )

    async def _close_sockets(self) -> None:
        udp, tcp = self._udp, self._tcp
        self._udp, self._tcp = [], []
        for transport in udp:
            transport.close()
        for server in tcp:
            server.close()
        self._clients.abort_all()
        for server in tcp:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _CLOSE_GRACE)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def _bind_error(exc: OSError, host: str, port: int) -> PodnetError:
    """Translate a failure to bind into podnet's error, with a hint."""
    where = f"{host} port {port}"
    if exc.errno == errno.EADDRINUSE:
        return Conflict(
            f"DNS server cannot listen on {where}: already in use",
            hint="stop the other DNS server there (dnsmasq, systemd-resolved) or pick another",
        )
    if exc.errno == errno.EACCES:
        return PodnetError(
            f"DNS server is not allowed to listen on {where}",
            hint="port 53 needs root or CAP_NET_BIND_SERVICE",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return InvalidInput(f"DNS server cannot listen on {where}: not an address of this host")
    return PodnetError(f"DNS server cannot listen on {where}: {exc.strerror or exc}")
