"""Published ports: ``[HOST_IP:]HOST_PORT:POD_PORT[/tcp|/udp]``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podnet.errors import InvalidInput
from podnet.model.network import IPAddress

__all__ = ["PROTOCOLS", "PortMapping"]

PROTOCOLS = ("tcp", "udp")
_SPEC = re.compile(
    r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(?P<host>\d+):(?P<pod>\d+)(?:/(?P<proto>[a-z]+))?$"
)
_HINT = "write [HOST_IP:]HOST_PORT:POD_PORT[/tcp|/udp], e.g. 8080:80 or 127.0.0.1:8080:80/tcp"


def _port(text: str, spec: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise InvalidInput(f"port {value} in {spec!r} is out of range 1-65535", hint=_HINT)
    return value


@dataclass(frozen=True, slots=True)
class PortMapping:
    """One published port. ``host_ip`` None means every host address."""

    host_port: int
    pod_port: int
    protocol: str = "tcp"
    host_ip: IPAddress | None = None

    @staticmethod
    def parse(spec: str) -> PortMapping:
        """Parse the docker/podman ``-p`` syntax.

        Raises:
            InvalidInput: the text names what is wrong and shows the syntax.
        """
        match = _SPEC.match(spec.strip())
        if not match:
            raise InvalidInput(f"published port {spec!r} is not valid", hint=_HINT)
        proto = match["proto"] or "tcp"
        if proto not in PROTOCOLS:
            raise InvalidInput(f"protocol {proto!r} in {spec!r} is not tcp or udp", hint=_HINT)
        host_ip: IPAddress | None = None
        if match["ip"]:
            try:
                host_ip = ipaddress.ip_address(match["ip"].strip("[]"))
            except ValueError:
                raise InvalidInput(f"host IP in {spec!r} is not valid", hint=_HINT) from None
        return PortMapping(_port(match["host"], spec), _port(match["pod"], spec), proto, host_ip)

    def key(self) -> tuple[str, int]:
        """What two mappings must not share: (protocol, host port)."""
        return (self.protocol, self.host_port)

    def clashes(self, other: PortMapping) -> bool:
        """True when both would take the same host port on some address.

        No host IP means every address; 0.0.0.0 (or ::) every address of
        that IP version, as docker reads it.
        """
        if self.key() != other.key():
            return False
        mine, theirs = self.host_ip, other.host_ip
        if mine is None or theirs is None:
            return True
        if mine.version != theirs.version:
            return False
        return mine.is_unspecified or theirs.is_unspecified or mine == theirs

    def __str__(self) -> str:
        ip = ""
        if self.host_ip is not None:
            ip = f"[{self.host_ip}]:" if self.host_ip.version == 6 else f"{self.host_ip}:"
        return f"{ip}{self.host_port}:{self.pod_port}/{self.protocol}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "host_ip": str(self.host_ip) if self.host_ip else None,
            "host_port": self.host_port,
            "pod_port": self.pod_port,
            "protocol": self.protocol,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PortMapping:
        ip = data.get("host_ip")
        return PortMapping(
            host_port=int(data["host_port"]),
            pod_port=int(data["pod_port"]),
            protocol=str(data.get("protocol", "tcp")),
            host_ip=ipaddress.ip_address(ip) if ip else None,
        )
