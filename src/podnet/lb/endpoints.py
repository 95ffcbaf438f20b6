"""Which endpoints a service has, and which of them are ready. Pure.

A service's endpoints are its manual ones, or the addresses of the running
pods its selector matches (each pod once, on the address of the service's IP
version that the pod has). An endpoint is ready when its health is "healthy",
or when the service does no health checks; until its first checks pass it is
not (as Kubernetes readiness and Consul do).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from podnet.model.pod import PodSpec
from podnet.model.service import Endpoint, ServiceSpec

__all__ = ["endpoints_of", "ready_endpoints"]


def endpoints_of(spec: ServiceSpec, pods: Iterable[PodSpec]) -> list[Endpoint]:
    """Every endpoint of ``spec`` (ready or not), sorted by address."""
    if spec.endpoints:
        return sorted(spec.endpoints, key=lambda e: (e.address.version, int(e.address)))
    found: list[Endpoint] = []
    for pod in pods:
        if not pod.running or not spec.selects(pod.labels):
            continue
        for iface in pod.interfaces[:1]:  # the pod's first interface carries services
            for addr in iface.addresses:
                found.append(Endpoint(addr.ip, pod=pod.name, labels=dict(pod.labels)))
    return sorted(found, key=lambda e: (e.address.version, int(e.address)))


def ready_endpoints(
    spec: ServiceSpec, endpoints: Iterable[Endpoint], health: Mapping[tuple[str, str], str]
) -> list[Endpoint]:
    """The endpoints that may get traffic (and DNS answers), with ``ready`` set."""
    out = []
    for ep in endpoints:
        state = health.get((spec.name, str(ep.address)), "unknown")
        ready = ep.weight > 0 and (spec.health.kind == "none" or state == "healthy")
        if ready:
            out.append(Endpoint(ep.address, ep.pod, ep.weight, True, ep.labels))
    return out
