"""Routes resolved against the registry: what one proxy serves from. Pure.

Theory of operation. A :class:`~podnet.model.route.Snapshot` is built from
values only (routes, services, pods, health), so it is tested without a store;
:mod:`podnet.agent.routes` reads those values and versions the result.

Backends. A BackendRef names a service and optionally a label subset. Its
endpoints are the service's (:func:`podnet.lb.endpoints.endpoints_of`: selected
running pods, or manual endpoints) whose labels include the subset, on the
port ``BackendRef.port`` or else the service's first TCP port's target port.
A dual-stack pod counts once, on its IPv4 address (its IPv6 address would make
it two endpoints and double its share). Unhealthy endpoints stay in the
snapshot with ``healthy=False`` so the proxy's view and ``route inspect`` agree.

Edge proxies serve every user route naming them (or naming no proxy) as is.

Sidecars take a pod's connections to service VIPs, so they route by original
destination (``VIP:port``):

* every service with a VIP gets, per TCP port, a synthesized route
  ``svc-<service>-<port>`` matching ``destinations=[VIP:port, ...]`` and sending
  to that service's target port with default policies;
* a user route applies to the traffic addressed to the services its backends
  name: a copy of it matches those services' ``VIP:port`` (the port whose
  target is the backend's port; the first TCP port when it names none), with
  its path, method and header conditions but not its hosts (inside a pod the
  destination says which service is meant, whatever the Host header says). A
  user route with no other condition replaces the synthesized route of the
  destinations it covers; one with conditions sits in front of it (more
  specific), and the synthesized one catches the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from podnet.lb.endpoints import endpoints_of
from podnet.model.pod import PodSpec
from podnet.model.route import (
    BackendRef,
    Match,
    ProxySpec,
    ResolvedBackend,
    ResolvedRoute,
    RouteSpec,
    Snapshot,
    SnapshotEndpoint,
)
from podnet.model.service import Endpoint, ServicePort, ServiceSpec

__all__ = [
    "Health",
    "build_snapshot",
    "resolve_backend",
    "resolve_route",
    "routes_for",
    "sidecar_routes",
    "target_port",
]

#: (service, endpoint address) -> "healthy" | "unhealthy" | "unknown"
Health = Mapping[tuple[str, str], str]


def _tcp_ports(spec: ServiceSpec) -> list[ServicePort]:
    return [p for p in spec.ports if p.protocol == "tcp"]


def target_port(ref: BackendRef, spec: ServiceSpec) -> int | None:
    """The endpoint port a backend sends to (None: the service has no TCP port)."""
    if ref.port is not None:
        return ref.port
    tcp = _tcp_ports(spec)
    return tcp[0].target_port if tcp else None


def _one_per_pod(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """Each pod once (endpoints come sorted IPv4 first); manual endpoints all."""
    seen: set[str] = set()
    out = []
    for ep in endpoints:
        if ep.pod is not None:
            if ep.pod in seen:
                continue
            seen.add(ep.pod)
        out.append(ep)
    return out


def resolve_backend(
    ref: BackendRef,
    services: Mapping[str, ServiceSpec],
    pods: Sequence[PodSpec],
    health: Health,
) -> ResolvedBackend:
    """The backend with its endpoints now (none when its service is missing)."""
    spec = services.get(ref.service)
    port = None if spec is None else target_port(ref, spec)
    if spec is None or port is None:
        return ResolvedBackend(ref)
    endpoints = []
    for ep in _one_per_pod(endpoints_of(spec, pods)):
        if any(ep.labels.get(k) != v for k, v in ref.subset.items()):
            continue
        state = health.get((spec.name, str(ep.address)), "unknown")
        healthy = spec.health.kind == "none" or state == "healthy"
        endpoints.append(
            SnapshotEndpoint(str(ep.address), port, ep.weight, healthy, dict(ep.labels))
        )
    return ResolvedBackend(ref, tuple(endpoints))


def resolve_route(
    spec: RouteSpec,
    services: Mapping[str, ServiceSpec],
    pods: Sequence[PodSpec],
    health: Health,
) -> ResolvedRoute:
    backends = tuple(resolve_backend(b, services, pods, health) for b in spec.backends)
    mirror = (
        None
        if spec.mirror is None
        else resolve_backend(spec.mirror.backend, services, pods, health)
    )
    return ResolvedRoute(spec, backends, mirror)


def routes_for(proxy: str, routes: Iterable[RouteSpec]) -> list[RouteSpec]:
    """User routes a proxy serves: those naming it, or naming no proxy; by name."""
    return sorted((r for r in routes if not r.proxies or proxy in r.proxies), key=lambda r: r.name)


def _destination(vip: object, port: int) -> str:
    text = str(vip)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _destinations(spec: ServiceSpec, port: ServicePort) -> tuple[str, ...]:
    return tuple(_destination(vip, port.port) for vip in spec.vips)


def _covered(route: RouteSpec, services: Mapping[str, ServiceSpec]) -> list[tuple[str, int]]:
    """(service, port) pairs whose VIP traffic a user route takes in a sidecar."""
    out: list[tuple[str, int]] = []
    for ref in route.backends:
        spec = services.get(ref.service)
        if spec is None or not spec.vips:
            continue
        tcp = _tcp_ports(spec)
        wanted = target_port(ref, spec)
        port = next((p for p in tcp if p.target_port == wanted), None)
        if port is not None and (ref.service, port.port) not in out:
            out.append((ref.service, port.port))
    return out


def _catch_all(match: Match) -> bool:
    return match.path_prefix == "/" and not match.methods and not match.headers


def sidecar_routes(
    user_routes: Sequence[RouteSpec], services: Mapping[str, ServiceSpec]
) -> list[RouteSpec]:
    """The routes of a sidecar (see the module docstring): user routes first,
    then the synthesized per-service routes they do not replace."""
    out: list[RouteSpec] = []
    replaced: set[tuple[str, int]] = set()
    for route in user_routes:
        covered = _covered(route, services)
        dests = tuple(
            d
            for service, port in covered
            for p in services[service].ports
            if p.port == port and p.protocol == "tcp"
            for d in _destinations(services[service], p)
        )
        if not dests:
            continue
        match = replace(route.match, hosts=(), destinations=dests)
        out.append(replace(route, match=match))
        if _catch_all(route.match):
            replaced.update(covered)
    for name in sorted(services):
        spec = services[name]
        for port in _tcp_ports(spec):
            if not spec.vips or (name, port.port) in replaced:
                continue
            backend = BackendRef(name=name, service=name, port=port.target_port)
            out.append(
                RouteSpec(
                    name=f"svc-{name}-{port.port}",
                    match=Match(destinations=_destinations(spec, port)),
                    backends=(backend,),
                    owner="sidecar",
                )
            )
    return out


def build_snapshot(
    proxy: ProxySpec,
    version: int,
    *,
    routes: Iterable[RouteSpec],
    services: Mapping[str, ServiceSpec],
    pods: Sequence[PodSpec],
    health: Health,
) -> Snapshot:
    """Everything ``proxy`` serves from, at ``version``."""
    mine = routes_for(proxy.name, routes)
    if proxy.mode == "sidecar":
        mine = sidecar_routes(mine, services)
    resolved = tuple(resolve_route(r, services, pods, health) for r in mine)
    return Snapshot(proxy=proxy.name, version=version, routes=resolved)
