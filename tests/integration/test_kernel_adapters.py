"""The kernel adapters against a real kernel, inside throwaway namespaces.

Every test makes its own network namespaces (``pnt-k-<random>``) and removes
them in a fixture's ``finally``; nothing is created in the machine's root
namespace. ``Netlink(None)`` and ``Nft(None)`` are exercised from threads that
``run_in`` moved into a test namespace. The module checks at the end that no
namespace it made is still listed by ``ip netns list`` and that no test link
(names start with ``pntk``) appeared in the root namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

import podnet.kernel
from podnet.errors import AlreadyExists, InvalidInput, KernelError, NotFound
from podnet.kernel import Netlink, Nft, netns, run_in, sysctl

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

_CREATED: set[str] = set()
IP = ipaddress.ip_interface
NET = ipaddress.ip_network
ADDR = ipaddress.ip_address


def _listed_netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _root_test_links() -> list[str]:
    # Read-only look at the root namespace: our test links all start "pntk".
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    names = [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()]
    return [n for n in names if n.startswith("pntk")]


@pytest.fixture(scope="module", autouse=True)
def _leaves_nothing_behind() -> Iterator[None]:
    before = _root_test_links() if os.geteuid() == 0 else []
    yield
    assert not _CREATED & _listed_netns(), "test namespaces were left behind"
    if os.geteuid() == 0:
        assert _root_test_links() == before, "a test link appeared in the root netns"


@pytest.fixture
def make_ns() -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = f"pnt-k-{secrets.token_hex(4)}"
        _CREATED.add(name)
        netns.create(name)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            netns.delete(name)


@pytest.fixture
def host(make_ns: Callable[[], str]) -> str:
    return make_ns()


@pytest.fixture
def pod(make_ns: Callable[[], str]) -> str:
    return make_ns()


def _ns_inode(name: str) -> int:
    return os.stat(netns.path(name)).st_ino


def _thread_ns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


# -- netns -------------------------------------------------------------------


@pytest.mark.root
@needs_root
def test_netns_lifecycle_is_visible_to_ip_netns() -> None:
    name = f"pnt-k-{secrets.token_hex(4)}"
    _CREATED.add(name)
    try:
        assert not netns.exists(name)
        netns.create(name)
        assert netns.exists(name)
        assert name in _listed_netns()
        assert name in netns.list_names("pnt-k-")
        assert netns.path(name) == f"/run/netns/{name}"
        with pytest.raises(AlreadyExists, match=name):
            netns.create(name)
        assert netns.ensure(name) is False
    finally:
        assert netns.delete(name) is True
    assert netns.delete(name) is False
    assert name not in _listed_netns()
    try:
        assert netns.ensure(name) is True
        assert netns.exists(name)
    finally:
        netns.delete(name)


def test_netns_rejects_names_that_are_not_file_names() -> None:
    for bad in ["", ".", "..", "a/b"]:
        with pytest.raises(InvalidInput):
            netns.path(bad)


@pytest.mark.root
@needs_root
def test_run_in_runs_on_a_thread_inside_the_netns(host: str) -> None:
    assert run_in(host, _thread_ns_inode) == _ns_inode(host)
    assert run_in(None, threading.get_ident) == threading.get_ident()
    with pytest.raises(ZeroDivisionError):
        run_in(host, lambda: 1 // 0)
    with pytest.raises(NotFound, match="pnt-k-missing"):
        run_in("pnt-k-missing", lambda: None)


@pytest.mark.root
@needs_root
def test_run_in_socket_stays_in_its_netns(host: str, pod: str) -> None:
    for name in (host, pod):
        with Netlink(name) as nl:
            nl.set_up("lo")
    listener = run_in(host, lambda: socket.create_server(("127.0.0.1", 0)))
    with listener:
        port = listener.getsockname()[1]
        run_in(host, lambda: socket.create_connection(("127.0.0.1", port), timeout=5)).close()
        with pytest.raises(ConnectionRefusedError):
            run_in(pod, lambda: socket.create_connection(("127.0.0.1", port), timeout=5))


# -- links -------------------------------------------------------------------


def _bridge_port(ns: str, dev: str) -> dict[str, Any]:
    argv = ["nsenter", f"--net={netns.path(ns)}", "bridge", "-j", "-d", "link", "show", "dev", dev]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    port: dict[str, Any] = json.loads(out.stdout)[0]
    return port


@pytest.mark.root
@needs_root
def test_bridge_and_veth_with_peer_in_another_netns(host: str, pod: str) -> None:
    with Netlink(host) as h, Netlink(pod) as p:
        bridge = h.add_bridge("pntkbr0", mtu=1400, alias="network:t")
        assert (bridge.kind, bridge.alias, bridge.mtu, bridge.up) == (
            "bridge",
            "network:t",
            1400,
            False,
        )
        eth0 = p.add_veth("eth0", "pntkv0", peer_netns=host, mtu=1400, peer_alias="pod:p/eth0")
        assert (eth0.name, eth0.kind, eth0.mtu) == ("eth0", "veth", 1400)
        assert p.link("pntkv0") is None
        assert h.link("eth0") is None
        peer = h.link("pntkv0")
        assert peer is not None
        assert (peer.kind, peer.alias, peer.mtu) == ("veth", "pod:p/eth0", 1400)
        h.set_master("pntkv0", "pntkbr0")
        h.set_bridge_port("pntkv0", hairpin=True, learning=False)
        h.set_up("pntkv0")
        h.set_mtu("pntkbr0", 1300)
        assert h.link("pntkv0") == replace(peer, master=bridge.index, up=True)
        port = _bridge_port(host, "pntkv0")
        assert (port["hairpin"], port["learning"]) == (True, False)
        h.set_master("pntkv0", None)
        assert h.ifindex("pntkbr0") == bridge.index
        assert h.link("pntkv0") == replace(peer, up=True)
        assert {link.name for link in h.links()} == {"lo", "pntkbr0", "pntkv0"}
        assert p.delete_link("eth0") is True
        assert h.link("pntkv0") is None  # deleting one end deletes the pair
        assert p.delete_link("eth0") is False


@pytest.mark.root
@needs_root
def test_none_means_the_constructing_threads_netns(host: str, pod: str) -> None:
    def in_host() -> tuple[list[str], podnet.kernel.Link | None]:
        with Netlink(None) as here:
            here.add_bridge("pntkbr1")
            names = [link.name for link in here.links()]
        with Netlink(pod) as p:
            p.add_veth("eth0", "pntkv1", peer_netns=None, peer_alias="pod:p/eth0")
        with Netlink(None) as here:
            return names, here.link("pntkv1")

    names, peer = run_in(host, in_host)
    assert names == ["lo", "pntkbr1"]
    assert peer is not None
    assert (peer.kind, peer.alias) == ("veth", "pod:p/eth0")


@pytest.mark.root
@needs_root
def test_deleting_the_pod_netns_deletes_the_host_end(host: str, pod: str) -> None:
    with Netlink(pod) as p:
        p.add_veth("eth0", "pntkv0", peer_netns=host)
    # Netlink(pod) is closed: an open one would keep the namespace alive.
    netns.delete(pod)
    with Netlink(host) as h:
        deadline = time.monotonic() + 10  # the kernel tears a netns down asynchronously
        while h.link("pntkv0") is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert h.link("pntkv0") is None


@pytest.mark.root
@needs_root
def test_one_netlink_serves_many_threads(host: str) -> None:
    with Netlink(host) as h:
        h.add_bridge("pntkbr0")

        def lookups(_: int) -> set[int | None]:
            return {(link.index if link else None) for link in map(h.link, ["pntkbr0"] * 20)}

        with ThreadPoolExecutor(max_workers=8) as pool:
            seen = set().union(*pool.map(lookups, range(8)))
        assert seen == {h.ifindex("pntkbr0")}
    with pytest.raises(RuntimeError, match="closed"):
        h.links()


@pytest.mark.root
@needs_root
def test_errors_are_translated_and_name_the_object(host: str, pod: str) -> None:
    with Netlink(host) as h:
        h.add_bridge("pntkbr0")
        with pytest.raises(AlreadyExists) as exists:
            h.add_bridge("pntkbr0")
        assert str(exists.value) == f"creating bridge 'pntkbr0' in netns '{host}': File exists"
        with pytest.raises(NotFound, match=r"bringing up 'pntk-nope' in netns .*No such device"):
            h.set_up("pntk-nope")
        with pytest.raises(NotFound):
            h.set_master("pntkbr0", "pntk-nope")
        assert h.delete_link("pntk-nope") is False
        assert h.link("pntk-nope") is None
    with Netlink(pod) as p:
        # The peer's name is taken in the target: nothing is created.
        with pytest.raises(AlreadyExists) as taken:
            p.add_veth("eth0", "pntkbr0", peer_netns=host)
        assert str(taken.value) == (
            f"creating veth 'eth0' (peer 'pntkbr0' in netns '{host}') in netns '{pod}': File exists"
        )
        assert [link.name for link in p.links()] == ["lo"]
        with pytest.raises(NotFound, match="pnt-k-missing"):
            p.add_veth("eth0", "pntkv9", peer_netns="pnt-k-missing")
    with pytest.raises(NotFound, match="pnt-k-missing"):
        Netlink("pnt-k-missing")


# -- addresses and routes ----------------------------------------------------


def _wire(host: str, pod: str) -> None:
    """pod eth0 <-> host pntkv0 on bridge pntkbr0; 10.77.0.0/24 and fd77::/64."""
    with Netlink(host) as h, Netlink(pod) as p:
        h.add_bridge("pntkbr0")
        p.add_veth("eth0", "pntkv0", peer_netns=host)
        h.set_master("pntkv0", "pntkbr0")
        for nl, dev, last in ((h, "pntkbr0", 1), (p, "eth0", 2)):
            nl.add_address(dev, IP(f"10.77.0.{last}/24"))
            nl.add_address(dev, IP(f"fd77::{last}/64"))
            nl.add_address(dev, IP(f"fd77::{last}/64"))  # idempotent
        for nl, dev in ((h, "pntkbr0"), (h, "pntkv0"), (p, "eth0"), (p, "lo")):
            nl.set_up(dev)


def _udp_roundtrip(host: str, server_ip: str, pod: str, client_ip: str) -> None:
    family = socket.AF_INET6 if ":" in server_ip else socket.AF_INET

    def bound(ip: str) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((ip, 0))  # fails on a tentative (DAD pending) IPv6 address
        return sock

    with (
        run_in(host, lambda: bound(server_ip)) as server,
        run_in(pod, lambda: bound(client_ip)) as client,
    ):
        server.settimeout(5)
        client.sendto(b"ping", server.getsockname()[:2])
        data, peer = server.recvfrom(64)
        assert (data, peer[0]) == (b"ping", client_ip)


@pytest.mark.root
@needs_root
def test_addresses_are_usable_at_once(host: str, pod: str) -> None:
    _wire(host, pod)
    _udp_roundtrip(host, "10.77.0.1", pod, "10.77.0.2")
    _udp_roundtrip(host, "fd77::1", pod, "fd77::2")
    with Netlink(pod) as p:
        eth0 = p.ifindex("eth0")
        mine = {a.interface for a in p.addresses("eth0") if not a.interface.is_link_local}
        assert mine == {IP("10.77.0.2/24"), IP("fd77::2/64")}
        assert all(a.ifindex == eth0 for a in p.addresses("eth0"))
        assert IP("127.0.0.1/8") in {a.interface for a in p.addresses()}
        assert p.del_address("eth0", IP("10.77.0.2/24")) is True
        assert p.del_address("eth0", IP("10.77.0.2/24")) is False
        assert p.del_address("pntk-nope", IP("10.77.0.2/24")) is False
        with pytest.raises(NotFound, match="pntk-nope"):
            p.add_address("pntk-nope", IP("10.77.0.9/24"))


@pytest.mark.root
@needs_root
def test_routes_replace_list_and_delete(host: str, pod: str) -> None:
    _wire(host, pod)
    with Netlink(pod) as p:
        eth0 = p.ifindex("eth0")
        p.add_route(None, gateway=ADDR("10.77.0.1"))
        p.add_route(NET("10.99.0.0/16"), gateway=ADDR("10.77.0.1"), ifname="eth0")
        p.add_route(NET("10.99.0.0/16"), gateway=ADDR("10.77.0.3"))  # replaces
        p.add_route(None, gateway=ADDR("fd77::1"))
        p.add_route(NET("fd99::/64"), ifname="eth0")
        routes4 = p.routes(4)
        assert podnet.kernel.Route(None, ADDR("10.77.0.1"), eth0) in routes4
        assert [r.gateway for r in routes4 if r.dst == NET("10.99.0.0/16")] == [ADDR("10.77.0.3")]
        assert podnet.kernel.Route(NET("10.77.0.0/24"), None, eth0) in routes4
        routes6 = p.routes(6)
        assert podnet.kernel.Route(None, ADDR("fd77::1"), eth0) in routes6
        assert podnet.kernel.Route(NET("fd99::/64"), None, eth0) in routes6
        assert p.del_route(NET("10.99.0.0/16")) is True
        assert p.del_route(NET("10.99.0.0/16")) is False
        assert p.del_route(None, version=6) is True
        assert all(r.dst != NET("10.99.0.0/16") for r in p.routes(4))
        assert all(r.dst is not None for r in p.routes(6))
        with pytest.raises(InvalidInput):
            p.add_route(None, ifname="eth0")


# -- nft ---------------------------------------------------------------------

_SCRIPT = """\
add table inet podnet
add chain inet podnet post { type nat hook postrouting priority srcnat; }
add rule inet podnet post ip saddr 10.1.0.0/24 masquerade comment "network:front"
"""


def _rules(listing: dict[str, Any]) -> list[str]:
    return [o["rule"].get("comment", "") for o in listing["nftables"] if "rule" in o]


def _chains(listing: dict[str, Any]) -> list[str]:
    return [o["chain"]["name"] for o in listing["nftables"] if "chain" in o]


@pytest.mark.root
@needs_root
def test_nft_apply_list_and_errors(host: str) -> None:
    nft = Nft(host)
    assert nft.list_json("inet", "podnet") is None
    nft.apply(_SCRIPT)
    listing = nft.list_json("inet", "podnet")
    assert listing is not None
    assert _rules(listing) == ["network:front"]
    broken = "add chain inet podnet extra\nadd rule inet podnet nochain accept\n"
    with pytest.raises(KernelError) as failed:
        nft.apply(broken)
    message = str(failed.value)
    assert "Error: Could not process rule: No such file or directory" in message
    assert "add rule inet podnet nochain accept" in message
    assert failed.value.hint and "nothing was applied" in failed.value.hint
    after = nft.list_json("inet", "podnet")
    assert after is not None and _chains(after) == ["post"]  # all or nothing
    with pytest.raises(KernelError, match="Prefix length 244 is invalid"):
        nft.apply("add rule inet podnet post ip saddr 10.0.0.0/244 accept\n")


@pytest.mark.root
@needs_root
def test_nft_none_runs_in_the_calling_threads_netns(host: str, pod: str) -> None:
    run_in(host, lambda: Nft(None).apply(_SCRIPT))
    assert run_in(host, lambda: Nft(None).list_json("inet", "podnet")) is not None
    assert Nft(pod).list_json("inet", "podnet") is None
    with pytest.raises(NotFound, match="pnt-k-missing"):
        Nft("pnt-k-missing").apply(_SCRIPT)


# -- sysctl ------------------------------------------------------------------


@pytest.mark.root
@needs_root
def test_sysctl_lands_in_the_right_netns(host: str, pod: str) -> None:
    assert sysctl.get("net.ipv4.ip_forward", netns=host) == "0"
    sysctl.set("net.ipv4.ip_forward", "1", netns=host)
    assert sysctl.get("net.ipv4.ip_forward", netns=host) == "1"
    assert sysctl.get("net.ipv4.ip_forward", netns=pod) == "0"
    assert run_in(host, lambda: sysctl.get("net.ipv4.ip_forward")) == "1"
    run_in(pod, lambda: sysctl.set("net/ipv6/conf/all/forwarding", "1"))
    assert sysctl.get_path(("net", "ipv6", "conf", "all", "forwarding"), netns=pod) == "1"


@pytest.mark.root
@needs_root
def test_sysctl_keys_with_dotted_interface_names(host: str) -> None:
    with Netlink(host) as h:
        h.add_bridge("pntk.br1")
    sysctl.set("net.ipv4.conf.pntk.br1.route_localnet", "1", netns=host)
    assert sysctl.get_path(("net", "ipv4", "conf", "pntk.br1", "route_localnet"), netns=host) == "1"
    sysctl.set_path(("net", "ipv4", "conf", "pntk.br1", "route_localnet"), "0", netns=host)
    assert sysctl.get("net/ipv4/conf/pntk.br1/route_localnet", netns=host) == "0"


@pytest.mark.root
@needs_root
def test_sysctl_errors(host: str) -> None:
    with pytest.raises(NotFound, match=re.escape("net.ipv4.conf.pntk-nope.route_localnet")):
        sysctl.get("net.ipv4.conf.pntk-nope.route_localnet", netns=host)
    with pytest.raises(KernelError, match="Invalid argument"):
        sysctl.set("net.ipv4.ip_forward", "banana", netns=host)
    with pytest.raises(NotFound, match="pnt-k-missing"):
        sysctl.get("net.ipv4.ip_forward", netns="pnt-k-missing")
    with pytest.raises(InvalidInput):
        sysctl.get_path(("net", "..", "ipv4"), netns=host)


def test_sysctl_key_parsing_keeps_dotted_interface_names() -> None:
    assert sysctl.parse_key("net.ipv4.ip_forward") == ("net", "ipv4", "ip_forward")
    assert sysctl.parse_key("net.ipv4.conf.pn-front.route_localnet") == (
        "net",
        "ipv4",
        "conf",
        "pn-front",
        "route_localnet",
    )
    assert sysctl.parse_key("net.ipv6.conf.eth0.100.forwarding")[3] == "eth0.100"
    assert sysctl.parse_key("net/ipv4/conf/a.b/rp_filter") == (
        "net",
        "ipv4",
        "conf",
        "a.b",
        "rp_filter",
    )


def test_public_names_are_exported() -> None:
    for name in podnet.kernel.__all__:
        assert hasattr(podnet.kernel, name), name
    assert {"Netlink", "Nft", "FakeNft", "NftRunner", "netns", "sysctl"} <= set(
        podnet.kernel.__all__
    )
