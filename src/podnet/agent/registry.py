"""The service registry: create, inspect and remove services.

A service gets a virtual IP per IP version from the service ranges (IPv6 when
any network is dual stack), unless it is headless; its host ports are checked
against pods' published ports and other services'. Endpoints are derived
(selector over pods, or manual), their readiness comes from health checks,
and the kernel follows through ``Reconciler.sync_services``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from podnet.agent.service import Service
from podnet.controller.state import Keys
from podnet.errors import AlreadyExists, Conflict, NotFound
from podnet.ipam import allocate
from podnet.lb.endpoints import endpoints_of
from podnet.model.network import IPAddress, IPNetwork
from podnet.model.service import ServiceSpec
from podnet.store.base import Delete, Put

__all__ = ["Registry"]

VIP_LEASES = "/vip-leases/"


class Registry:
    """Services on one node (or cluster, with a shared store)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.repo = service.repo
        self.settings = service.settings

    def get(self, name: str) -> ServiceSpec:
        spec = self.repo.service(name)
        if spec is None:
            raise NotFound(
                f"service {name!r} does not exist", hint="list services with 'podnet service ls'"
            )
        return spec

    def create(self, spec: ServiceSpec) -> ServiceSpec:
        spec.validate()
        with self.service.lock:
            if self.repo.service(spec.name) is not None:
                raise AlreadyExists(
                    f"service {spec.name!r} already exists",
                    hint="choose another name or remove it with 'podnet service rm'",
                )
            self._check_host_ports(spec)
            vips = () if spec.headless else self._vips()
            spec = replace(spec, vips=vips)
            ops: list[Put | Delete] = [Put(Keys.service(spec.name), spec.to_dict())]
            expect = {Keys.service(spec.name): 0}
            for vip in vips:
                ops.append(Put(f"{VIP_LEASES}{vip}", {"service": spec.name}))
                expect[f"{VIP_LEASES}{vip}"] = 0
            self.service.store.commit(ops, expect=expect)
            try:  # scoped: services and the host's VIP route, no pod is re-read
                self.service.reconciler.reconcile(scope=())
            except BaseException:
                self._delete_records(spec)
                self.service.reconciler.reconcile(scope=())
                raise
            return spec

    def remove(self, name: str) -> bool:
        with self.service.lock:
            spec = self.repo.service(name)
            if spec is None:
                return False
            self._delete_records(spec)
            self.service.reconciler.reconcile(scope=())
            return True

    # -- topology files: a whole owner's services at once ---------------------------------

    def plan_desired(self, services: Mapping[str, ServiceSpec], owner: str) -> list[str]:
        """The change lines (``+``, ``~``, ``-``) that make ``owner``'s services
        exactly ``services``; refuses to take over services someone else owns."""
        have = self.repo.services()
        foreign = sorted(n for n in services if n in have and have[n].owner != owner)
        if foreign:
            who = have[foreign[0]].owner or "the CLI"
            raise Conflict(
                f"service(s) {', '.join(foreign)} exist already, owned by {who}",
                hint="remove them first ('podnet service rm'), or rename them in the file",
            )
        lines = []
        for name, spec in sorted(services.items()):
            old = have.get(name)
            if old is None or not _same(old, spec):
                lines.append(f"{'+' if old is None else '~'} service {name}")
        lines += [
            f"- service {n}"
            for n, s in sorted(have.items())
            if s.owner == owner and n not in services
        ]
        return lines

    def apply_desired(self, services: Mapping[str, ServiceSpec], owner: str) -> list[str]:
        """Make ``owner``'s services exactly ``services``: create, change (VIPs
        kept), remove. Services this call created are removed again if a later
        one fails. Returns the change lines."""
        with self.service.lock:
            lines = self.plan_desired(services, owner)
            have = self.repo.services()
            created: list[str] = []
            try:
                for name, spec in sorted(services.items()):
                    old = have.get(name)
                    if old is None:
                        self.create(spec)
                        created.append(name)
                    elif not _same(old, spec):
                        self._change(old, spec)
                for name, old in sorted(have.items()):
                    if old.owner == owner and name not in services:
                        self.remove(name)
            except BaseException:
                for name in created:
                    self.remove(name)
                raise
            return lines

    def _change(self, old: ServiceSpec, spec: ServiceSpec) -> None:
        """Replace ``old`` by ``spec`` in place, keeping its VIPs (a headless
        switch needs new ones: then it is removed and created)."""
        if old.headless != spec.headless:
            self.remove(old.name)
            self.create(spec)
            return
        spec = replace(spec.validate(), vips=old.vips)
        self._check_host_ports(spec)
        self.service.store.put(Keys.service(spec.name), spec.to_dict())
        self.service.reconciler.reconcile(scope=())

    def _delete_records(self, spec: ServiceSpec) -> None:
        ops: list[Put | Delete] = [Delete(Keys.service(spec.name))]
        ops += [Delete(f"{VIP_LEASES}{vip}") for vip in spec.vips]
        ops += [Delete(e.key) for e in self.service.store.list(f"{Keys.HEALTH}{spec.name}/")]
        self.service.store.commit(ops)

    def _vips(self) -> tuple[IPAddress, ...]:
        used = {
            ipaddress.ip_address(e.key.removeprefix(VIP_LEASES))
            for e in self.service.store.list(VIP_LEASES)
        }
        pools: list[IPNetwork] = [ipaddress.ip_network(self.settings.service_pool)]
        if any(n.subnet_for(6) for n in self.repo.networks().values()):
            pools.append(ipaddress.ip_network(self.settings.service_pool6))
        return tuple(
            allocate(pool, used=used, reserved={pool.network_address}, after=None) for pool in pools
        )

    def _check_host_ports(self, spec: ServiceSpec) -> None:
        wanted = [(p.protocol, p.host_port) for p in spec.ports if p.host_port]
        if not wanted:
            return
        taken: dict[tuple[str, int], str] = {}
        for pod in self.repo.pods().values():
            for m in pod.ports:
                taken[(m.protocol, m.host_port)] = f"pod {pod.name!r}"
        for other in self.repo.services().values():
            if other.name == spec.name:
                continue  # its own ports (a service being replaced)
            for p in other.ports:
                if p.host_port:
                    taken[(p.protocol, p.host_port)] = f"service {other.name!r}"
        for proto, port in wanted:
            holder = taken.get((proto, port)) or self.service.port_holder(proto, port)
            if holder:
                raise Conflict(
                    f"host port {port}/{proto} is already taken by {holder}",
                    hint="pick another host port for the service",
                )

    def view(self, spec: ServiceSpec) -> dict[str, Any]:
        """A service as ``service ls/inspect`` show it, endpoints with their health."""
        pods = list(self.repo.pods().values())
        health = self.repo.health()
        endpoints = []
        for ep in endpoints_of(spec, pods):
            state = health.get((spec.name, str(ep.address)), "unknown")
            ready = ep.weight > 0 and (spec.health.kind == "none" or state == "healthy")
            entry = ep.to_dict()
            entry.update(health=state if spec.health.kind != "none" else "not checked")
            entry.update(ready=ready)
            endpoints.append(entry)
        out = spec.to_dict()
        out["endpoints"] = endpoints
        out["manual_endpoints"] = [e.to_dict() for e in spec.endpoints]
        return out


def _same(old: ServiceSpec, new: ServiceSpec) -> bool:
    """Equal but for the VIPs, which the registry gives."""
    return replace(old, vips=()) == replace(new, vips=())
