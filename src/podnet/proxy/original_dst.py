"""The original destination of a connection an nft ``redirect`` sent to the sidecar.

Linux keeps it in conntrack and hands it out with ``getsockopt``:
``SO_ORIGINAL_DST`` (IPv4, level SOL_IP, a ``sockaddr_in``) and
``IP6T_SO_ORIGINAL_DST`` (IPv6, level SOL_IPV6, a ``sockaddr_in6``); both are
option 80. Without a conntrack entry (a connection that was not redirected)
the call fails and the destination is "".
"""

from __future__ import annotations

import socket
import struct
from typing import Final

__all__ = ["SO_ORIGINAL_DST", "format_destination", "original_destination"]

SO_ORIGINAL_DST: Final = 80
_SOL_IP: Final = 0
_SOL_IPV6: Final = 41


def format_destination(raw: bytes, family: int) -> str:
    """``VIP:port`` (``[v6]:port``) from a ``sockaddr_in``/``sockaddr_in6``."""
    port = struct.unpack_from("!H", raw, 2)[0]
    if family == socket.AF_INET6:
        address = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        return f"[{address}]:{port}"
    return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{port}"


def original_destination(sock: socket.socket | None) -> str:
    """The pre-redirect destination of ``sock``, or "" when it was not redirected."""
    if sock is None:
        return ""
    try:
        if sock.family == socket.AF_INET6:
            raw = sock.getsockopt(_SOL_IPV6, SO_ORIGINAL_DST, 28)
        else:
            raw = sock.getsockopt(_SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return ""
    return format_destination(raw, sock.family)
