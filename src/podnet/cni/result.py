"""The ADD result, in every result format podnet speaks.

One :class:`Result` value; :meth:`Result.to_json` writes it in the format of a
requested version and :meth:`Result.from_json` reads any of them. The formats,
from the spec's history (the SPEC.md of each ``spec-vX.Y.Z`` tag):

=============  ================================================================
0.3.0 - 0.4.0  every ``ips`` entry carries ``"version": "4"|"6"``. (0.3.0's text
               says ``ip``: a typo, which 0.3.1 fixed and nothing else; libcni
               writes ``ips`` for 0.3.0 too, so podnet does.)
1.0.0          ``version`` is gone from ``ips`` ("removed version field").
1.1.0          adds interface ``mtu``, ``socketPath``, ``pciID`` and route
               ``mtu``, ``advmss``, ``priority``, ``table``, ``scope``.
=============  ================================================================

Writing an older version drops the fields it does not define (libcni drops the
1.1.0 interface fields going to 0.4.0 the same way); :meth:`Result.for_version`
shows what survives. Reading is lenient: every field is read whatever the
declared version, so nothing a newer peer sent is lost. An IPAM plugin's
abbreviated result (no ``interfaces``, no ``interface`` index) reads fine.

Malformed results are code 6 (failed to decode content).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from podnet.cni._fields import Fields
from podnet.cni.errors import ErrorCode
from podnet.cni.version import check_version, version_at_least
from podnet.model.network import IPAddress, IPNetwork

__all__ = ["DNS", "IPConfig", "IPInterface", "Interface", "Result", "Route"]

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _result_fields(data: Mapping[str, Any], where: str) -> Fields:
    return Fields(data, where, ErrorCode.DECODING_FAILURE, "cannot decode result")


def _drop_none(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if v is not None}


def read_address(f: Fields, key: str) -> IPAddress | None:
    """An optional IP address under ``key``."""
    text = f.text(key)
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        f.fail(key, f"is {text!r}, not an IP address", "write e.g. 10.1.0.1 or fd00::1")


def read_cidr(f: Fields, key: str) -> IPInterface:
    """A required address with prefix length ("10.1.0.5/16") under ``key``."""
    text = f.required_text(key)
    try:
        if "/" in text:
            return ipaddress.ip_interface(text)
    except ValueError:
        pass
    f.fail(key, f"is {text!r}, not an address in CIDR form", "write e.g. 10.1.0.5/16")


def _same_family(f: Fields, key: str, addr: IPAddress | None, version: int) -> None:
    if addr is not None and addr.version != version:
        f.fail(key, f"is IPv{addr.version} but the entry is IPv{version}")


@dataclass(frozen=True, slots=True)
class Interface:
    """An interface the attachment created; ``sandbox`` None means on the host."""

    name: str
    mac: str | None = None
    mtu: int | None = None
    sandbox: str | None = None
    socket_path: str | None = None
    pci_id: str | None = None

    def to_json(self, rich: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "mac": self.mac, "sandbox": self.sandbox}
        if rich:
            out |= {"mtu": self.mtu, "socketPath": self.socket_path, "pciID": self.pci_id}
        return _drop_none(out)

    @staticmethod
    def from_fields(f: Fields) -> Interface:
        return Interface(
            name=f.required_text("name"),
            mac=f.text("mac"),
            mtu=f.number("mtu"),
            sandbox=f.text("sandbox"),
            socket_path=f.text("socketPath"),
            pci_id=f.text("pciID"),
        )


@dataclass(frozen=True, slots=True)
class IPConfig:
    """An address; ``interface`` indexes ``Result.interfaces`` (absent from IPAM)."""

    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None

    def to_json(self, with_version: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"version": str(self.address.version)} if with_version else {}
        out["address"] = str(self.address)
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        if self.interface is not None:
            out["interface"] = self.interface
        return out

    @staticmethod
    def from_fields(f: Fields, interface_count: int) -> IPConfig:
        address = read_cidr(f, "address")
        gateway = read_address(f, "gateway")
        _same_family(f, "gateway", gateway, address.version)
        declared = f.text("version")
        if declared is not None and declared != str(address.version):
            f.fail("version", f"is {declared!r} but address {address} is IPv{address.version}")
        index = f.number("interface")
        if index is not None and index >= interface_count:
            f.fail("interface", f"is {index} but the result lists {interface_count} interfaces")
        return IPConfig(address, gateway, index)


@dataclass(frozen=True, slots=True)
class Route:
    """A route; without ``gw`` the consumer may use a gateway from ``ips``."""

    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None

    def to_json(self, rich: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        if rich:
            out |= _drop_none(
                {
                    "mtu": self.mtu,
                    "advmss": self.advmss,
                    "priority": self.priority,
                    "table": self.table,
                    "scope": self.scope,
                }
            )
        return out

    @staticmethod
    def from_fields(f: Fields) -> Route:
        """Read one route. A ``dst`` with host bits set is masked, as the
        kernel needs it and libcni's ``ParseCIDR`` tolerates it."""
        dst = read_cidr(f, "dst").network
        gw = read_address(f, "gw")
        _same_family(f, "gw", gw, dst.version)
        return Route(
            dst=dst,
            gw=gw,
            mtu=f.number("mtu"),
            advmss=f.number("advmss"),
            priority=f.number("priority"),
            table=f.number("table"),
            scope=f.number("scope", high=255),
        )


@dataclass(frozen=True, slots=True)
class DNS:
    """Resolver settings, as the ``dns`` of a result or a network configuration."""

    nameservers: tuple[str, ...] = ()
    domain: str | None = None
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return self == DNS()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "nameservers": list(self.nameservers),
            "domain": self.domain,
            "search": list(self.search),
            "options": list(self.options),
        }
        return {k: v for k, v in out.items() if v}

    @staticmethod
    def from_fields(f: Fields | None) -> DNS:
        if f is None:
            return DNS()
        return DNS(f.texts("nameservers"), f.text("domain"), f.texts("search"), f.texts("options"))


@dataclass(frozen=True, slots=True)
class Result:
    """The result of ADD (section 5, "ADD Success"), independent of version."""

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = DNS()

    def to_json(self, version: str) -> dict[str, Any]:
        """The result in the format of ``version``.

        All four keys are written, empty or not: section 5 lists them without
        marking any optional ("Fields ... are required unless specifically
        marked optional", spec 0.4.0, "General considerations").

        Raises:
            CniError: code 1 when podnet does not speak ``version``.
        """
        rich = version_at_least(version, "1.1.0")
        legacy = not version_at_least(version, "1.0.0")
        return {
            "cniVersion": version,
            "interfaces": [i.to_json(rich) for i in self.interfaces],
            "ips": [ip.to_json(legacy) for ip in self.ips],
            "routes": [r.to_json(rich) for r in self.routes],
            "dns": self.dns.to_json(),
        }

    def for_version(self, version: str) -> Result:
        """This result without the fields ``version`` cannot carry: exactly what
        ``from_json(to_json(version))`` gives back."""
        if version_at_least(version, "1.1.0"):
            return self
        return replace(
            self,
            interfaces=tuple(
                replace(i, mtu=None, socket_path=None, pci_id=None) for i in self.interfaces
            ),
            routes=tuple(Route(r.dst, r.gw) for r in self.routes),
        )

    @staticmethod
    def from_json(
        data: Mapping[str, Any], default_version: str | None = None, where: str = ""
    ) -> Result:
        """Read a result of any supported version.

        Args:
            data: the decoded JSON object.
            default_version: the version to assume when ``data`` has no
                ``cniVersion`` (a ``prevResult`` takes its configuration's, as
                libcni's ``ParsePrevResult`` does).
            where: the key path of ``data``, for messages (e.g. "prevResult").

        Raises:
            CniError: code 1 for a version podnet does not speak, code 6 for
                anything malformed; the message names the key.
        """
        f = _result_fields(data, where)
        version = data.get("cniVersion") or default_version
        check_version(version, f.path("cniVersion"))
        interfaces = tuple(Interface.from_fields(c) for c in f.children("interfaces"))
        return Result(
            interfaces=interfaces,
            ips=tuple(IPConfig.from_fields(c, len(interfaces)) for c in f.children("ips")),
            routes=tuple(Route.from_fields(c) for c in f.children("routes")),
            dns=DNS.from_fields(f.child("dns")),
        )
