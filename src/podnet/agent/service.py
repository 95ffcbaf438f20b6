"""The service layer: every operation the API offers, on desired state.

Each mutation writes desired state to the store in one atomic commit (with
compare-and-swap guards on names and leases), then reconciles. A reconcile
that fails rolls the store back to what it was and reconciles again, so a
failed request leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from podnet.agent.admission import Allocations, PortChecker, admit_pod, resolve_network
from podnet.controller.proxies import ProxySupervisor
from podnet.controller.reconciler import Reconciler
from podnet.controller.state import (
    Keys,
    Repository,
    lease_expectations,
    pod_ops,
    pod_removal_ops,
)
from podnet.errors import AlreadyExists, Conflict, NotFound
from podnet.model.names import netns_name
from podnet.model.network import IPNetwork, Network, NetworkRequest
from podnet.model.pod import PodSpec
from podnet.store.base import Delete, Put, Store

__all__ = ["HostRoutes", "Service"]

#: The host's routes, as (destination, "dev X"), for subnet overlap checks.
HostRoutes = Callable[[], list[tuple[IPNetwork, str]]]


class Service:
    """Networks and pods: create, inspect, change, remove."""

    def __init__(
        self,
        store: Store,
        reconciler: Reconciler,
        *,
        host_routes: HostRoutes,
        port_holder: PortChecker,
    ) -> None:
        self.store = store
        self.repo = Repository(store)
        self.reconciler = reconciler
        self.settings = reconciler.settings
        self._host_routes = host_routes
        self._probe_port = port_holder
        self.lock: threading.RLock = reconciler.lock
        #: L7 proxy processes and sidecar tables (podnet.agent.routes drives it).
        self.proxies = ProxySupervisor(
            store, log_dir=self.settings.state_dir / "logs", env=self.settings.to_env()
        )

    def port_holder(self, protocol: str, port: int) -> str | None:
        """Who holds a host port besides pods and services: an edge proxy in the
        store (even while its process is down), else any listening process."""
        if protocol == "tcp":
            for proxy in self.repo.proxies().values():
                if proxy.mode == "edge" and proxy.host_port == port:
                    return f"proxy {proxy.name!r}"
        return self._probe_port(protocol, port)

    # -- networks --------------------------------------------------------

    def network(self, name: str) -> Network:
        net = self.repo.network(name)
        if net is None:
            raise NotFound(
                f"network {name!r} does not exist", hint="list networks with 'podnet network ls'"
            )
        return net

    def routes_for_overlap(self) -> list[tuple[IPNetwork, str]]:
        """Host routes other than the ones of podnet's own bridges."""
        bridges = {n.bridge for n in self.repo.networks().values()}
        return [(dst, dev) for dst, dev in self._host_routes() if dev not in bridges]

    def create_network(self, req: NetworkRequest) -> Network:
        with self.lock:
            if self.repo.network(req.name) is not None:
                raise AlreadyExists(
                    f"network {req.name!r} already exists",
                    hint="choose another name or remove it with 'podnet network rm'",
                )
            existing = self.repo.networks()
            net = resolve_network(req, existing, self.routes_for_overlap(), self.settings)
            self._check_bridge_unique(net, existing.values())
            rollback = self._snapshot([Keys.network(net.name)])
            self.store.put(Keys.network(net.name), net.to_dict(), expect=0)
            self._reconcile_or_rollback(rollback, ())
            return net

    @staticmethod
    def _check_bridge_unique(net: Network, existing: Iterable[Network]) -> None:
        for other in existing:
            if other.bridge == net.bridge and other.name != net.name:
                raise Conflict(
                    f"bridge {net.bridge!r} is already used by network {other.name!r}",
                    hint="give the network another bridge name",
                )

    def remove_network(self, name: str) -> bool:
        with self.lock:
            if self.repo.network(name) is None:
                return False
            users = sorted(p.name for p in self.repo.pods().values() if _on(p, name))
            users += sorted(a.owner for a in self.repo.attachments(name))
            if users:
                raise Conflict(
                    f"network {name!r} is in use by pod(s) {', '.join(users)}",
                    hint="remove those pods first ('podnet rm -f ...')",
                )
            self.store.commit([Delete(Keys.network(name)), Delete(Keys.cursor(name))])
            self.reconciler.reconcile(scope=())
            return True

    # -- pods --------------------------------------------------------------

    def pod(self, name: str) -> PodSpec:
        pod = self.repo.pod(name)
        if pod is None:
            raise NotFound(f"pod {name!r} does not exist", hint="list pods with 'podnet ps -a'")
        return pod

    def network_allocations(self, network: str) -> Allocations:
        """Addresses in use on one network, from its lease keys alone: what an
        attachment without published ports needs, without reading every pod."""
        prefix = f"{Keys.LEASES}{network}/"
        alloc = Allocations()
        for entry in self.store.list(prefix):
            holder = str(entry.value.get("pod", "?"))
            alloc.holders[(network, ipaddress.ip_address(entry.key.removeprefix(prefix)))] = holder
            if holder.startswith("container "):
                alloc.aliases[holder] = holder
        for version, ip in self.repo.cursor(network).items():
            alloc.cursors[(network, int(version))] = ipaddress.ip_address(ip)
        return alloc

    def allocations(self, pods: Iterable[PodSpec] | None = None) -> Allocations:
        cursors = {e.key.removeprefix(Keys.CURSORS): e.value for e in self.store.list(Keys.CURSORS)}
        owners = list(self.repo.pods().values() if pods is None else pods)
        attached = self.repo.attachments()
        owners += [a.as_pod() for a in attached]  # one IPAM for both
        alloc = Allocations.of(owners, cursors)
        alloc.aliases.update((a.as_pod().name, a.owner) for a in attached)
        return alloc

    def run_pod(self, spec: PodSpec) -> PodSpec:
        with self.lock:
            if self.repo.pod(spec.name) is not None:
                raise AlreadyExists(
                    f"pod {spec.name!r} already exists",
                    hint="choose another --name or remove it with 'podnet rm -f'",
                )
            pod = admit_pod(spec, self.repo.networks(), self.allocations(), self.port_holder)
            expect = {Keys.pod(pod.name): 0, **lease_expectations([pod])}
            keys = [op.key for op in pod_ops(pod)]
            rollback = self._snapshot(keys)
            self.store.commit(_last_write_wins(pod_ops(pod)), expect=expect)
            self._reconcile_or_rollback(rollback, (pod.name,))
            return pod

    def remove_pod(self, name: str, *, force: bool = False) -> bool:
        with self.lock:
            pod = self.repo.pod(name)
            if pod is None:
                return False
            if not force and self.reconciler.supervisor.alive(self.repo.status(name)):
                raise Conflict(
                    f"pod {name!r} is running", hint="stop it first, or use 'podnet rm -f'"
                )
            self.reconciler.supervisor.forget([name])
            self.store.commit(pod_removal_ops(pod))
            self.reconciler.reconcile(scope=())
            return True

    def set_running(self, name: str, running: bool) -> PodSpec:
        with self.lock:
            entry = self.store.get(Keys.pod(name))
            if entry is None:
                raise NotFound(f"pod {name!r} does not exist", hint="list pods with 'podnet ps -a'")
            pod = replace(PodSpec.from_dict(entry.value), running=running)
            if not running:
                self.reconciler.supervisor.stop([name])
            else:
                self.repo.store.delete(Keys.status(name))
            self.store.put(Keys.pod(name), pod.to_dict(), expect=entry.revision)
            self.reconciler.reconcile(scope=(name,))
            return pod

    def pod_view(self, pod: PodSpec) -> dict[str, Any]:
        """A pod as ``ps``/``inspect`` show it: spec, netns, process state."""
        status = self.repo.status(pod.name)
        supervisor = self.reconciler.supervisor
        state = status.state
        if state == "running" and not supervisor.alive(status):
            state = "exited"
        if not pod.command:
            state = "running" if pod.running else "stopped"
        view = pod.to_dict()
        view["netns"] = netns_name(pod.name, self.settings.netns_prefix)
        view["status"] = {**status.to_dict(), "state": state}
        view["log_path"] = str(supervisor.log_path(pod.name))
        return view

    # -- whole state ---------------------------------------------------------

    def _snapshot(self, keys: Iterable[str]) -> list[Put | Delete]:
        """Ops that put ``keys`` back as they are now."""
        ops: list[Put | Delete] = []
        for key in dict.fromkeys(keys):
            entry = self.store.get(key)
            ops.append(Put(key, entry.value) if entry else Delete(key))
        return ops

    def _reconcile_or_rollback(
        self, rollback: list[Put | Delete], scope: Iterable[str] | None
    ) -> None:
        try:
            self.reconciler.reconcile(scope=None if scope is None else set(scope))
        except Exception:
            self.store.commit(rollback)
            self.reconciler.reconcile()
            raise

    def apply_desired(
        self,
        networks: Mapping[str, Network],
        pods: Mapping[str, PodSpec],
        *,
        stop: Iterable[str] = (),
    ) -> None:
        """Replace desired state wholesale (``up``/``down``), rolling back on failure."""
        with self.lock:
            old_nets, old_pods = self.repo.networks(), self.repo.pods()
            ops = _diff_ops(old_nets, networks, Keys.network, lambda n: n.to_dict())
            for name, pod in old_pods.items():
                if pods.get(name) != pod:
                    ops += pod_removal_ops(pod)
            for name, pod in pods.items():
                if old_pods.get(name) != pod:
                    ops += pod_ops(pod)
            ops = _last_write_wins(ops)
            if not ops:
                self.reconciler.reconcile()
                return
            rollback = self._snapshot(op.key for op in ops)
            self.reconciler.supervisor.forget(list(stop))
            self.store.commit(ops)
            changed = [n for n, p in pods.items() if old_pods.get(n) != p]
            self._reconcile_or_rollback(rollback, changed)

    def reset(self) -> None:
        """Remove everything podnet owns: pods, networks, their kernel objects, its table."""
        with self.lock:
            if self.reconciler.supervise:  # proxies first: sidecars live in pods' netns
                self.proxies.remove_all()
            self.reconciler.teardown()
            ops: list[Put | Delete] = [Delete(e.key) for e in self.store.list("/")]
            if ops:
                self.store.commit(ops)


def _last_write_wins(ops: Iterable[Put | Delete]) -> list[Put | Delete]:
    """One op per key (the store takes each key once per commit): the last one."""
    return list({op.key: op for op in ops}.values())


def _on(pod: PodSpec, network: str) -> bool:
    return any(a.network == network for a in pod.attachments)


def _diff_ops(
    old: Mapping[str, Network],
    new: Mapping[str, Network],
    key: Callable[[str], str],
    encode: Callable[[Network], dict[str, Any]],
) -> list[Put | Delete]:
    ops: list[Put | Delete] = [Delete(key(n)) for n in old if n not in new]
    ops += [Put(key(n), encode(v)) for n, v in new.items() if old.get(n) != v]
    return ops
