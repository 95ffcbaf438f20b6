"""Typed views of rtnetlink messages: links, addresses and routes.

pyroute2 hands back dict-like messages with attribute lists; the rest of
podnet sees these frozen dataclasses instead, built by the ``*_from_msg``
functions below (pure, so they are easy to reason about).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any

__all__ = [
    "RT_TABLE_MAIN",
    "Address",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "Link",
    "Route",
    "address_from_msg",
    "family_of",
    "link_from_msg",
    "route_from_msg",
]

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

RT_TABLE_MAIN = 254
_RTN_UNICAST = 1
_IFF_UP = 0x1


@dataclass(frozen=True, slots=True)
class Link:
    """A network interface as the kernel reports it."""

    index: int
    name: str
    kind: str | None  # "bridge", "veth", ...; None for loopback and hardware
    alias: str | None  # podnet's ownership tag lives here
    master: int | None  # ifindex of the bridge it is enslaved to
    up: bool  # administratively up (IFF_UP), not carrier
    mtu: int
    mac: str  # "" for devices without a link-layer address


@dataclass(frozen=True, slots=True)
class Address:
    """An IP address with its prefix on the interface with index ``ifindex``."""

    ifindex: int
    interface: IPv4Interface | IPv6Interface


@dataclass(frozen=True, slots=True)
class Route:
    """A unicast route of the main table; ``dst`` None is the default route."""

    dst: IPv4Network | IPv6Network | None
    gateway: IPv4Address | IPv6Address | None
    ifindex: int | None


def family_of(version: int) -> int:
    """AF_INET or AF_INET6 for IP version 4 or 6."""
    if version not in (4, 6):
        raise ValueError(f"IP version must be 4 or 6, not {version!r}")
    return socket.AF_INET if version == 4 else socket.AF_INET6


def link_from_msg(msg: Any) -> Link:
    """Build a :class:`Link` from an RTM_NEWLINK message."""
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return Link(
        index=int(msg["index"]),
        name=str(msg.get_attr("IFLA_IFNAME")),
        kind=kind,
        alias=msg.get_attr("IFLA_IFALIAS") or None,
        master=msg.get_attr("IFLA_MASTER") or None,
        up=bool(msg["flags"] & _IFF_UP),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
    )


def address_from_msg(msg: Any) -> Address:
    """Build an :class:`Address` from an RTM_NEWADDR message."""
    # On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
    addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    return Address(
        ifindex=int(msg["index"]),
        interface=ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}"),
    )


def _table(msg: Any) -> int:
    # Tables above 255 only fit in RTA_TABLE; the header field is then 252.
    table = msg.get_attr("RTA_TABLE")
    return int(table if table is not None else msg["table"])


def route_from_msg(msg: Any) -> Route | None:
    """A :class:`Route` from an RTM_NEWROUTE message, or None if not main/unicast."""
    if _table(msg) != RT_TABLE_MAIN or msg["type"] != _RTN_UNICAST:
        return None
    dst = msg.get_attr("RTA_DST")
    gateway = msg.get_attr("RTA_GATEWAY")
    oif = msg.get_attr("RTA_OIF")
    return Route(
        dst=ipaddress.ip_network(f"{dst}/{msg['dst_len']}") if dst is not None else None,
        gateway=ipaddress.ip_address(gateway) if gateway is not None else None,
        ifindex=int(oif) if oif is not None else None,
    )
