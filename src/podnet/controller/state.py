"""Desired state in the store: the key layout and typed access to it.

Keys (values are JSON objects)::

    /networks/<name>            Network
    /pods/<name>                PodSpec (with interfaces resolved by IPAM)
    /leases/<network>/<ip>      {"pod": name}: one address handed out
    /ipam-cursor/<network>      {"4": ip, "6": ip}: where round robin resumes
    /owned/netns/<name>         {"pod": name}: a netns podnet created
    /status/<pod>               ProcessStatus of the pod's command
    /cni/<network>/<cid>/<if>   CniAttachment: a runtime's container on a network
    /services/<name>            ServiceSpec (VIPs resolved)
    /health/<service>/<ip>      {"state": ..., "reason": ...}: an endpoint's health
    /routes/<name>              RouteSpec: an L7 route
    /proxies/<name>             ProxySpec: an edge proxy or a pod's sidecar
    /proxy-status/<name>        ProcessStatus (+ "argv") of the proxy's process

Proxy processes keep their status apart from pods' (``/status/``), so the pod
supervisor never takes a proxy for a pod that is gone.

Leases are separate keys so that a compare-and-swap ``put(expect=0)`` makes
handing one address out twice impossible, even across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from podnet.model.attachment import CniAttachment
from podnet.model.network import IPAddress, Network
from podnet.model.pod import PodSpec
from podnet.model.route import ProxySpec, RouteSpec
from podnet.model.service import ServiceSpec
from podnet.store.base import Delete, Put, Store

__all__ = [
    "Keys",
    "ProcessStatus",
    "Repository",
    "lease_expectations",
    "pod_ops",
    "pod_removal_ops",
]


T = TypeVar("T")


class Keys:
    """Where each kind of object lives."""

    NETWORKS = "/networks/"
    PODS = "/pods/"
    LEASES = "/leases/"
    CURSORS = "/ipam-cursor/"
    OWNED_NETNS = "/owned/netns/"
    STATUS = "/status/"
    CNI = "/cni/"
    SERVICES = "/services/"
    HEALTH = "/health/"
    ROUTES = "/routes/"
    PROXIES = "/proxies/"
    PROXY_STATUS = "/proxy-status/"

    @staticmethod
    def route(name: str) -> str:
        return Keys.ROUTES + name

    @staticmethod
    def proxy(name: str) -> str:
        return Keys.PROXIES + name

    @staticmethod
    def proxy_status(name: str) -> str:
        return Keys.PROXY_STATUS + name

    @staticmethod
    def service(name: str) -> str:
        return Keys.SERVICES + name

    @staticmethod
    def health(service: str, address: IPAddress) -> str:
        return f"{Keys.HEALTH}{service}/{address}"

    @staticmethod
    def attachment(network: str, container_id: str, ifname: str) -> str:
        return f"{Keys.CNI}{network}/{container_id}/{ifname}"

    @staticmethod
    def network(name: str) -> str:
        return Keys.NETWORKS + name

    @staticmethod
    def pod(name: str) -> str:
        return Keys.PODS + name

    @staticmethod
    def lease(network: str, address: IPAddress) -> str:
        return f"{Keys.LEASES}{network}/{address}"

    @staticmethod
    def cursor(network: str) -> str:
        return Keys.CURSORS + network

    @staticmethod
    def owned_netns(name: str) -> str:
        return Keys.OWNED_NETNS + name

    @staticmethod
    def status(pod: str) -> str:
        return Keys.STATUS + pod


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """What became of a pod's command. ``state``: created, running, exited, stopped."""

    state: str = "created"
    pid: int = 0
    start_ticks: int = 0
    exit_code: int | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    restarts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ProcessStatus:
        return ProcessStatus(**{k: data[k] for k in data if k in ProcessStatus.__slots__})


class Repository:
    """Typed reads and the write operations of desired state over a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _by_name(self, prefix: str, parse: Callable[[dict[str, Any]], T]) -> dict[str, T]:
        """Every value under ``prefix``, parsed, by the rest of its key."""
        return {e.key.removeprefix(prefix): parse(e.value) for e in self.store.list(prefix)}

    def networks(self) -> dict[str, Network]:
        return self._by_name(Keys.NETWORKS, Network.from_dict)

    def pods(self) -> dict[str, PodSpec]:
        return self._by_name(Keys.PODS, PodSpec.from_dict)

    def network(self, name: str) -> Network | None:
        entry = self.store.get(Keys.network(name))
        return Network.from_dict(entry.value) if entry else None

    def pod(self, name: str) -> PodSpec | None:
        entry = self.store.get(Keys.pod(name))
        return PodSpec.from_dict(entry.value) if entry else None

    def leases(self, network: str) -> dict[str, str]:
        prefix = f"{Keys.LEASES}{network}/"
        return {e.key.removeprefix(prefix): e.value["pod"] for e in self.store.list(prefix)}

    def cursor(self, network: str) -> dict[str, str]:
        entry = self.store.get(Keys.cursor(network))
        return dict(entry.value) if entry else {}

    def attachments(self, network: str | None = None) -> list[CniAttachment]:
        prefix = Keys.CNI if network is None else f"{Keys.CNI}{network}/"
        return [CniAttachment.from_dict(e.value) for e in self.store.list(prefix)]

    def attachment(self, network: str, container_id: str, ifname: str) -> CniAttachment | None:
        entry = self.store.get(Keys.attachment(network, container_id, ifname))
        return CniAttachment.from_dict(entry.value) if entry else None

    def services(self) -> dict[str, ServiceSpec]:
        return self._by_name(Keys.SERVICES, ServiceSpec.from_dict)

    def service(self, name: str) -> ServiceSpec | None:
        entry = self.store.get(Keys.service(name))
        return ServiceSpec.from_dict(entry.value) if entry else None

    def routes(self) -> dict[str, RouteSpec]:
        return self._by_name(Keys.ROUTES, RouteSpec.from_dict)

    def route(self, name: str) -> RouteSpec | None:
        entry = self.store.get(Keys.route(name))
        return RouteSpec.from_dict(entry.value) if entry else None

    def proxies(self) -> dict[str, ProxySpec]:
        return self._by_name(Keys.PROXIES, ProxySpec.from_dict)

    def proxy(self, name: str) -> ProxySpec | None:
        entry = self.store.get(Keys.proxy(name))
        return ProxySpec.from_dict(entry.value) if entry else None

    def health(self) -> dict[tuple[str, str], str]:
        """(service, endpoint address) -> health state ("healthy", "unhealthy", "unknown")."""
        out: dict[tuple[str, str], str] = {}
        for e in self.store.list(Keys.HEALTH):
            service, _, address = e.key.removeprefix(Keys.HEALTH).partition("/")
            out[(service, address)] = str(e.value.get("state", "unknown"))
        return out

    def owned_netns(self) -> dict[str, str]:
        return {
            e.key.removeprefix(Keys.OWNED_NETNS): e.value.get("pod", "")
            for e in self.store.list(Keys.OWNED_NETNS)
        }

    def status(self, pod: str) -> ProcessStatus:
        entry = self.store.get(Keys.status(pod))
        return ProcessStatus.from_dict(entry.value) if entry else ProcessStatus()

    def statuses(self) -> dict[str, ProcessStatus]:
        return self._by_name(Keys.STATUS, ProcessStatus.from_dict)

    def set_status(self, pod: str, status: ProcessStatus) -> None:
        self.store.put(Keys.status(pod), status.to_dict())

    def record_netns(self, name: str, pod: str) -> None:
        self.store.put(Keys.owned_netns(name), {"pod": pod})

    def forget_netns(self, name: str) -> None:
        self.store.delete(Keys.owned_netns(name))


def pod_ops(pod: PodSpec) -> list[Put | Delete]:
    """Store writes that admit ``pod``: its record, its leases, its cursors."""
    ops: list[Put | Delete] = [Put(Keys.pod(pod.name), pod.to_dict())]
    for iface in pod.interfaces:
        cursor: dict[str, str] = {}
        for addr in iface.addresses:
            ops.append(Put(Keys.lease(iface.network, addr.ip), {"pod": pod.name}))
            cursor[str(addr.version)] = str(addr.ip)
        ops.append(Put(Keys.cursor(iface.network), cursor))
    return ops


def pod_removal_ops(pod: PodSpec) -> list[Put | Delete]:
    """Store writes that remove ``pod``'s record, leases and status."""
    ops: list[Put | Delete] = [Delete(Keys.pod(pod.name)), Delete(Keys.status(pod.name))]
    ops.extend(Delete(Keys.lease(i.network, a.ip)) for i in pod.interfaces for a in i.addresses)
    return ops


def lease_expectations(pods: Iterable[PodSpec]) -> dict[str, int]:
    """Compare-and-swap guards: every lease of these pods must be new."""
    return {Keys.lease(i.network, a.ip): 0 for p in pods for i in p.interfaces for a in i.addresses}
