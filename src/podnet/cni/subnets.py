"""Subnets and gateways of an inline podnet bridge, from wherever they are written.

Four places may give the subnets, and exactly one must (two would be two
sources of truth):

* ``subnet`` -- one CIDR; ``subnets`` -- a list; both with an optional
  ``gateway`` (one address, or a list with one per subnet);
* ``ipam.subnet`` (+ ``ipam.gateway``) -- host-local's older shape;
* ``ipam.ranges`` -- host-local's shape, a list of range sets. podnet
  allocates each address from one whole subnet, so every range set holds
  exactly one range, and ``rangeStart``/``rangeEnd`` are code 2.

podnet networks have at most one subnet per IP version; a subnet without a
gateway gets its first host address, as :meth:`podnet.model.Network.build` does.
"""

from __future__ import annotations

import ipaddress
import json
from typing import NamedTuple

from podnet.cni._fields import Fields
from podnet.cni.errors import CniError, ErrorCode
from podnet.errors import InvalidInput
from podnet.model.network import IPAddress, IPNetwork, parse_subnet

__all__ = ["resolve_subnets"]

_RANGE_LIMIT_KEYS = ("rangeStart", "rangeEnd")


class _Written(NamedTuple):
    """One subnet as written: its key path and text, and its gateway's."""

    where: str
    text: str
    gateway_where: str = "gateway"
    gateway: str | None = None


def resolve_subnets(
    f: Fields, ipam: Fields | None
) -> tuple[tuple[IPNetwork, ...], tuple[IPAddress, ...]]:
    """The subnets and their gateways (aligned), for podnet's own IPAM.

    Args:
        f: podnet's plugin keys.
        ipam: the ``ipam`` section, when there is one.

    Raises:
        CniError: code 2 for ``rangeStart``/``rangeEnd``, code 7 for anything
            else, naming the key path.
    """
    key, written = _the_one_source(f, ipam)
    if f.has("gateway") and key.startswith("ipam"):
        f.fail("gateway", f"cannot be set when subnets come from {key}", f"set it in {key}")
    subnets = _subnets(f, key, written)
    given = [(w.gateway_where, w.gateway) for w in written if w.gateway is not None]
    given += [("gateway", text) for text in _plugin_gateways(f)]
    return subnets, _gateways(f, subnets, given)


def _the_one_source(f: Fields, ipam: Fields | None) -> tuple[str, list[_Written]]:
    sources = _sources(f, ipam)
    if not sources:
        f.fail(
            "subnet",
            "is missing: the configuration names no podnet network and no subnet",
            "set 'network' to a podnet network, "
            "or give 'subnet' (or ipam.ranges) for an inline bridge",
        )
    if len(sources) > 1:
        first, second = sorted(sources)[:2]
        f.fail(second, f"and {first!r} both give subnets", f"keep one of {first!r} and {second!r}")
    return next(iter(sources.items()))


def _sources(f: Fields, ipam: Fields | None) -> dict[str, list[_Written]]:
    sources: dict[str, list[_Written]] = {}
    if f.has("subnet"):
        sources["subnet"] = [_Written("subnet", f.required_text("subnet"))]
    if f.has("subnets"):
        texts = f.texts("subnets")
        sources["subnets"] = [_Written(f"subnets[{i}]", t) for i, t in enumerate(texts)]
    if ipam is not None and ipam.has("subnet"):
        _reject_range_limits(ipam)
        subnet, gateway = ipam.required_text("subnet"), ipam.text("gateway")
        sources["ipam.subnet"] = [_Written("ipam.subnet", subnet, "ipam.gateway", gateway)]
    if ipam is not None and ipam.has("ranges"):
        sources["ipam.ranges"] = _ranges(ipam)
    return sources


def _reject_range_limits(f: Fields) -> None:
    for key in _RANGE_LIMIT_KEYS:
        if f.has(key):
            raise CniError(
                ErrorCode.UNSUPPORTED_FIELD,
                f"unsupported field: {f.path(key)}={json.dumps(f.data[key])}",
                "podnet allocates from a whole subnet; remove rangeStart/rangeEnd, "
                "or use ipam.type host-local",
            )


def _ranges(ipam: Fields) -> list[_Written]:
    written: list[_Written] = []
    for i, range_set in enumerate(ipam.items("ranges")):
        one_range = isinstance(range_set, list) and len(range_set) == 1
        if not (one_range and isinstance(range_set[0], dict)):
            ipam.fail(
                f"ranges[{i}]",
                "must be a list of one range object",
                "podnet allocates each address from one subnet: write [[{...}], [{...}]]",
            )
        r = Fields(range_set[0], ipam.path(f"ranges[{i}][0]"))
        _reject_range_limits(r)
        subnet, gateway = r.required_text("subnet"), r.text("gateway")
        written.append(_Written(r.path("subnet"), subnet, r.path("gateway"), gateway))
    return written


def _subnets(f: Fields, key: str, written: list[_Written]) -> tuple[IPNetwork, ...]:
    subnets: list[IPNetwork] = []
    for w in written:
        subnet = _subnet(f, w.where, w.text)
        if any(s.version == subnet.version for s in subnets):
            f.fail(
                w.where,
                f"is a second IPv{subnet.version} subnet",
                "give at most one IPv4 and one IPv6 subnet",
            )
        subnets.append(subnet)
    if not subnets:
        f.fail(key, "is empty", "list at least one subnet, e.g. 10.88.0.0/16")
    return tuple(subnets)


def _subnet(f: Fields, where: str, text: str) -> IPNetwork:
    try:
        return parse_subnet(text)
    except InvalidInput as exc:
        f.fail(where, f"is invalid: {exc.message}", exc.hint or "")


def _plugin_gateways(f: Fields) -> tuple[str, ...]:
    if isinstance(f.data.get("gateway"), list):
        return f.texts("gateway")
    text = f.text("gateway")
    return () if text is None else (text,)


def _gateways(
    f: Fields, subnets: tuple[IPNetwork, ...], given: list[tuple[str, str]]
) -> tuple[IPAddress, ...]:
    chosen: dict[IPNetwork, IPAddress] = {}
    for where, text in given:
        gateway = _address(f, where, text)
        subnet = next((s for s in subnets if _is_host_of(gateway, s)), None)
        if subnet is None:
            f.fail(
                where,
                f"is {gateway}, not a host address of {', '.join(map(str, subnets))}",
                "pick a gateway inside its subnet, or leave it out to use the first address",
            )
        if subnet in chosen:
            f.fail(where, f"is a second gateway for {subnet}", "give one gateway per subnet")
        chosen[subnet] = gateway
    return tuple(chosen.get(s, s.network_address + 1) for s in subnets)


def _address(f: Fields, where: str, text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        f.fail(where, f"is {text!r}, not an IP address", "write e.g. 10.88.0.1")


def _is_host_of(address: IPAddress, subnet: IPNetwork) -> bool:
    """Inside ``subnet`` and neither its network nor (IPv4) broadcast address."""
    if address not in subnet or address == subnet.network_address:
        return False
    return subnet.version == 6 or address != subnet.broadcast_address
