"""One service compiled into the nft objects that balance its traffic.

Theory of operation: :func:`plan_service` turns a service and its endpoints
into a :class:`ServicePlan`, a plain value listing the objects that belong to
that service alone, and the elements it puts into the shared maps and sets of
:mod:`podnet.rules.service_layout`. Full and incremental syncs are both
computed from plans (:mod:`podnet.rules.service_sync`), so what a change
touches is exactly the difference between two plans of one service.

A *service port* is one (service, protocol, port, address family); IPv4 VIPs
balance to IPv4 endpoints and IPv6 VIPs to IPv6 ones. Its chain ``svc-H``
(comment ``service:web:tcp/80:ipv4``) takes one of four shapes::

    random, roundrobin           one rule; the endpoints are elements of a
                                 backend map, W slots by weight (the usual case)
      dnat ip to ip daddr . tcp dport . numgen random mod W map @service_backends4_tcp_1f
    the same with affinity       checks first, then one rule per endpoint
      ip saddr @af-A update @af-A { ip saddr } meta l4proto tcp dnat ip to A:8080
      numgen random mod 3 < 1 update @af-A { ip saddr } meta l4proto tcp dnat ip to A:8080
      …  meta l4proto tcp dnat ip to C:8080        (last: plain, see below)
    maglev                       a table of M slots, each a verdict
      jhash ip saddr . th sport . ip daddr . th dport mod M seed S vmap @mg-H
    no endpoint                  refuse rather than black-hole
      meta l4proto tcp reject with tcp reset

and, only where needed::

    chain hp-H    host port: meta mark set meta mark | MARK  then the same
                  DNAT through service_host_ports4_tcp, or goto svc-H
    map   mg-H    (maglev) 0 : goto ep-A, 1 : goto ep-C, …
    chain ep-E    (maglev) [update @af-E { ip saddr }] meta l4proto tcp dnat ip to E:8080
    set   af-E    (affinity) client addresses sent to E, forgotten after the timeout

With affinity, the endpoint chosen records the client in its own set and
every new connection of that client is checked against those sets first, as
kube-proxy does; a map lookup cannot say which endpoint it picked, so those
services use rules. An ``update`` into a full set stops its rule, so such a
client is placed by the next rule instead, and a last plain DNAT (to the
last endpoint; in Maglev's endpoint chains, to that endpoint) places anyone
left. Endpoint chains exist only as targets of Maglev's verdict map: every
chain costs nft a little on every later transaction (it lists the table's
chains first), and services of 10 endpoints would otherwise have 11.

Names are a prefix and 16 hex digits of SHA-256 over what identifies the
object, including whatever its declaration depends on (the timeout of an
``af-`` set, the size of an ``mg-`` map, the host port of an ``hp-`` chain):
``add set`` on an existing set silently keeps the old timeout, so a new
value must be a new object.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from podnet.errors import InvalidInput
from podnet.model.network import IPAddress
from podnet.model.service import Endpoint, ServicePort, ServiceSpec
from podnet.rules.service_balance import (
    maglev_owners,
    maglev_slots,
    weighted_rules,
    weighted_slots,
)
from podnet.rules.service_layout import (
    ADDR_TYPE,
    BACKEND_SHARDS,
    HAIRPIN_SET,
    IPS_MAP,
    IPX,
    NODEPORTS_MAP,
    ServicesConfig,
    backends_map,
    host_ports_map,
)

__all__ = ["EMPTY_PLAN", "ChainSpec", "MapSpec", "ServicePlan", "SetSpec", "plan_service"]

#: The ``typeof`` of Maglev maps: nft has no type name for the 32-bit integer
#: that ``jhash`` and ``numgen`` produce, only an expression of that type.
MAGLEV_KEY = "numgen inc mod 2"


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """A regular chain: its comment and its rules, in order."""

    comment: str
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SetSpec:
    """A client-IP affinity set: dynamic, with a timeout in seconds."""

    type: str
    timeout: int
    comment: str


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A Maglev table: slot number -> verdict (``goto ep-…``)."""

    comment: str
    elements: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """Everything one service puts in the table.

    Attributes:
        chains, sets, maps: objects owned by this service alone, by name.
        elements: its keys in the shared dispatch maps, ``(map, key) -> verdict``.
        members: its elements of the shared hairpin sets, ``(set, element)``.
    """

    chains: Mapping[str, ChainSpec] = field(default_factory=dict)
    sets: Mapping[str, SetSpec] = field(default_factory=dict)
    maps: Mapping[str, MapSpec] = field(default_factory=dict)
    elements: Mapping[tuple[str, str], str] = field(default_factory=dict)
    members: frozenset[tuple[str, str]] = frozenset()

    def names(self) -> list[str]:
        """Every object name this plan owns."""
        return [*self.chains, *self.sets, *self.maps]


EMPTY_PLAN = ServicePlan()


def object_name(prefix: str, *parts: str) -> str:
    """``prefix-`` and 16 hex digits of SHA-256 over ``parts``."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"{prefix}-{digest[:16]}"


def plan_service(
    spec: ServiceSpec, endpoints: Iterable[Endpoint], config: ServicesConfig
) -> ServicePlan:
    """Compile one service into the objects that balance it.

    Endpoints that are not ready or weigh 0 take no traffic; the same address
    listed twice counts once, with the weights added. A headless service has
    no kernel objects.

    Args:
        spec: the service; ``spec.vips`` are its virtual IPs.
        endpoints: its endpoints; each receives ``target_port`` of every port.
        config: the table and knobs.

    Returns:
        The service's plan (empty for a headless service).

    Raises:
        InvalidInput: a negative weight, or weights nft cannot express.
    """
    if spec.headless:
        return EMPTY_PLAN
    active = _active(spec.name, endpoints)
    out = _Builder()
    vip_families = {vip.version for vip in spec.vips}
    for port in spec.ports:
        families = vip_families | (set(active) if port.host_port else set())
        for version in sorted(families):
            _ServicePort(spec, port, version, active.get(version, []), config).plan(out)
    for vip in spec.vips:
        hairpin, vip_text = HAIRPIN_SET[vip.version], str(vip)
        for backend in active.get(vip.version, []):
            out.members.add((hairpin, f"{backend.text} . {backend.text} . {vip_text}"))
    return ServicePlan(out.chains, out.sets, out.maps, out.elements, frozenset(out.members))


@dataclass(slots=True)
class _Builder:
    chains: dict[str, ChainSpec] = field(default_factory=dict)
    sets: dict[str, SetSpec] = field(default_factory=dict)
    maps: dict[str, MapSpec] = field(default_factory=dict)
    elements: dict[tuple[str, str], str] = field(default_factory=dict)
    members: set[tuple[str, str]] = field(default_factory=set)


class _Backend(NamedTuple):
    address: IPAddress
    text: str  # str(address), formatted once: ipaddress's __str__ is slow
    weight: int


def _active(service: str, endpoints: Iterable[Endpoint]) -> dict[int, list[_Backend]]:
    # Keyed by (version, int): hashing ipaddress objects is slow, and this
    # runs for every endpoint of every service on a full sync.
    found: dict[tuple[int, int], tuple[IPAddress, int]] = {}
    for ep in endpoints:
        weight = ep.weight
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise InvalidInput(
                f"endpoint {ep.address} of service {service!r} has weight {weight!r}",
                hint="use a whole number >= 0 (0 takes the endpoint out of rotation)",
            )
        if ep.ready and weight > 0:
            key: tuple[int, int] = (ep.address.version, int(ep.address))
            seen = found.get(key)
            found[key] = (ep.address, weight + (seen[1] if seen else 0))
    by_family: dict[int, list[_Backend]] = {}
    for key in sorted(found):
        address, weight = found[key]
        by_family.setdefault(key[0], []).append(_Backend(address, str(address), weight))
    return by_family


def _target(backend: _Backend, port: int) -> str:
    return f"[{backend.text}]:{port}" if backend.address.version == 6 else f"{backend.text}:{port}"


def _reject(protocol: str) -> tuple[str, ...]:
    if protocol == "tcp":
        return ("meta l4proto tcp reject with tcp reset",)
    return ("reject",)  # inet family: ICMP (v6) port unreachable


class _ServicePort:
    """One (service, protocol, port, family): the svc chain and what hangs off it."""

    def __init__(
        self,
        spec: ServiceSpec,
        port: ServicePort,
        version: int,
        endpoints: list[_Backend],
        config: ServicesConfig,
    ) -> None:
        self.spec, self.port, self.version, self.config = spec, port, version, config
        self.endpoints = endpoints
        self.key = f"{spec.name}/{port.protocol}/{port.port}/ipv{version}"
        self.label = f"service:{spec.name}:{port.protocol}/{port.port}:ipv{version}"
        self.chain = object_name("svc", self.key)
        self.ipx = IPX[version]

    def plan(self, out: _Builder) -> None:
        slotted = self.spec.lb != "maglev" and self.spec.affinity_timeout is None
        slots = weighted_slots([b.weight for b in self.endpoints]) if slotted else []
        out.chains[self.chain] = ChainSpec(self.label, tuple(self._rules(out, slots)))
        proto, port = self.port.protocol, self.port.port
        for vip in self.spec.vips:
            if vip.version == self.version:
                key = (IPS_MAP[self.version], f"{vip} . {proto} . {port}")
                out.elements[key] = f"goto {self.chain}"
        if self.port.host_port:
            self._host_port(out, slots)

    def _rules(self, out: _Builder, slots: list[int]) -> list[str]:
        proto = self.port.protocol
        if slots:
            shard = int(self.chain[-16:], 16) % BACKEND_SHARDS
            backends = backends_map(self.version, proto, shard)
            for vip in self.spec.vips:
                if vip.version == self.version:
                    self._fill_slots(out, backends, f"{vip} . {self.port.port}", slots)
            return [self._slot_rule(f"{self.ipx} daddr . {proto} dport", backends, len(slots))]
        if not self.endpoints:
            return list(_reject(proto))
        checks = self._affinity(out)
        if self.spec.lb == "maglev":
            return checks + self._maglev(out)
        choices = [(b.weight, self._action(b)) for b in self.endpoints]
        return checks + weighted_rules(self.spec.lb, choices) + self._fallback(self.endpoints[-1])

    def _host_port(self, out: _Builder, slots: list[int]) -> None:
        proto, host_port = self.port.protocol, self.port.host_port
        hp = object_name("hp", self.key, str(host_port))
        then = f"goto {self.chain}"
        if slots:  # DNAT here: the service chain's map is keyed by VIP
            table = host_ports_map(self.version, proto)
            then = self._slot_rule(f"{proto} dport", table, len(slots))
            self._fill_slots(out, table, str(host_port), slots)
        rule = f"meta mark set meta mark | {self.config.mark} {then}"
        out.chains[hp] = ChainSpec(f"{self.label}:host-port {host_port}", (rule,))
        out.elements[(NODEPORTS_MAP[self.version], f"{proto} . {host_port}")] = f"goto {hp}"

    def _slot_rule(self, key: str, table: str, slots: int) -> str:
        gen = "numgen inc" if self.spec.lb == "roundrobin" else "numgen random"
        return f"dnat {self.ipx} to {key} . {gen} mod {slots} map @{table}"

    def _fill_slots(self, out: _Builder, table: str, prefix: str, slots: list[int]) -> None:
        target_port = self.port.target_port
        for slot, owner in enumerate(slots):
            address = self.endpoints[owner].text
            out.elements[(table, f"{prefix} . {slot}")] = f"{address} . {target_port}"

    def _affinity_set(self, backend: _Backend) -> str | None:
        timeout = self.spec.affinity_timeout
        if timeout is None:
            return None
        return object_name("af", self.key, backend.text, str(self.port.target_port), str(timeout))

    def _dnat(self, backend: _Backend) -> str:
        return (
            f"meta l4proto {self.port.protocol} "
            f"dnat {self.ipx} to {_target(backend, self.port.target_port)}"
        )

    def _action(self, backend: _Backend) -> str:
        affinity = self._affinity_set(backend)
        update = f"update @{affinity} {{ {self.ipx} saddr }} " if affinity else ""
        return update + self._dnat(backend)

    def _fallback(self, backend: _Backend) -> list[str]:
        # An ``update`` into a full affinity set stops its rule; the rules
        # after it still place the client, and this last one always does.
        return [self._dnat(backend)] if self.spec.affinity_timeout is not None else []

    def _affinity(self, out: _Builder) -> list[str]:
        rules = []
        for backend in self.endpoints:
            name = self._affinity_set(backend)
            if name is None:
                return []
            timeout = self.spec.affinity_timeout or 0
            target = _target(backend, self.port.target_port)
            out.sets[name] = SetSpec(
                ADDR_TYPE[self.version], timeout, f"{self.label}:affinity {target}"
            )
            rules.append(f"{self.ipx} saddr @{name} {self._action(backend)}")
        return rules

    def _maglev(self, out: _Builder) -> list[str]:
        slots = maglev_slots(len(self.endpoints), self.config.maglev_max_slots)
        chains = {}
        for backend in self.endpoints:
            target = _target(backend, self.port.target_port)
            name = object_name("ep", self.key, backend.text, str(self.port.target_port))
            rules = (self._action(backend), *self._fallback(backend))
            out.chains[name] = ChainSpec(f"{self.label}:endpoint {target}", rules)
            chains[backend.text] = name
        owners = maglev_owners([(b.text, b.weight) for b in self.endpoints], slots)
        table = object_name("mg", self.key, str(slots))
        out.maps[table] = MapSpec(
            f"{self.label}:maglev",
            {str(slot): f"goto {chains[owner]}" for slot, owner in enumerate(owners)},
        )
        ipx = self.ipx
        return [
            f"jhash {ipx} saddr . th sport . {ipx} daddr . th dport mod {slots} "
            f"seed {self.config.maglev_seed:#010x} vmap @{table}"
        ]
