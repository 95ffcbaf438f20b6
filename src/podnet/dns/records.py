"""The DNS zone podnet serves: an immutable snapshot built from podnet's state.

Theory of operation: the agent calls :func:`build_zone` with the pods it runs
and the services with their current endpoints, and hands the :class:`Zone` to
the DNS server, which answers every query from whichever snapshot is current.
A zone never changes; the agent swaps in a new one.

Names under the zone's origin (default ``podnet.``):

* ``<pod>.podnet.``: A/AAAA, every address of every interface of the pod;
* ``<service>.podnet.``: A/AAAA, the service's virtual IPs; for a headless
  service, the addresses of its serving endpoints;
* ``_<port>._<proto>.<service>.podnet.``: SRV for each named port. A VIP
  service has one record, ``0 0 <port> <service>.podnet.`` (weight 0: RFC
  2782's choice when there is nothing to choose). A headless service has one
  per serving endpoint, ``0 <weight> <target port> <target>``, where the
  target is the endpoint's pod name, or, for an endpoint of no known pod, a
  name made of its address under the service (``10-89-0-5.web.podnet.``,
  with its A/AAAA record);
* the origin itself: SOA (its minimum is the negative-caching TTL).

Serving endpoints are the ready ones with a weight above 0 (weight 0 keeps an
endpoint out of the load balancer too). A service and a pod of the same name
would share one DNS name: the service wins and the pod is listed in
:attr:`Zone.shadowed`, for the agent to report.
"""

from __future__ import annotations

import types
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype

from podnet.errors import InvalidInput
from podnet.model.network import IPAddress
from podnet.model.pod import PodSpec
from podnet.model.service import Endpoint, ServicePort, ServiceSpec

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TTL",
    "MAX_DOMAIN_WIRE",
    "MAX_TTL",
    "Zone",
    "address_label",
    "build_zone",
    "serving_endpoints",
]

DEFAULT_DOMAIN = "podnet."
DEFAULT_TTL = 5
MAX_TTL = 3600
#: The longest domain (wire bytes) under which every name podnet makes fits in
#: 255 bytes: an IPv6 label (39), a service (63), a port and protocol, the domain.
MAX_DOMAIN_WIRE = 255 - (1 + 39) - (1 + 63)
_IN = dns.rdataclass.IN
_SOA_TIMERS = (3600, 600, 86400)  # refresh, retry, expire: no secondaries, but required

RdataType = dns.rdatatype.RdataType
Records = Mapping[dns.name.Name, Mapping[RdataType, dns.rdataset.Rdataset]]
_Draft = dict[dns.name.Name, dict[RdataType, set[dns.rdata.Rdata]]]


@dataclass(frozen=True, slots=True)
class Zone:
    """An immutable snapshot of podnet's names.

    ``records`` maps each owner name to its rdatasets (dnspython's
    ``ImmutableRdataset``), the origin's SOA included; names compare and hash
    case-insensitively.
    ``names`` also holds the empty non-terminals (``_tcp.web.podnet.`` has no
    record of its own, but exists, so it answers NODATA, not NXDOMAIN).
    """

    origin: dns.name.Name
    ttl: int
    soa: dns.rdataset.Rdataset
    records: Records
    names: frozenset[dns.name.Name]
    shadowed: tuple[str, ...] = ()

    def contains(self, name: dns.name.Name) -> bool:
        """True when ``name`` is the origin or below it."""
        return name.is_subdomain(self.origin)

    def exists(self, name: dns.name.Name) -> bool:
        """True when ``name`` owns records or has a descendant that does."""
        return name in self.names

    def rdatasets(self, name: dns.name.Name) -> Mapping[RdataType, dns.rdataset.Rdataset]:
        """The rdatasets owned by ``name`` (empty when it owns none)."""
        return self.records.get(name, _NOTHING)

    @property
    def serial(self) -> int:
        """The SOA serial: a checksum of the records, so it changes with them."""
        serial: int = self.soa[0].serial
        return serial

    def to_text(self) -> str:
        """The zone in master-file form, sorted, for people and tests."""
        lines = []
        for name in sorted(self.records):
            for rdtype in sorted(self.records[name]):
                lines.append(self.records[name][rdtype].to_text(name))
        return "\n".join(lines) + "\n"


_NOTHING: Mapping[RdataType, dns.rdataset.Rdataset] = types.MappingProxyType({})


def serving_endpoints(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The endpoints DNS answers with: ready, with a weight above 0, in the given order."""
    return [e for e in endpoints if e.ready and e.weight > 0]


def build_zone(
    domain: str = DEFAULT_DOMAIN,
    pods: Iterable[PodSpec] = (),
    services: Iterable[tuple[ServiceSpec, Sequence[Endpoint]]] = (),
    ttl: int = DEFAULT_TTL,
) -> Zone:
    """Build the zone of ``domain`` from pods and services with their endpoints.

    Args:
        domain: the zone's origin, e.g. ``podnet.`` or ``cluster.example``.
        pods: every pod with its interfaces (pods without addresses get no name).
        services: each service with its current endpoints (health included).
        ttl: the TTL of every record, and the negative-caching TTL.

    Returns:
        The zone; ``shadowed`` lists pods hidden by a service of the same name.

    Raises:
        InvalidInput: the domain or a name is not a valid DNS name, or the TTL
            is out of range.
    """
    origin = _origin(domain)
    _check_ttl(ttl)
    pod_list, service_list = list(pods), list(services)
    named_pods = {p.name for p in pod_list if _addresses(p)}
    taken = {spec.name for spec, _ in service_list}
    draft: _Draft = {}
    try:
        for spec, endpoints in service_list:
            _add_service(draft, origin, spec, serving_endpoints(endpoints), named_pods)
        for pod in pod_list:
            if pod.name not in taken:
                _add_addresses(draft, _child(pod.name, origin), _addresses(pod))
    except dns.exception.DNSException as exc:
        raise InvalidInput(f"a name in zone {origin} is not a valid DNS name: {exc}") from None
    return _freeze(origin, ttl, draft, tuple(sorted(named_pods & taken)))


def _origin(domain: str) -> dns.name.Name:
    try:
        origin = dns.name.from_text(domain)
    except dns.exception.DNSException as exc:
        raise InvalidInput(
            f"DNS domain {domain!r} is not valid: {exc}", hint="e.g. podnet. or cluster.example"
        ) from None
    if origin == dns.name.root:
        raise InvalidInput("DNS domain must not be the root", hint="e.g. podnet.")
    if sum(len(label) + 1 for label in origin.labels) > MAX_DOMAIN_WIRE:
        raise InvalidInput(
            f"DNS domain {domain!r} is too long for the names under it",
            hint=f"use at most {MAX_DOMAIN_WIRE - 2} characters",
        )
    return origin


def _check_ttl(ttl: int) -> None:
    if not 0 <= ttl <= MAX_TTL:
        raise InvalidInput(f"DNS TTL {ttl} is out of range", hint=f"use 0-{MAX_TTL} seconds")


def _child(label: str, parent: dns.name.Name) -> dns.name.Name:
    """``label`` as one label under ``parent`` (a dot in it cannot make a subdomain)."""
    return dns.name.Name((label.encode(),)).concatenate(parent)


def _addresses(pod: PodSpec) -> list[IPAddress]:
    return [a.ip for iface in pod.interfaces for a in iface.addresses]


def _add(draft: _Draft, owner: dns.name.Name, rdata: dns.rdata.Rdata) -> None:
    draft.setdefault(owner, {}).setdefault(rdata.rdtype, set()).add(rdata)


def _address_rdata(address: IPAddress) -> dns.rdata.Rdata:
    rdtype = dns.rdatatype.A if address.version == 4 else dns.rdatatype.AAAA
    return dns.rdata.from_text(_IN, rdtype, str(address))


def _add_addresses(draft: _Draft, owner: dns.name.Name, addresses: Iterable[IPAddress]) -> None:
    for address in addresses:
        _add(draft, owner, _address_rdata(address))


def _srv(weight: int, port: int, target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdata.from_text(_IN, dns.rdatatype.SRV, f"0 {min(weight, 0xFFFF)} {port} {target}")


def _srv_owner(port: ServicePort, service: dns.name.Name) -> dns.name.Name:
    assert port.name is not None
    return dns.name.Name((f"_{port.name}".encode(), f"_{port.protocol}".encode())).concatenate(
        service
    )


def _add_service(
    draft: _Draft,
    origin: dns.name.Name,
    spec: ServiceSpec,
    ready: Sequence[Endpoint],
    pods: set[str],
) -> None:
    """A/AAAA and SRV of one service: its VIPs, or (headless) its ready endpoints."""
    name = _child(spec.name, origin)
    named_ports = [p for p in spec.ports if p.name]
    if spec.headless:
        _add_addresses(draft, name, [e.address for e in ready])
        for port in named_ports:
            for endpoint in ready:
                target = _endpoint_target(draft, origin, name, endpoint, pods)
                _add(draft, _srv_owner(port, name), _srv(endpoint.weight, port.target_port, target))
    elif spec.vips:
        _add_addresses(draft, name, spec.vips)
        for port in named_ports:
            _add(draft, _srv_owner(port, name), _srv(0, port.port, name))


def _endpoint_target(
    draft: _Draft,
    origin: dns.name.Name,
    service: dns.name.Name,
    endpoint: Endpoint,
    pods: set[str],
) -> dns.name.Name:
    """The SRV target of a headless endpoint: its pod, else a name of its address."""
    if endpoint.pod is not None and endpoint.pod in pods:
        return _child(endpoint.pod, origin)
    target = _child(address_label(endpoint.address), service)
    _add_addresses(draft, target, [endpoint.address])
    return target


def address_label(address: IPAddress) -> str:
    """One DNS label for an address: ``10-89-0-5``, ``fd00-0089-0000-...-0005``."""
    text = address.exploded if address.version == 6 else str(address)
    return text.replace(".", "-").replace(":", "-")


def _freeze(origin: dns.name.Name, ttl: int, draft: _Draft, shadowed: tuple[str, ...]) -> Zone:
    records = {
        owner: types.MappingProxyType(
            {rdtype: _rdataset(ttl, rdatas) for rdtype, rdatas in by_type.items()}
        )
        for owner, by_type in draft.items()
    }
    soa = _soa(origin, ttl, _checksum(records))
    apex = dict(records.get(origin, {}))
    apex[dns.rdatatype.SOA] = soa
    records[origin] = types.MappingProxyType(apex)
    names = {origin}
    for owner in records:
        names.update(_ancestors(owner, origin))
    return Zone(origin, ttl, soa, types.MappingProxyType(records), frozenset(names), shadowed)


def _ancestors(name: dns.name.Name, origin: dns.name.Name) -> Iterator[dns.name.Name]:
    """``name`` and each of its parents down to, not including, ``origin``."""
    while name != origin:
        yield name
        name = name.parent()


def _rdataset(ttl: int, rdatas: Iterable[dns.rdata.Rdata]) -> dns.rdataset.Rdataset:
    ordered = sorted(rdatas, key=lambda r: r.to_text())
    return dns.rdataset.ImmutableRdataset(dns.rdataset.from_rdata_list(ttl, ordered))


def _checksum(records: Records) -> int:
    lines = sorted(
        rdataset.to_text(owner)
        for owner, by_type in records.items()
        for rdataset in by_type.values()
    )
    return zlib.crc32("\n".join(lines).encode())


def _soa(origin: dns.name.Name, ttl: int, serial: int) -> dns.rdataset.Rdataset:
    rname = _child("hostmaster", origin)
    refresh, retry, expire = _SOA_TIMERS
    soa = dns.rdata.from_text(
        _IN, dns.rdatatype.SOA, f"{origin} {rname} {serial} {refresh} {retry} {expire} {ttl}"
    )
    return dns.rdataset.ImmutableRdataset(dns.rdataset.from_rdata(ttl, soa))
