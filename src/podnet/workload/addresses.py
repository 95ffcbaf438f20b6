"""The host's interface addresses and peer formatting, for whoami answers.

Addresses are read once, with one read-only rtnetlink dump (``RTM_GETADDR``),
which lists every address of every interface, secondaries included. Where
netlink is unavailable, ``SIOCGIFADDR`` (one IPv4 address per interface) and
``/proc/net/if_inet6`` are the fallback.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from typing import Final

__all__ = ["format_peer", "host_addresses", "parse_addr_dump"]

_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_RTM_NEWADDR: Final = 20
_RTM_GETADDR: Final = 22
_NLM_F_REQUEST_DUMP: Final = 0x1 | 0x300
_IFA_ADDRESS: Final = 1
_IFA_LOCAL: Final = 2
_SIOCGIFADDR: Final = 0x8915
_NLMSGHDR: Final = struct.Struct("=IHHII")
_IFADDRMSG: Final = struct.Struct("=BBBBI")
_RTATTR: Final = struct.Struct("=HH")
_MAX_RECV: Final = 1000  # bounds the dump loop; a host has far fewer messages


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    while start + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, start)
        if length < _RTATTR.size:
            break
        attrs[kind] = data[start + _RTATTR.size : start + length]
        start += _align(length)
    return attrs


def _address(data: bytes, start: int, end: int) -> tuple[int, str] | None:
    family, _, _, _, index = _IFADDRMSG.unpack_from(data, start)
    attrs = _attributes(data, start + _IFADDRMSG.size, end)
    # On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
    if family not in (socket.AF_INET, socket.AF_INET6) or raw is None:
        return None
    return index, socket.inet_ntop(family, raw)


def parse_addr_dump(data: bytes) -> tuple[list[tuple[int, str]], bool]:
    """Parse one netlink read of an RTM_GETADDR dump.

    Returns:
        ``(addresses, done)``: (interface index, address text) pairs, and
        whether the dump ended in this read.

    Raises:
        OSError: the kernel answered with an error.
    """
    found: list[tuple[int, str]] = []
    pos = 0
    while pos + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size:
            break
        if kind == _NLMSG_DONE:
            return found, True
        if kind == _NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, pos + _NLMSGHDR.size)
            raise OSError(-code, "netlink RTM_GETADDR failed")
        if kind == _RTM_NEWADDR:
            entry = _address(data, pos + _NLMSGHDR.size, pos + length)
            if entry is not None:
                found.append(entry)
        pos += _align(length)
    return found, False


def _netlink_addresses() -> list[tuple[int, str]]:
    request = _NLMSGHDR.pack(
        _NLMSGHDR.size + _IFADDRMSG.size, _RTM_GETADDR, _NLM_F_REQUEST_DUMP, 1, 0
    ) + _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    found: list[tuple[int, str]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(2.0)
        sock.sendto(request, (0, 0))
        for _ in range(_MAX_RECV):
            batch, done = parse_addr_dump(sock.recv(65536))
            found += batch
            if done:
                return found
    raise OSError("netlink RTM_GETADDR dump did not end")


def _ioctl_addresses() -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            with contextlib.suppress(OSError):  # no IPv4 address
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
                found.append((index, socket.inet_ntoa(reply[20:24])))
    with contextlib.suppress(OSError), open("/proc/net/if_inet6", encoding="ascii") as lines:
        for line in lines:
            fields = line.split()
            packed = bytes.fromhex(fields[0])
            found.append((int(fields[1], 16), socket.inet_ntop(socket.AF_INET6, packed)))
    return found


def host_addresses() -> list[str]:
    """Every address of the host's interfaces, loopback first (interface order).

    Within an interface IPv4 addresses come before IPv6 ones, in kernel order.
    """
    try:
        found = _netlink_addresses()
    except OSError:
        found = _ioctl_addresses()
    found.sort(key=lambda entry: (entry[0], ":" in entry[1]))
    return [address for _, address in found]


def format_peer(peer: object) -> str:
    """Format a socket peer name as ``ip:port`` (``[ip]:port`` for IPv6).

    IPv4-mapped IPv6 addresses (from a dual-stack listener) print as IPv4.
    """
    if not isinstance(peer, tuple) or len(peer) < 2:
        return str(peer)
    host, port = str(peer[0]), peer[1]
    if ":" not in host:
        return f"{host}:{port}"
    with contextlib.suppress(ValueError):
        mapped = ipaddress.IPv6Address(host.partition("%")[0]).ipv4_mapped
        if mapped is not None:
            return f"{mapped}:{port}"
    return f"[{host}]:{port}"
