"""Kernel side of a CNI attachment: a veth from the runtime's netns to a bridge.

Unlike pods, the container's namespace belongs to the runtime, so this runs
on request (ADD, DEL) rather than from the reconcile loop; the bridge and nft
rules it relies on are the reconciler's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from podnet.controller.plan import tag
from podnet.errors import NotFound, PodnetError
from podnet.kernel import netns
from podnet.kernel.netlink import Link, Netlink
from podnet.model.attachment import CniAttachment
from podnet.model.network import IPAddress, IPNetwork, Network

__all__ = ["attach", "detach", "inspect"]


def attach(
    att: CniAttachment,
    net: Network,
    *,
    table: str,
    routes: Sequence[tuple[IPNetwork, IPAddress | None]],
    hairpin: bool,
) -> tuple[Link, Link]:
    """Create the veth (container end in ``att.netns``), address it, route it,
    and plug the host end into the network's bridge. Rolls back on failure.

    Returns:
        (container end, host end).
    """
    if not netns.exists(att.netns):
        raise NotFound(f"network namespace {att.netns} does not exist")
    with Netlink(att.netns) as inside, Netlink(None) as host:
        inside.add_veth(att.ifname, att.host_ifname, peer_netns=None, mtu=net.mtu)
        try:
            host.set_alias(att.host_ifname, tag(table, "cni", f"{att.container_id}/{att.ifname}"))
            host.set_master(att.host_ifname, net.bridge)
            if hairpin:
                host.set_bridge_port(att.host_ifname, hairpin=True)
            host.set_up(att.host_ifname)
            if att.mac:
                inside.set_mac(att.ifname, att.mac)
            for address in att.addresses:
                inside.add_address(att.ifname, address)
            inside.set_up(att.ifname)
            inside.set_up("lo")
            for dst, gateway in routes:
                inside.add_route(dst, gateway=gateway, ifname=att.ifname)
            return inside.link(att.ifname) or _gone(att), host.link(att.host_ifname) or _gone(att)
        except BaseException:
            inside.delete_link(att.ifname)
            raise


def _gone(att: CniAttachment) -> Link:
    raise NotFound(f"interface {att.ifname} of container {att.container_id} vanished")


def detach(att: CniAttachment) -> None:
    """Remove the veth, from whichever end is still there. Missing is success."""
    if netns.exists(att.netns):
        with contextlib.suppress(NotFound), Netlink(att.netns) as inside:
            inside.delete_link(att.ifname)
    with Netlink(None) as host:
        host.delete_link(att.host_ifname)


def inspect(att: CniAttachment, net: Network) -> list[str]:
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
    with Netlink(None) as host:
        peer = host.link(att.host_ifname)
        bridge = host.link(net.bridge)
    if peer is None or bridge is None or peer.master != bridge.index:
        problems.append(f"host end {att.host_ifname} is not on bridge {net.bridge}")
    return problems
