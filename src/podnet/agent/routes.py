"""L7 routes and proxies: create, change, remove, resolve, run.

Routes and proxies are desired state under ``/routes/`` and ``/proxies/``.
A route must name existing services and proxies when it is set; a service
removed later leaves its backends empty (the proxy answers 503), not a broken
route. Proxies run as processes the agent supervises (:meth:`RouteOps.sync`,
every second from the agent's loop and after every change here).

Snapshot versions. A proxy long-polls for its snapshot with the version it has.
The version is the store revision at which the snapshot's content last changed:
each build is hashed, and a new hash takes the revision read before the build.
It only grows; after an agent restart the first build takes the current
revision, which is at least any version handed out before.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from podnet.agent.service import Service
from podnet.agent.snapshots import Health, build_snapshot, resolve_route
from podnet.controller.proxies import ProxyLaunch
from podnet.controller.state import Keys
from podnet.errors import AlreadyExists, Conflict, InvalidInput, NotFound, StoreConflict
from podnet.model.names import netns_name
from podnet.model.network import IPNetwork
from podnet.model.pod import PodSpec
from podnet.model.route import ProxySpec, RouteSpec, Snapshot
from podnet.model.service import ServiceSpec
from podnet.store.base import Delete, Put

__all__ = ["SNAPSHOT_INPUTS", "RouteOps", "proxy_argv"]

#: Store prefixes whose changes can change a snapshot.
SNAPSHOT_INPUTS = (Keys.ROUTES, Keys.PROXIES, Keys.SERVICES, Keys.PODS, Keys.HEALTH)


def proxy_argv(spec: ProxySpec, netns: str | None, python: str = sys.executable) -> tuple[str, ...]:
    """The command that runs ``spec``: ``podnet proxy run --agent`` (in ``netns``)."""
    argv = [python, "-m", "podnet", "proxy", "run", "--name", spec.name, "--agent"]
    if spec.mode == "sidecar":
        port = spec.listen_port  # IPv6 VIPs are redirected to [::1] (rules.sidecar)
        argv += ["--sidecar", "--listen", f"127.0.0.1:{port}", "--also-listen", f"[::1]:{port}"]
    else:
        argv += ["--listen", f"0.0.0.0:{spec.host_port}"]
    if spec.admin_port:
        argv += ["--admin", f"127.0.0.1:{spec.admin_port}"]
    argv += ["--workers", str(spec.workers), "--access-log", "-"]
    return tuple(["ip", "netns", "exec", netns, *argv] if netns else argv)


class RouteOps:
    """Routes and proxies of one node, over the service layer's store and lock."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store
        self.repo = service.repo
        self.settings = service.settings
        self._versions: dict[str, tuple[str, int]] = {}  # proxy -> (content hash, version)
        self._versions_lock = threading.Lock()
        self._served: dict[str, float] = {}  # proxy -> when it was last sent a snapshot

    # -- routes ----------------------------------------------------------------

    def route(self, name: str) -> RouteSpec:
        spec = self.repo.route(name)
        if spec is None:
            raise NotFound(f"route {name!r} does not exist", hint="list routes: podnet route ls")
        return spec

    def set_route(self, spec: RouteSpec) -> RouteSpec:
        """Create or replace a route (one store write; proxies follow by long-poll)."""
        spec.validate()
        with self.service.lock:
            self._check_references(spec)
            old = self.repo.route(spec.name)
            if old is not None and old.owner != spec.owner:
                raise Conflict(
                    f"route {spec.name!r} is owned by {old.owner or 'no topology'}",
                    hint="change it in its topology file, or remove it first",
                )
            self.store.put(Keys.route(spec.name), spec.to_dict())
            return spec

    def set_weights(self, name: str, weights: Mapping[str, int]) -> RouteSpec:
        """Change only the weights of some backends (the canary shift)."""
        if not weights:
            raise InvalidInput("no weight given", hint="e.g. --weight web-v2=50")
        with self.service.lock:
            entry = self.store.get(Keys.route(name))
            if entry is None:
                raise NotFound(
                    f"route {name!r} does not exist",
                    hint="create it first with --backend SERVICE[@WEIGHT]",
                )
            spec = RouteSpec.from_dict(entry.value).with_weights(weights)
            self.store.put(Keys.route(name), spec.to_dict(), expect=entry.revision)
            return spec

    def remove_route(self, name: str) -> bool:
        return self.store.delete(Keys.route(name))

    def _check_references(self, spec: RouteSpec) -> None:
        services = self.repo.services()
        refs = [b.service for b in spec.backends]
        refs += [spec.mirror.backend.service] if spec.mirror else []
        missing = sorted({s for s in refs if s not in services})
        if missing:
            raise NotFound(
                f"route {spec.name!r} names service(s) that do not exist: {', '.join(missing)}",
                hint="create them with 'podnet service create' first",
            )
        proxies = self.repo.proxies()
        unknown = sorted(p for p in spec.proxies if p not in proxies)
        if unknown:
            raise NotFound(
                f"route {spec.name!r} names proxy(ies) that do not exist: {', '.join(unknown)}",
                hint="create them with 'podnet proxy create' first, or drop --proxy",
            )

    def _registry(self) -> tuple[Mapping[str, ServiceSpec], list[PodSpec], Health]:
        """Services, pods and health from the reconciler's index (kept current
        from store events), not parsed again from the store for every
        snapshot or view: with 10,000 services that is seconds each time."""
        with self.service.lock:  # the index is the reconciler's, under its lock
            index = self.service.reconciler.index
            index.refresh()
            return dict(index.specs()), index.pods(), index.health()

    def route_view(self, spec: RouteSpec) -> dict[str, Any]:
        """A route as ``route ls/inspect`` show it: spec and resolved endpoints."""
        services, pods, health = self._registry()
        resolved = resolve_route(spec, services, pods, health)
        view = spec.to_dict()
        view["resolved"] = [b.to_dict() for b in resolved.backends]
        view["missing_services"] = sorted(
            {b.service for b in spec.backends if b.service not in services}
        )
        return view

    # -- proxies ---------------------------------------------------------------

    def proxy(self, name: str) -> ProxySpec:
        spec = self.repo.proxy(name)
        if spec is None:
            raise NotFound(f"proxy {name!r} does not exist", hint="list proxies: podnet proxy ls")
        return spec

    def create_proxy(self, spec: ProxySpec) -> ProxySpec:
        """Record a proxy and start it; refused when its name, host port or pod is taken."""
        spec.validate()
        with self.service.lock:
            if self.repo.proxy(spec.name) is not None:
                raise AlreadyExists(
                    f"proxy {spec.name!r} already exists",
                    hint="choose another name or remove it with 'podnet proxy rm'",
                )
            self.admit(spec, self.repo.proxies().values())
            self.store.put(Keys.proxy(spec.name), spec.to_dict(), expect=0)
            try:
                self.sync()
            except BaseException:
                self.store.delete(Keys.proxy(spec.name))
                self.sync()
                raise
            return spec

    def admit(
        self,
        spec: ProxySpec,
        others: Iterable[ProxySpec],
        pods: Mapping[str, PodSpec] | None = None,
        previous: ProxySpec | None = None,
    ) -> None:
        """Refuse an edge proxy on a taken host port, or a second sidecar of a pod.

        ``pods``: the pods there will be (``up`` checks against its file's); default
        the pods there are. ``previous``: the proxy this one replaces (its port is
        held by its own process, not by someone else).
        """
        pods = self.repo.pods() if pods is None else pods
        if spec.mode == "sidecar":
            if str(spec.pod) not in pods:
                raise NotFound(
                    f"pod {spec.pod!r} of sidecar proxy {spec.name!r} does not exist",
                    hint="create the pod first (podnet run --name POD ...)",
                )
            for other in others:
                if other.name != spec.name and other.mode == "sidecar" and other.pod == spec.pod:
                    raise Conflict(
                        f"pod {spec.pod!r} already has sidecar proxy {other.name!r}",
                        hint="a pod has at most one sidecar; remove the other first",
                    )
            return
        port = spec.host_port
        own = previous is not None and previous.host_port == port  # its own socket
        holder = self._port_taken(port, spec.name, others, pods, probe=not own)
        if holder:
            raise Conflict(
                f"host port {port}/tcp is already taken by {holder}",
                hint="pick another --port for the proxy",
            )

    def _port_taken(
        self,
        port: int | None,
        name: str,
        others: Iterable[ProxySpec],
        pods: Mapping[str, PodSpec],
        *,
        probe: bool = True,
    ) -> str | None:
        """Who holds ``port``: a pod, a service, another proxy, or (``probe``)
        any process listening on it."""
        for pod in pods.values():
            if any(m.protocol == "tcp" and m.host_port == port for m in pod.ports):
                return f"pod {pod.name!r}"
        for svc in self.repo.services().values():
            if any(p.protocol == "tcp" and p.host_port == port for p in svc.ports):
                return f"service {svc.name!r}"
        for other in others:
            if other.name != name and other.mode == "edge" and other.host_port == port:
                return f"proxy {other.name!r}"
        return self.service.port_holder("tcp", port) if probe and port else None

    def remove_proxy(self, name: str) -> bool:
        """Remove a proxy: its record, its process, its sidecar table. Idempotent."""
        with self.service.lock:
            existed = self.store.delete(Keys.proxy(name))
            self.service.proxies.remove([name])
            return existed

    def proxy_view(self, spec: ProxySpec) -> dict[str, Any]:
        record = self.service.proxies.record(spec.name)
        status = self.service.proxies.status(spec.name)
        state = status.state
        if state == "running" and not self.service.proxies.alive(status):
            state = "exited"
        view = spec.to_dict()
        view["status"] = {**status.to_dict(), "state": state}
        view["argv"] = record.get("argv", [])
        view["log_path"] = str(self.service.proxies.log_path(spec.name))
        view["routes"] = [
            r.name for r in self.repo.routes().values() if not r.proxies or spec.name in r.proxies
        ]
        if spec.mode == "sidecar":
            view["netns"] = netns_name(str(spec.pod), self.settings.netns_prefix)
        return view

    # -- snapshots -------------------------------------------------------------

    def snapshot(self, name: str) -> Snapshot:
        """What proxy ``name`` serves from now, versioned (see the module doc)."""
        revision = self.store.revision()
        proxy = self.proxy(name)
        routes = self.repo.routes().values()
        services, pods, health = self._registry()
        snap = build_snapshot(proxy, 0, routes=routes, services=services, pods=pods, health=health)
        body = json.dumps(snap.to_dict(), sort_keys=True).encode()
        digest = hashlib.sha256(body).hexdigest()
        with self._versions_lock:
            known = self._versions.get(name)
            if known is None or known[0] != digest:
                known = (digest, max(revision, known[1] + 1) if known else revision)
                self._versions[name] = known
        return replace(snap, version=known[1])

    def wait_snapshot(self, name: str, wait: int | None, timeout: float) -> Snapshot | None:
        """The snapshot at once when ``wait`` is None or differs from its version;
        else block until it changes (None after ``timeout`` seconds: "not modified")."""
        deadline = time.monotonic() + timeout
        if wait is not None:  # it holds a snapshot already (e.g. from the agent before)
            self._served[name] = time.time()
        while True:
            revision = self.store.revision()
            snap = self.snapshot(name)
            if wait is None or snap.version != wait:
                self._served[name] = time.time()
                return snap
            if not self._wait_inputs(revision, deadline):
                return None

    def _wait_inputs(self, revision: int, deadline: float) -> bool:
        """Wait for a write under SNAPSHOT_INPUTS after ``revision``; False at deadline."""
        while (left := deadline - time.monotonic()) > 0:
            try:
                events = self.store.watch("/", revision, timeout=min(left, 5.0))
            except StoreConflict:  # history compacted: rebuild and compare
                return True
            if any(e.key.startswith(SNAPSHOT_INPUTS) for e in events):
                return True
            if events:
                revision = events[-1].revision
        return False

    # -- processes -------------------------------------------------------------

    def launches(self) -> dict[str, ProxyLaunch]:
        """How each proxy that can run now runs; a sidecar needs its pod running,
        and takes the pod's traffic once its process has fetched a snapshot."""
        out: dict[str, ProxyLaunch] = {}
        pods = self.repo.pods()
        for name, spec in self.repo.proxies().items():
            netns = None
            if spec.mode == "sidecar":
                pod = pods.get(str(spec.pod))
                if pod is None or not pod.running:
                    continue
                netns = netns_name(pod.name, self.settings.netns_prefix)
            started = self.service.proxies.status(name).started_at
            fed = self._served.get(name, 0.0) >= started > 0  # this process has its routes
            argv = proxy_argv(spec, netns)
            out[name] = ProxyLaunch(name, argv, netns, spec.listen_port, intercept=fed)
        return out

    def vip_pools(self) -> list[IPNetwork]:
        return [
            ipaddress.ip_network(self.settings.service_pool),
            ipaddress.ip_network(self.settings.service_pool6),
        ]

    def sync(self) -> None:
        """Make proxy processes and sidecar tables match the store."""
        if not self.service.reconciler.supervise:
            return
        with self.service.lock:
            self.service.proxies.sync(self.launches(), self.vip_pools())

    # -- topology --------------------------------------------------------------

    def apply_desired(
        self, routes: Mapping[str, RouteSpec], proxies: Mapping[str, ProxySpec], owner: str
    ) -> list[str]:
        """Make ``owner``'s routes and proxies exactly these (``up``/``down``).

        One store commit; a failing process sync rolls it back. Returns the
        change lines (``+ route x``, ``~ proxy y``, ``- route z``).
        """
        with self.service.lock:
            ops, lines = self.plan_desired(routes, proxies, owner)
            if not ops:
                return lines
            rollback = [
                Put(op.key, entry.value) if (entry := self.store.get(op.key)) else Delete(op.key)
                for op in ops
            ]
            changed = [
                op.key.removeprefix(Keys.PROXIES) for op in ops if op.key.startswith(Keys.PROXIES)
            ]
            self.store.commit(ops)
            try:
                self.service.proxies.remove(changed)  # replaced ones restart with the new spec
                self.sync()
            except BaseException:
                self.store.commit(rollback)
                self.sync()
                raise
            return lines

    def plan_desired(
        self,
        routes: Mapping[str, RouteSpec],
        proxies: Mapping[str, ProxySpec],
        owner: str,
        pods: Mapping[str, PodSpec] | None = None,
        services: Collection[str] | None = None,
    ) -> tuple[list[Put | Delete], list[str]]:
        """The store writes and change lines of :meth:`apply_desired`, checked
        (references, ports, foreign owners) but not applied (``--dry-run``)."""
        have_proxies = self.repo.proxies()
        have_routes = self.repo.routes()
        _refuse_foreign("proxy", proxies, have_proxies, owner)
        _refuse_foreign("route", routes, have_routes, owner)
        kept = {n: p for n, p in have_proxies.items() if p.owner != owner}
        for name, spec in proxies.items():
            previous = have_proxies.get(name)
            if previous == spec:
                continue  # unchanged: running already, on its own port
            spec.validate()
            self.admit(spec, [*kept.values(), *proxies.values()], pods, previous)
        future_proxies = {**kept, **proxies}
        if services is None:  # which services the routes may name (default: the store's)
            services = set(self.repo.services())
        for route in routes.values():
            route.validate()
            missing = sorted({b.service for b in route.backends if b.service not in services})
            unknown = sorted(p for p in route.proxies if p not in future_proxies)
            if missing or unknown:
                raise NotFound(
                    f"route {route.name!r} names "
                    + "; ".join(
                        [f"missing service(s) {', '.join(missing)}"] * bool(missing)
                        + [f"missing proxy(ies) {', '.join(unknown)}"] * bool(unknown)
                    ),
                    hint="create the services first; proxies may be in the same file",
                )
        ops, lines = _diff("proxy", Keys.proxy, proxies, have_proxies, owner)
        more, more_lines = _diff("route", Keys.route, routes, have_routes, owner)
        return ops + more, lines + more_lines


class _Owned(Protocol):
    @property
    def owner(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


_T = TypeVar("_T", bound=_Owned)


def _diff(
    kind: str,
    key: Callable[[str], str],
    wanted: Mapping[str, _T],
    have: Mapping[str, _T],
    owner: str,
) -> tuple[list[Put | Delete], list[str]]:
    ops: list[Put | Delete] = []
    lines: list[str] = []
    for name, spec in sorted(wanted.items()):
        old = have.get(name)
        if old != spec:
            ops.append(Put(key(name), spec.to_dict()))
            lines.append(f"{'+' if old is None else '~'} {kind} {name}")
    for name, old in sorted(have.items()):
        if old.owner == owner and name not in wanted:
            ops.append(Delete(key(name)))
            lines.append(f"- {kind} {name}")
    return ops, lines


def _refuse_foreign(
    kind: str, wanted: Mapping[str, Any], have: Mapping[str, Any], owner: str
) -> None:
    clashes = [n for n in wanted if n in have and have[n].owner != owner]
    if clashes:
        raise Conflict(
            f"{kind}(s) {', '.join(sorted(clashes))} already exist outside this topology",
            hint="rename them in the file, or remove the existing ones first",
        )
