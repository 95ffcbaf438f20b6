"""Kernel side of a CNI attachment: a veth from the runtime's netns to a bridge.

Unlike pods, the container's namespace belongs to the runtime, so this runs
on request (ADD, DEL) rather than from the reconcile loop; the bridge and nft
rules it relies on are the reconciler's.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from podnet.controller.plan import tag
from podnet.errors import NotFound, PodnetError
from podnet.kernel import netns
from podnet.kernel.netlink import Netlink
from podnet.model.attachment import CniAttachment
from podnet.model.network import IPAddress, IPNetwork, Network

__all__ = ["attach", "detach", "inspect"]


def attach(
    att: CniAttachment,
    net: Network,
    *,
    host: Netlink,
    table: str,
    routes: Sequence[tuple[IPNetwork, IPAddress | None]],
    hairpin: bool,
) -> tuple[str, str]:
    """Create the veth (container end in ``att.netns``), address it, route it,
    and plug the host end into the network's bridge. Rolls back on failure.

    The host end is created up and on the bridge, and both MACs are chosen
    here, so the whole set-up is one creation plus a few container-side
    requests, with nothing read back.

    Returns:
        (container end's MAC, host end's MAC).
    """
    if not netns.exists(att.netns):
        raise NotFound(f"network namespace {att.netns} does not exist")
    inside_mac, host_mac = att.mac or random_mac(), random_mac()
    # Opening a socket in the container's netns (a thread, setns, a socket)
    # overlaps with the host-side requests below.
    opening = _open_soon(att.netns)
    try:
        _host_side(att, net, host, table=table, hairpin=hairpin, macs=(inside_mac, host_mac))
    except BaseException:
        _close_when_open(opening)
        raise
    try:
        with opening.result() as inside:
            for address in att.addresses:
                inside.add_address(att.ifname, address)
            inside.set_up(att.ifname)
            for dst, gateway in routes:
                inside.add_route(dst, gateway=gateway, ifname=att.ifname)
    except BaseException:
        host.delete_link(att.host_ifname)  # ours: made just above; takes both ends
        raise
    return inside_mac, host_mac


def _open_soon(target: str) -> Future[Netlink]:
    """``Netlink(target)`` on a one-off thread (a pool's long-lived threads
    would keep whatever netns they were started in alive)."""
    future: Future[Netlink] = Future()

    def run() -> None:
        try:
            future.set_result(Netlink(target))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="podnet-netns-open", daemon=True).start()
    return future


def _close_when_open(opening: Future[Netlink]) -> None:
    with contextlib.suppress(Exception):
        opening.result().close()


def _host_side(
    att: CniAttachment,
    net: Network,
    host: Netlink,
    *,
    table: str,
    hairpin: bool,
    macs: tuple[str, str],
) -> None:
    inside_mac, host_mac = macs
    host.create_veth(
        att.host_ifname,
        att.ifname,
        peer_netns=att.netns,
        mtu=net.mtu,
        mac=host_mac,
        peer_mac=inside_mac,
        master=net.bridge,
    )
    try:
        host.set_alias(att.host_ifname, tag(table, "cni", f"{att.container_id}/{att.ifname}"))
        if hairpin:
            host.set_bridge_port(att.host_ifname, hairpin=True)
    except BaseException:
        host.delete_link(att.host_ifname)
        raise


def random_mac() -> str:
    """A random locally administered unicast MAC (as the kernel would pick)."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


def detach(att: CniAttachment, host: Netlink) -> None:
    """Remove the veth from its host end (which takes both ends), or from the
    container end when only that is left. Missing is success."""
    if host.delete_link(att.host_ifname) or not netns.exists(att.netns):
        return
    with contextlib.suppress(NotFound), Netlink(att.netns) as inside:
        inside.delete_link(att.ifname)


def inspect(att: CniAttachment, net: Network, host: Netlink) -> list[str]:
    """What is wrong with an attachment's kernel state (CHECK); [] when all is well."""
    problems: list[str] = []
    if not netns.exists(att.netns):
        return [f"network namespace {att.netns} does not exist"]
    try:
        with Netlink(att.netns) as inside:
            link = inside.link(att.ifname)
            have = {a.interface for a in inside.addresses(att.ifname)} if link else set()
    except PodnetError as exc:
        return [str(exc)]
    if link is None:
        return [f"interface {att.ifname} is missing in {att.netns}"]
    if not link.up:
        problems.append(f"interface {att.ifname} is down")
    problems += [f"address {a} is missing on {att.ifname}" for a in att.addresses if a not in have]
    peer = host.link(att.host_ifname)
    bridge = host.link(net.bridge)
    if peer is None or bridge is None or peer.master != bridge.index:
        problems.append(f"host end {att.host_ifname} is not on bridge {net.bridge}")
    return problems
