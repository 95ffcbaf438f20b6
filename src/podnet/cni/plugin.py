"""podnet's own keys in a CNI configuration (``"type": "podnet"``).

Two shapes, exactly one of which a configuration uses:

* ``{"network": "web"}`` -- attach to a network podnet already manages; its
  bridge, subnets, gateway, MTU and NAT come from podnet, so the inline keys
  below are refused next to it.
* an inline bridge, in the reference ``bridge`` plugin's words: ``bridge``,
  ``subnet`` or ``subnets``, ``gateway``, ``ipMasq``, ``isGateway``,
  ``isDefaultGateway``, ``hairpinMode``, ``mtu``. Subnets may instead come
  from a host-local shaped ``ipam`` (``subnet``/``gateway`` or ``ranges``)
  when ``ipam.type`` is absent or ``podnet``. Any other ``ipam.type`` names a
  delegated IPAM plugin (section 4), which then owns addresses and gateways.
  :mod:`podnet.cni.subnets` resolves subnets and gateways.

Defaults follow the reference bridge plugin, so a configuration moved from
``bridge`` to ``podnet`` means the same: ``ipMasq``, ``isGateway``,
``hairpinMode`` false; ``isDefaultGateway`` implies ``isGateway``.

Reference-bridge keys podnet does not implement (``vlan``, ``promiscMode``, ...)
are code 2 ("unsupported field", message carries key and value) when set to
anything but their default; every other problem is code 7 naming the key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from podnet.cni._fields import Fields
from podnet.cni.config import NetConf
from podnet.cni.errors import CniError, ErrorCode
from podnet.cni.result import Route
from podnet.cni.subnets import resolve_subnets
from podnet.errors import InvalidInput
from podnet.model.names import check_ifname, check_name
from podnet.model.network import IPAddress, IPNetwork

__all__ = ["PodnetPluginConf", "parse_plugin_conf"]

T = TypeVar("T")
_OWN_IPAM = frozenset({"", "podnet"})
_INLINE_KEYS = (
    "bridge",
    "subnet",
    "subnets",
    "gateway",
    "ipMasq",
    "isGateway",
    "isDefaultGateway",
    "mtu",
)
# Reference bridge keys podnet does not implement, with the value that means "off".
_UNSUPPORTED: dict[str, Any] = {
    "promiscMode": False,
    "vlan": 0,
    "vlanTrunk": [],
    "preserveDefaultVlan": True,
    "macspoofchk": False,
    "forceAddress": False,
    "disableContainerInterface": False,
    "portIsolation": False,
}
_MTU_MIN, _MTU_MIN_V6, _MTU_MAX = 576, 1280, 65535


@dataclass(frozen=True, slots=True)
class PodnetPluginConf:
    """podnet's keys, validated.

    ``network`` set: attach to that podnet network (inline fields are unset).
    Otherwise an inline bridge: ``bridge`` None means "derive a name";
    ``gateways[i]`` is the gateway of ``subnets[i]`` (given, or the first host);
    ``ipam_plugin`` names a delegated IPAM plugin, in which case ``subnets``
    is empty; ``routes`` are ``ipam.routes`` for podnet's own IPAM.
    """

    network: str | None = None
    bridge: str | None = None
    subnets: tuple[IPNetwork, ...] = ()
    gateways: tuple[IPAddress, ...] = ()
    ip_masq: bool = False
    is_gateway: bool = False
    is_default_gateway: bool = False
    hairpin_mode: bool = False
    mtu: int | None = None
    ipam_plugin: str | None = None
    routes: tuple[Route, ...] = ()

    @property
    def inline(self) -> bool:
        return self.network is None


def parse_plugin_conf(conf: NetConf) -> PodnetPluginConf:
    """Validate podnet's keys of a parsed configuration.

    Raises:
        CniError: code 2 for a reference-bridge feature podnet lacks, code 7
            for anything else, naming the key and saying how to fix it.
    """
    f = Fields(conf.plugin)
    _reject_unsupported(f.data)
    ipam = None if conf.ipam is None else Fields(conf.ipam.raw, "ipam")
    network = f.text("network")
    if network is not None:
        return _network_mode(f, network, ipam)
    return _inline_mode(f, ipam)


def _reject_unsupported(data: Mapping[str, Any]) -> None:
    for key, off in _UNSUPPORTED.items():
        value = data.get(key)
        if value is not None and value != off:
            raise CniError(
                ErrorCode.UNSUPPORTED_FIELD,
                f"unsupported field: {key}={json.dumps(value)}",
                f"podnet does not implement {key!r}; remove it, "
                "or use the reference bridge plugin for this network",
            )


def _model(f: Fields, key: str, call: Callable[[], T]) -> T:
    """Run a podnet model check, reporting its InvalidInput as code 7 on ``key``."""
    try:
        return call()
    except InvalidInput as exc:
        f.fail(key, f"is invalid: {exc.message}", exc.hint or "")


def _ipam_type(ipam: Fields | None) -> str:
    return "" if ipam is None else (ipam.text("type") or "")


def _network_mode(f: Fields, network: str, ipam: Fields | None) -> PodnetPluginConf:
    _model(f, "network", lambda: check_name("network", network))
    for key in _INLINE_KEYS:
        if f.has(key):
            f.fail(
                key,
                f"cannot be set together with 'network' ({network!r})",
                f"podnet network {network!r} brings its own {key}; remove {key!r}, "
                "or remove 'network' to describe a bridge inline",
            )
    if ipam is not None and (
        _ipam_type(ipam) not in _OWN_IPAM or ipam.has("subnet") or ipam.has("ranges")
    ):
        f.fail(
            "ipam",
            f"cannot allocate for podnet network {network!r}",
            f"podnet allocates addresses in network {network!r}; remove 'ipam'",
        )
    return PodnetPluginConf(network=network, hairpin_mode=f.flag("hairpinMode"))


def _inline_mode(f: Fields, ipam: Fields | None) -> PodnetPluginConf:
    ipam_type = _ipam_type(ipam)
    if ipam_type in _OWN_IPAM:
        subnets, gateways = resolve_subnets(f, ipam)
        routes = (
            () if ipam is None else tuple(Route.from_fields(r) for r in ipam.children("routes"))
        )
    else:
        _refuse_with_delegate(f, ipam_type)
        subnets, gateways, routes = (), (), ()
    default_gw = f.flag("isDefaultGateway")
    return PodnetPluginConf(
        bridge=_bridge(f),
        subnets=subnets,
        gateways=gateways,
        ip_masq=f.flag("ipMasq"),
        is_gateway=f.flag("isGateway") or default_gw,
        is_default_gateway=default_gw,
        hairpin_mode=f.flag("hairpinMode"),
        mtu=_mtu(f, subnets),
        ipam_plugin=None if ipam_type in _OWN_IPAM else ipam_type,
        routes=routes,
    )


def _refuse_with_delegate(f: Fields, ipam_type: str) -> None:
    for key in ("subnet", "subnets", "gateway"):
        if f.has(key):
            f.fail(
                key,
                f"cannot be set when ipam.type is {ipam_type!r}",
                f"{ipam_type!r} allocates addresses and gateways; remove {key!r}, "
                "or remove ipam.type (or set it to 'podnet') to let podnet allocate",
            )


def _bridge(f: Fields) -> str | None:
    name = f.text("bridge")
    if name is None:
        return None
    return _model(f, "bridge", lambda: check_ifname(name, what="bridge name"))


def _mtu(f: Fields, subnets: tuple[IPNetwork, ...]) -> int | None:
    mtu = f.number("mtu", _MTU_MIN, _MTU_MAX)
    if mtu is not None and mtu < _MTU_MIN_V6 and any(s.version == 6 for s in subnets):
        f.fail("mtu", f"is {mtu}, below IPv6's minimum", f"use {_MTU_MIN_V6} or more")
    return mtu
