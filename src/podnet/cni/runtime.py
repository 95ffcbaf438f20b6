"""Per-attachment data the runtime adds to the configuration.

``runtimeConfig`` carries capability arguments (spec 1.1.0 section 3, "Deriving
runtimeConfig"; their shapes are CONVENTIONS.md's "Well-known Capabilities"):
``portMappings``, ``ips``, ``mac``, ``dns``. ``args`` carries optional metadata
(CONVENTIONS.md, "args in network config"), namespaced under ``cni``: ``labels``
and ``ips``.

podnet acts on port mappings, IPs and the MAC, so malformed ones are code 7.
Labels are metadata a runtime "should not expect to receive an error" for, so
malformed label entries are skipped. Capabilities podnet does not know
(``bandwidth``, ``aliases``, ...) stay in ``raw``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.cni._fields import Fields
from podnet.model.network import IPAddress
from podnet.model.ports import PROTOCOLS, PortMapping

__all__ = [
    "ConfArgs",
    "RequestedIP",
    "RuntimeConfig",
    "RuntimeDNS",
    "parse_args",
    "parse_runtime_config",
]

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@dataclass(frozen=True, slots=True)
class RequestedIP:
    """An address asked for by the runtime: ``<ip>[/<prefix>]`` (CONVENTIONS.md,
    "ips"); ``prefixlen`` None when the request gave none."""

    address: IPAddress
    prefixlen: int | None = None

    @staticmethod
    def parse(text: str) -> RequestedIP:
        """Parse ``10.1.0.5`` or ``10.1.0.5/24``.

        Raises:
            ValueError: not an address, or a bad prefix length.
        """
        if "/" not in text:
            return RequestedIP(ipaddress.ip_address(text))
        iface = ipaddress.ip_interface(text)
        return RequestedIP(iface.ip, iface.network.prefixlen)

    def __str__(self) -> str:
        return str(self.address) if self.prefixlen is None else f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True, slots=True)
class RuntimeDNS:
    """The ``dns`` capability: ``servers``, ``searches``, ``options``."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """``runtimeConfig``, typed where podnet acts on it."""

    port_mappings: tuple[PortMapping, ...] = ()
    ips: tuple[RequestedIP, ...] = ()
    mac: str | None = None
    dns: RuntimeDNS | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConfArgs:
    """``args``: ``cni.labels`` and ``cni.ips`` typed, everything in ``raw``."""

    labels: Mapping[str, str] = field(default_factory=dict)
    ips: tuple[RequestedIP, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


def read_ips(f: Fields, key: str) -> tuple[RequestedIP, ...]:
    """A list of ``<ip>[/<prefix>]`` strings under ``key``."""
    out = []
    for i, text in enumerate(f.texts(key)):
        try:
            out.append(RequestedIP.parse(text))
        except ValueError:
            f.fail(
                f"{key}[{i}]",
                f"is {text!r}, not an IP address",
                "write e.g. 10.1.0.5 or 10.1.0.5/24",
            )
    return tuple(out)


def parse_runtime_config(f: Fields | None) -> RuntimeConfig:
    """Read ``runtimeConfig``; None (absent) gives an empty one."""
    if f is None:
        return RuntimeConfig()
    return RuntimeConfig(
        port_mappings=_port_mappings(f),
        ips=read_ips(f, "ips"),
        mac=_mac(f),
        dns=_dns(f.child("dns")),
        raw=dict(f.data),
    )


def _dns(f: Fields | None) -> RuntimeDNS | None:
    if f is None:
        return None
    return RuntimeDNS(f.texts("servers"), f.texts("searches"), f.texts("options"))


def _port_mappings(f: Fields) -> tuple[PortMapping, ...]:
    out: list[PortMapping] = []
    for entry in f.children("portMappings"):
        mapping = _port_mapping(entry)
        clash = next((m for m in out if m.clashes(mapping)), None)
        if clash is not None:
            entry.fail(
                "",
                f"publishes {mapping} but {clash} already takes that host port",
                "publish each host port (per protocol and host IP) once",
            )
        out.append(mapping)
    return tuple(out)


def _port_mapping(f: Fields) -> PortMapping:
    protocol = (f.text("protocol") or "tcp").lower()
    if protocol not in PROTOCOLS:
        f.fail("protocol", f"is {protocol!r}", "podnet publishes tcp and udp ports")
    host_ip = f.text("hostIP")
    try:
        return PortMapping(
            host_port=_port(f, "hostPort"),
            pod_port=_port(f, "containerPort"),
            protocol=protocol,
            host_ip=ipaddress.ip_address(host_ip) if host_ip else None,
        )
    except ValueError:
        f.fail(
            "hostIP",
            f"is {host_ip!r}, not an IP address",
            "leave it out to publish on every address",
        )


def _port(f: Fields, key: str) -> int:
    port = f.number(key, 1, 65535)
    if port is None:
        f.fail(key, "is missing", "give a port number 1-65535")
    return port


def _mac(f: Fields) -> str | None:
    mac = f.text("mac")
    if mac is None:
        return None
    mac = mac.lower()
    if not _MAC.fullmatch(mac):
        f.fail(
            "mac", f"is {mac!r}, not a MAC address", "write six hex bytes, e.g. c2:11:22:33:44:55"
        )
    if int(mac[:2], 16) & 1:
        f.fail("mac", f"is {mac}, a multicast address", "clear the low bit of the first byte")
    return mac


def parse_args(f: Fields | None) -> ConfArgs:
    """Read ``args``; only its ``cni`` namespace has a meaning to podnet."""
    if f is None:
        return ConfArgs()
    cni = f.child("cni")
    if cni is None:
        return ConfArgs(raw=dict(f.data))
    return ConfArgs(labels=_labels(cni), ips=read_ips(cni, "ips"), raw=dict(f.data))


def _labels(f: Fields) -> dict[str, str]:
    labels = f.data.get("labels")
    if not isinstance(labels, list):
        return {}
    out: dict[str, str] = {}
    for item in labels:
        if isinstance(item, dict):
            key, value = item.get("key"), item.get("value")
            if isinstance(key, str) and isinstance(value, str):
                out[key] = value
    return out
