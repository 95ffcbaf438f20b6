"""podnet.dns.server on loopback (127.0.0.1, ::1 only), and its UDP/TCP handling
path fed garbage in-process, without sockets.

Blocking dnspython clients (``dns.query.udp``/``tcp``) run in a worker thread
so the server keeps answering on the test's event loop. Timeouts here are
guards against a hung test, never assertions about speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.dns import DnsServer, Limits, Zone, build_zone
from podnet.dns.forward import Forwarder
from podnet.dns.handler import QueryHandler
from podnet.dns.protocols import TcpClients, TcpProtocol, UdpProtocol
from podnet.dns.wire import TcpFramer, frame
from podnet.errors import Conflict, InvalidInput, PodnetError
from podnet.model.pod import Interface, PodSpec
from podnet.model.service import Endpoint, ServicePort, ServiceSpec

T = TypeVar("T")
GUARD = 60.0  # a hung test fails instead of hanging; not a timing assertion
CLIENT_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"
IP = ipaddress.ip_address


def run(coro: Awaitable[T]) -> T:
    async def guarded() -> T:
        async with asyncio.timeout(GUARD):
            return await coro

    return asyncio.run(guarded())


def pod(name: str, *addresses: str) -> PodSpec:
    interface = Interface(
        "n1", "eth0", f"pnv{name}", tuple(ipaddress.ip_interface(a) for a in addresses)
    )
    return PodSpec(name, interfaces=(interface,))


WEB = ServiceSpec(
    "web", (ServicePort(80, 8080, "tcp", "http"),), selector={"a": "web"}, vips=(IP("10.96.0.10"),)
)
BIG = ServiceSpec("big", (ServicePort(80, 80, "tcp", "http"),), selector={"a": "b"}, headless=True)
BIG_ENDPOINTS = [Endpoint(IP(f"10.89.1.{i}")) for i in range(1, 121)]


def podnet_zone(web_1: str = "10.89.0.5/24") -> Zone:
    pods = [pod("web-1", web_1, "fd00:89::5/64")]
    return build_zone(
        "podnet.", pods, [(WEB, [Endpoint(IP("10.89.0.5"), "web-1")]), (BIG, BIG_ENDPOINTS)]
    )


def upstream_zone() -> Zone:
    return build_zone("example.", [pod("www", "192.0.2.80/24")], [(BIG, BIG_ENDPOINTS)])


@contextlib.asynccontextmanager
async def serving(
    provider: Callable[[], Zone],
    upstreams: Sequence[tuple[str, int]] = (),
    limits: Limits | None = None,
    host: str = LOOPBACK,
) -> AsyncIterator[DnsServer]:
    server = DnsServer(provider, [(host, 0)], upstreams, limits=limits)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def udp(server: DnsServer, qname: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    host, port = server.addresses[0]
    message = dns.message.make_query(qname, rdtype, **kw)
    call = partial(dns.query.udp, message, host, port=port, timeout=CLIENT_TIMEOUT)
    return await asyncio.get_running_loop().run_in_executor(None, call)


async def tcp(server: DnsServer, qname: str, rdtype: str = "A") -> dns.message.Message:
    host, port = server.addresses[0]
    message = dns.message.make_query(qname, rdtype)
    call = partial(dns.query.tcp, message, host, port=port, timeout=CLIENT_TIMEOUT)
    return await asyncio.get_running_loop().run_in_executor(None, call)


def records(response: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in response.answer for rd in rrset}


# --- end to end -------------------------------------------------------------------


def test_udp_and_tcp_answer_from_the_zone() -> None:
    async def main() -> None:
        zone = podnet_zone()
        async with serving(lambda: zone) as server:
            assert server.serving
            ((host, port),) = server.addresses
            assert host == LOOPBACK and port > 0
            for ask in (udp, tcp):
                a = await ask(server, "web-1.podnet.", "A")
                assert a.rcode() == dns.rcode.NOERROR and a.flags & dns.flags.AA
                assert records(a) == {"10.89.0.5"}
                assert records(await ask(server, "WEB-1.podnet.", "AAAA")) == {"fd00:89::5"}
                srv = await ask(server, "_http._tcp.web.podnet.", "SRV")
                assert records(srv) == {"0 0 80 web.podnet."}
                assert {rd.to_text() for r in srv.additional for rd in r} == {"10.96.0.10"}
                missing = await ask(server, "nope.podnet.", "A")
                assert missing.rcode() == dns.rcode.NXDOMAIN
                assert [r.name.to_text() for r in missing.authority] == ["podnet."]
                refused = await ask(server, "example.com.", "A")
                assert refused.rcode() == dns.rcode.REFUSED

    run(main())


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main() -> None:
        zone = podnet_zone()
        try:
            server = DnsServer(lambda: zone, [("::1", 0)])
            await server.start()
        except PodnetError:
            pytest.skip("::1 is not configured")
        try:
            assert records(await udp(server, "web-1.podnet.")) == {"10.89.0.5"}
            assert records(await tcp(server, "web-1.podnet.")) == {"10.89.0.5"}
        finally:
            await server.stop()

    run(main())


def test_truncated_over_udp_then_whole_over_tcp() -> None:
    async def main() -> None:
        zone = podnet_zone()
        async with serving(lambda: zone) as server:
            truncated = await udp(server, "big.podnet.")
            assert truncated.flags & dns.flags.TC
            whole = await tcp(server, "big.podnet.")
            assert not whole.flags & dns.flags.TC
            assert len(records(whole)) == 120

    run(main())


def test_a_swapped_zone_answers_the_next_query() -> None:
    async def main() -> None:
        current = [podnet_zone("10.89.0.5/24")]
        async with serving(lambda: current[0]) as server:
            assert records(await udp(server, "web-1.podnet.")) == {"10.89.0.5"}
            current[0] = podnet_zone("10.89.0.50/24")
            assert records(await udp(server, "web-1.podnet.")) == {"10.89.0.50"}
            assert records(await tcp(server, "web-1.podnet.")) == {"10.89.0.50"}

    run(main())


def test_names_outside_the_zone_are_forwarded_upstream() -> None:
    async def main() -> None:
        zone, other = podnet_zone(), upstream_zone()
        async with (
            serving(lambda: other) as upstream,
            serving(lambda: zone, upstream.addresses) as server,
        ):
            www = await udp(server, "www.example.", "A")
            assert records(www) == {"192.0.2.80"}
            assert www.flags & dns.flags.RA and not www.flags & dns.flags.AA
            missing = await udp(server, "nope.example.")
            assert missing.rcode() == dns.rcode.NXDOMAIN
            local = await udp(server, "web-1.podnet.")
            assert local.flags & dns.flags.AA and local.flags & dns.flags.RA
            assert server.counters.forwarded == 2

    run(main())


def test_forwarding_retries_over_tcp_when_the_upstream_truncates() -> None:
    async def main() -> None:
        zone, other = podnet_zone(), upstream_zone()
        async with (
            serving(lambda: other) as upstream,
            serving(lambda: zone, upstream.addresses) as server,
        ):
            whole = await tcp(server, "big.example.")
            assert len(records(whole)) == 120
            assert upstream.counters.queries == 2  # UDP (truncated), then TCP
            assert not whole.flags & dns.flags.TC
            assert (await udp(server, "big.example.")).flags & dns.flags.TC

    run(main())


def test_servfail_after_one_retry_when_upstreams_do_not_answer() -> None:
    async def main() -> None:
        zone = podnet_zone()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind((LOOPBACK, 0))
            silent.setblocking(False)
            limits = Limits(forward_timeout=0.2)
            async with serving(lambda: zone, [silent.getsockname()], limits) as server:
                response = await udp(server, "example.com.")
                assert response.rcode() == dns.rcode.SERVFAIL
                assert response.flags & dns.flags.RA
            assert len(drain(silent)) == 2  # the try and the one retry

    run(main())


def drain(sock: socket.socket) -> list[bytes]:
    out: list[bytes] = []
    with contextlib.suppress(BlockingIOError):
        while True:
            out.append(sock.recv(4096))
    return out


def test_servfail_when_the_upstream_port_is_closed() -> None:
    async def main() -> None:
        zone = podnet_zone()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            closed = probe.getsockname()
        async with serving(lambda: zone, [closed], Limits(forward_timeout=0.5)) as server:
            assert (await udp(server, "example.com.")).rcode() == dns.rcode.SERVFAIL

    run(main())


# --- TCP: framing, caps, timeouts ------------------------------------------------


async def connect(server: DnsServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.addresses[0]
    return await asyncio.open_connection(host, port)


async def read_reply(reader: asyncio.StreamReader) -> dns.message.Message:
    size = int.from_bytes(await reader.readexactly(2), "big")
    return dns.message.from_wire(await reader.readexactly(size))


def test_tcp_clients_may_send_several_queries_at_once() -> None:
    async def main() -> None:
        zone = podnet_zone()
        async with serving(lambda: zone) as server:
            reader, writer = await connect(server)
            queries = [dns.message.make_query(n, "A") for n in ("web-1.podnet.", "web.podnet.")]
            writer.write(b"".join(frame(q.to_wire()) for q in queries))
            replies = [await read_reply(reader), await read_reply(reader)]
            assert {r.id for r in replies} == {q.id for q in queries}
            writer.close()
            await writer.wait_closed()

    run(main())


def test_tcp_clients_that_stop_sending_still_get_forwarded_replies() -> None:
    async def main() -> None:
        zone, other = podnet_zone(), upstream_zone()
        async with (
            serving(lambda: other) as upstream,
            serving(lambda: zone, upstream.addresses) as server,
        ):
            reader, writer = await connect(server)
            writer.write(frame(dns.message.make_query("www.example.", "A").to_wire()))
            writer.write_eof()
            assert records(await read_reply(reader)) == {"192.0.2.80"}
            writer.close()

    run(main())


def test_tcp_connections_over_the_cap_are_closed() -> None:
    async def main() -> None:
        zone = podnet_zone()
        async with serving(lambda: zone, limits=Limits(max_tcp_clients=1)) as server:
            reader, writer = await connect(server)
            writer.write(frame(dns.message.make_query("web-1.podnet.", "A").to_wire()))
            assert (await read_reply(reader)).rcode() == dns.rcode.NOERROR  # admitted
            other_reader, other_writer = await connect(server)
            assert await other_reader.read() == b""
            assert server.counters.tcp_rejected == 1
            assert server.tcp_clients == 1
            for w in (writer, other_writer):
                w.close()

    run(main())


def test_idle_tcp_connections_are_closed() -> None:
    async def main() -> None:
        zone = podnet_zone()
        async with serving(lambda: zone, limits=Limits(tcp_idle_timeout=0.1)) as server:
            reader, writer = await connect(server)
            writer.write(b"\x00\x20half a query")
            assert await reader.read() == b""
            writer.close()

    run(main())


def test_tcp_garbage_closes_the_connection() -> None:
    async def main() -> None:
        zone = podnet_zone()
        async with serving(lambda: zone) as server:
            reader, writer = await connect(server)
            writer.write(frame(b"not dns"))
            assert await reader.read() == b""
            writer.close()
            assert records(await tcp(server, "web-1.podnet.")) == {"10.89.0.5"}

    run(main())


# --- lifecycle and failures ----------------------------------------------------------


def test_a_taken_port_is_a_conflict_and_stop_frees_it() -> None:
    async def main() -> None:
        zone = podnet_zone()
        async with serving(lambda: zone) as first:
            address = first.addresses[0]
            second = DnsServer(lambda: zone, [address])
            with pytest.raises(Conflict):
                await second.start()
            assert not second.serving
            await first.start()  # already serving: nothing happens
            assert records(await udp(first, "web-1.podnet.")) == {"10.89.0.5"}
        assert not first.serving and first.addresses == []
        again = DnsServer(lambda: zone, [address])
        await again.start()
        await again.stop()

    run(main())


def test_a_failing_zone_provider_is_servfail() -> None:
    def broken() -> Zone:
        raise RuntimeError("agent bug")

    async def main() -> None:
        async with serving(broken) as server:
            response = await udp(server, "web-1.podnet.")
            assert response.rcode() == dns.rcode.SERVFAIL
            assert server.counters.errors == 1

    run(main())


def test_forwarding_beyond_the_cap_is_servfail_at_once() -> None:
    async def main() -> None:
        forwarder = Forwarder([(LOOPBACK, 9)])  # never asked: the cap is 0
        handler = QueryHandler(lambda: ZONE, forwarder, Limits(max_forwards=0))
        sent: list[bytes] = []
        query = dns.message.make_query("example.com.", "A")
        assert handler.handle(query.to_wire(), tcp=False, send=sent.append)
        (wire,) = sent
        assert dns.message.from_wire(wire).rcode() == dns.rcode.SERVFAIL
        assert handler.counters.overloaded == 1 and handler.forwarding == 0

    run(main())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidInput):
        DnsServer(podnet_zone, [])
    with pytest.raises(InvalidInput):
        Limits(tcp_idle_timeout=0)
    with pytest.raises(InvalidInput):
        Forwarder([])


# --- garbage into the UDP/TCP handling path, without sockets ------------------------


class FakeDatagramTransport(asyncio.DatagramTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return False


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed, "wrote after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


ZONE = podnet_zone()
SAMPLES = [
    dns.message.make_query("web-1.podnet.", "A").to_wire(),
    dns.message.make_query("_http._tcp.web.podnet.", "SRV", use_edns=0).to_wire(),
    dns.message.make_query("big.podnet.", "A").to_wire(),
]
messages = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda wire, at, value: (
            wire[: at % len(wire)] + bytes([value]) + wire[at % len(wire) + 1 :]
        ),
        st.sampled_from(SAMPLES),
        st.integers(0, 200),
        st.integers(0, 255),
    ),
)


def handler() -> QueryHandler:
    return QueryHandler(lambda: ZONE, None, Limits())


def check_replies(replies: list[bytes]) -> None:
    for wire in replies:
        response = dns.message.from_wire(wire)
        assert response.flags & dns.flags.QR


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, max_size=6))
def test_udp_handling_survives_garbage(datagrams: list[bytes]) -> None:
    async def main() -> None:
        protocol = UdpProtocol(handler())
        transport = FakeDatagramTransport()
        protocol.connection_made(transport)
        for datagram in datagrams:
            protocol.datagram_received(datagram, ("127.0.0.1", 5353))
        check_replies(transport.sent)
        assert all(len(r) <= 512 for r in transport.sent)

    run(main())


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, max_size=5), st.lists(st.integers(1, 64), max_size=5), st.booleans())
def test_tcp_handling_survives_garbage(
    stream_messages: list[bytes], cuts: list[int], raw: bool
) -> None:
    stream = b"".join(stream_messages) if raw else b"".join(map(frame, stream_messages))

    async def main() -> None:
        protocol = TcpProtocol(handler(), TcpClients(4), idle_timeout=30.0)
        transport = FakeTransport()
        protocol.connection_made(transport)
        rest = stream
        for cut in [*cuts, len(rest)]:
            protocol.data_received(rest[:cut])
            rest = rest[cut:]
        protocol.connection_lost(None)
        check_replies(TcpFramer().receive(bytes(transport.written)))

    run(main())
