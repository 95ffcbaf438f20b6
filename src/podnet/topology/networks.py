"""The ``networks:`` section -> NetworkRequests, with subnet and bridge checks.

Checked here, before anything exists: subnets parse (CIDR, host bits zero), at
most one per IP version, the ``ipv4``/``ipv6`` switches agree with them,
explicit subnets of different networks do not overlap, bridge names fit in 15
bytes and no two networks would share a bridge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from podnet.errors import InvalidInput
from podnet.model import IPNetwork, NetworkRequest, bridge_name, check_ifname, parse_subnet
from podnet.model.names import IFNAMSIZ
from podnet.topology.fields import flag, integer, mapping, name_ok, string_map, text
from podnet.topology.problems import Path, Problems

__all__ = ["NetworkDraft", "build_networks"]


@dataclass
class NetworkDraft:
    """A network request plus where its parts were written, for later checks."""

    request: NetworkRequest
    path: Path
    subnet_paths: dict[IPNetwork, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.request.name

    def subnet(self, version: int) -> IPNetwork | None:
        """The explicit subnet of ``version``, if the file gives one."""
        return next((s for s in self.request.subnets if s.version == version), None)


def build_networks(section: object, owner: str, problems: Problems) -> dict[str, NetworkDraft]:
    """Build every network of the ``networks:`` section and cross-check them."""
    drafts: dict[str, NetworkDraft] = {}
    for name, spec in mapping(section).items():
        path: Path = ("networks", name)
        name_ok("network", name, path, problems)
        drafts[name] = _build(name, mapping(spec), path, owner, problems)
    _check_overlaps(list(drafts.values()), problems)
    _check_bridges(list(drafts.values()), problems)
    return drafts


def _build(
    name: str, spec: dict[str, Any], path: Path, owner: str, problems: Problems
) -> NetworkDraft:
    subnets = _subnets(name, spec, path, problems)
    ipv4, ipv6 = _families(name, spec, list(subnets), path, problems)
    mtu = integer(spec.get("mtu"))
    if spec.get("internal") is True and spec.get("masquerade") is True:
        problems.add(
            (*path, "masquerade"),
            f"network {name!r} is internal, so masquerade: true has no effect",
            "remove masquerade, or internal: true if traffic should leave the subnet",
        )
    request = NetworkRequest(
        name=name,
        subnets=tuple(subnets),
        ipv4=ipv4,
        ipv6=ipv6,
        internal=flag(spec.get("internal"), False),
        masquerade=flag(spec.get("masquerade"), True),
        mtu=mtu if mtu is not None and 576 <= mtu <= 65535 else 1500,
        bridge=_bridge(spec, path, problems),
        labels=string_map(spec.get("labels")),
        owner=owner,
    )
    return NetworkDraft(request, path, subnets)


def _written_subnets(
    spec: dict[str, Any], path: Path, problems: Problems
) -> list[tuple[str, Path]]:
    written: list[tuple[str, Path]] = []
    if "subnet" in spec and "subnets" in spec:
        problems.add(
            (*path, "subnets"), "both subnet and subnets are given", "keep one of them", key=True
        )
    if (one := text(spec.get("subnet"))) is not None:
        written.append((one, (*path, "subnet")))
    many = spec.get("subnets")
    for i, item in enumerate(many if isinstance(many, list) else []):
        if isinstance(item, str):
            written.append((item, (*path, "subnets", i)))
    if (v6 := text(spec.get("ipv6"))) is not None:
        written.append((v6, (*path, "ipv6")))
    return written


def _subnets(
    name: str, spec: dict[str, Any], path: Path, problems: Problems
) -> dict[IPNetwork, Path]:
    parsed: dict[IPNetwork, Path] = {}
    for written, where in _written_subnets(spec, path, problems):
        try:
            subnet = parse_subnet(written)
        except InvalidInput as exc:
            problems.add(where, exc.message, exc.hint)
            continue
        if where[-1] == "ipv6" and subnet.version != 6:
            problems.add(
                where,
                f"ipv6 of network {name!r} is the IPv4 subnet {subnet}",
                "give an IPv6 subnet such as fd00:89::/64, or move this one to subnet:",
            )
            continue
        same = [s for s in parsed if s.version == subnet.version]
        if same:
            problems.add(
                where,
                f"network {name!r} has two IPv{subnet.version} subnets: {same[0]} and {subnet}",
                "give at most one IPv4 and one IPv6 subnet",
            )
            continue
        parsed[subnet] = where
    return parsed


def _families(
    name: str, spec: dict[str, Any], subnets: list[IPNetwork], path: Path, problems: Problems
) -> tuple[bool, bool]:
    """The request's ``ipv4``/``ipv6`` switches, checked against explicit subnets."""
    ipv4 = flag(spec.get("ipv4"), True)
    has4 = any(s.version == 4 for s in subnets)
    has6 = any(s.version == 6 for s in subnets)
    if not ipv4 and has4:
        problems.add(
            (*path, "ipv4"),
            f"network {name!r} has ipv4: false but an IPv4 subnet",
            "remove ipv4: false or the IPv4 subnet",
        )
    if spec.get("ipv6") is False and has6:
        problems.add(
            (*path, "ipv6"),
            f"network {name!r} has ipv6: false but an IPv6 subnet",
            "remove ipv6: false or the IPv6 subnet",
        )
    ipv6 = spec.get("ipv6") is True or has6
    if not (ipv4 or has4 or ipv6):
        problems.add(
            (*path, "ipv4"),
            f"network {name!r} has no addresses: ipv4 is false and no IPv6 is asked for",
            "add ipv6: true or an IPv6 subnet",
        )
    return ipv4 or has4, ipv6


def _bridge(spec: dict[str, Any], path: Path, problems: Problems) -> str | None:
    bridge = text(spec.get("bridge"))
    if bridge is None:
        return None
    size = len(bridge.encode())
    if size > IFNAMSIZ:
        problems.add(
            (*path, "bridge"),
            f"bridge name {bridge!r} is {size} characters; Linux allows {IFNAMSIZ}",
            "shorten it, or leave bridge out to get pn-<network>",
        )
        return None
    try:
        return check_ifname(bridge, what="bridge name")
    except InvalidInput as exc:
        problems.add((*path, "bridge"), exc.message, exc.hint)
        return None


def _check_overlaps(drafts: list[NetworkDraft], problems: Problems) -> None:
    seen: list[tuple[IPNetwork, str]] = []
    for draft in drafts:
        for subnet, where in draft.subnet_paths.items():
            for other, owner in seen:
                if subnet.version == other.version and subnet.overlaps(other):
                    problems.add(
                        where,
                        f"subnets {other} ({owner}) and {subnet} ({draft.name}) overlap",
                        "pick non-overlapping subnets",
                    )
            seen.append((subnet, draft.name))


def _check_bridges(drafts: list[NetworkDraft], problems: Problems) -> None:
    owners: dict[str, str] = {}
    for draft in drafts:
        bridge = draft.request.bridge or bridge_name(draft.name)
        if bridge in owners:
            problems.add(
                (*draft.path, "bridge") if draft.request.bridge else draft.path,
                f"networks {owners[bridge]!r} and {draft.name!r} would share bridge {bridge!r}",
                "give each network its own bridge name",
                key=not draft.request.bridge,
            )
        owners.setdefault(bridge, draft.name)
