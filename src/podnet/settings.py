"""Settings: every one is a command-line flag and a PODNET_* environment variable.

Several agents ("nodes") can share one machine when each has its own state
directory, run directory, netns prefix and nft table — that is how multi-host
set-ups are tested on one machine.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from podnet.errors import InvalidInput

__all__ = ["ENV_PREFIX", "Settings", "parse_upstreams"]

ENV_PREFIX = "PODNET_"
_NFT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


@dataclass(frozen=True, slots=True)
class Settings:
    """Where podnet keeps its state and how it names the kernel objects it owns."""

    state_dir: Path = Path("/var/lib/podnet")
    run_dir: Path = Path("/run/podnet")
    netns_prefix: str = "podnet-"
    nft_table: str = "podnet"
    store: str = ""
    subnet_pool: str = "10.89.0.0/16"
    subnet_size: int = 24
    ipv6_pool: str = "fd00:89::/48"
    service_pool: str = "10.96.0.0/16"
    service_pool6: str = "fd00:96::/112"
    reconcile_interval: float = 10.0
    # DNS (podnet.agent.runtime): upstreams "host[:port],...", the zone, pods' /etc/netns
    dns_upstreams: str = ""
    dns_domain: str = "podnet."
    netns_etc: Path = Path("/etc/netns")

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "agent.sock"

    @property
    def store_url(self) -> str:
        return self.store or str(self.state_dir / "state.db")

    @property
    def upstreams(self) -> tuple[tuple[str, int], ...]:
        """``dns_upstreams`` as ``(address, port)`` pairs (port 53 unless given).

        Raises:
            InvalidInput: an entry is not an IP address with an optional port.
        """
        return parse_upstreams(self.dns_upstreams)

    @property
    def pool4(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet_pool)

    @property
    def pool6(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(self.ipv6_pool)

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then PODNET_* variables, then explicit overrides (flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(Settings):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, raw)
        values.update(
            {
                k: _convert(k, v) if isinstance(v, str) else v
                for k, v in overrides.items()
                if v is not None
            }
        )
        return replace(Settings(), **values).validate()

    def to_env(self) -> dict[str, str]:
        """The PODNET_* variables that reproduce these settings in a child."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    def validate(self) -> Settings:
        if not _NFT_NAME.fullmatch(self.nft_table):
            raise InvalidInput(
                f"nft table name {self.nft_table!r} is not valid",
                hint="PODNET_NFT_TABLE takes a letter then up to 63 letters, digits, '_' or '-'",
            )
        if not (math.isfinite(self.reconcile_interval) and self.reconcile_interval > 0):
            raise InvalidInput(
                f"reconcile interval {self.reconcile_interval} is not valid",
                hint="PODNET_RECONCILE_INTERVAL takes a number of seconds above 0, e.g. 10",
            )
        if "/" in self.netns_prefix or not self.netns_prefix:
            raise InvalidInput(
                f"netns prefix {self.netns_prefix!r} is not valid",
                hint="use a short word without '/', e.g. podnet-",
            )
        try:
            pool4 = self.pool4
        except ValueError as exc:
            raise InvalidInput(
                f"PODNET_SUBNET_POOL {self.subnet_pool!r} is not valid: {exc}",
                hint="give an IPv4 CIDR such as 10.89.0.0/16",
            ) from None
        try:
            pool6 = self.pool6
        except ValueError as exc:
            raise InvalidInput(
                f"PODNET_IPV6_POOL {self.ipv6_pool!r} is not valid: {exc}",
                hint="give an IPv6 CIDR such as fd00:89::/48",
            ) from None
        if not pool4.prefixlen <= self.subnet_size <= 30:
            raise InvalidInput(
                f"subnet size /{self.subnet_size} does not fit pool {pool4}",
                hint="PODNET_SUBNET_SIZE must be between the pool's prefix and 30",
            )
        if pool6.prefixlen > 64:
            raise InvalidInput(f"IPv6 pool {pool6} is smaller than a /64", hint="use a /48 or /56")
        parse_upstreams(self.dns_upstreams)
        if not _DOMAIN.fullmatch(self.dns_domain) or len(self.dns_domain) > 120:
            raise InvalidInput(
                f"DNS domain {self.dns_domain!r} is not valid",
                hint="PODNET_DNS_DOMAIN takes dot-separated labels, e.g. podnet. or cluster.local.",
            )
        return self


def parse_upstreams(text: str) -> tuple[tuple[str, int], ...]:
    """Comma-separated ``IP[:PORT]`` entries as ``(address, port)`` pairs (port 53 unless given).

    Raises:
        InvalidInput: an entry is not an IP address with an optional port.
    """
    return tuple(_upstream(part) for part in text.split(",") if part.strip())


def _upstream(text: str) -> tuple[str, int]:
    """``10.0.0.2``, ``10.0.0.2:5353``, ``2001:db8::53`` or ``[2001:db8::53]:5353``."""
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = ""
        port = rest[1:] if rest else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address, number = ipaddress.ip_address(host), int(port)
    except ValueError:
        address, number = None, 0
    if address is None or not 1 <= number <= 65535:
        raise InvalidInput(
            f"DNS upstream {text!r} is not valid",
            hint="PODNET_DNS_UPSTREAMS takes IP[:PORT] entries separated by commas, "
            "e.g. 10.0.0.2,[2001:db8::53]:5353",
        )
    return str(address), number


def _convert(name: str, raw: str) -> Any:
    field_type = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if field_type in ("Path", Path):
            return Path(raw)
        if field_type in ("int", int):
            return int(raw)
        if field_type in ("float", float):
            return float(raw)
    except ValueError:
        raise InvalidInput(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not valid", hint=f"expected a {field_type}"
        ) from None
    return raw
