"""``up`` and ``down``: reconcile desired state to a topology file."""

from __future__ import annotations

from typing import Any

from podnet.agent.admission import admit_pod, resolve_network
from podnet.agent.registry import Registry
from podnet.agent.routes import RouteOps
from podnet.agent.service import Service
from podnet.topology import Topology, plan_changes

__all__ = ["down", "up"]


def up(service: Service, topology: Topology, *, dry_run: bool = False) -> dict[str, Any]:
    """Make podnet match the file: add, replace, remove only what differs.

    Returns the change summary and, with ``dry_run``, the steps a real run takes
    (netlink steps and the nft transaction) without changing anything.
    """
    with service.lock:
        networks, pods = service.repo.networks(), service.repo.pods()
        changes = plan_changes(topology, list(networks.values()), list(pods.values()))
        removed_pods = set(changes.remove_pods) | {p.name for p in changes.replace_pods}
        new_pods = {n: p for n, p in pods.items() if n not in removed_pods}
        dropped = set(changes.remove_networks) | {r.name for r in changes.replace_networks}
        new_nets = {n: net for n, net in networks.items() if n not in dropped}
        routes = service.routes_for_overlap()
        for req in (*changes.replace_networks, *changes.add_networks):
            new_nets[req.name] = resolve_network(req, new_nets, routes, service.settings)
        alloc = service.allocations(new_pods.values())
        for spec in (*changes.replace_pods, *changes.add_pods):
            new_pods[spec.name] = admit_pod(spec, new_nets, alloc, service.port_holder)
        registry = Registry(service)  # services, routes, proxies: checked before any change
        services = {s.name: s for s in topology.services}
        service_changes = registry.plan_desired(services, topology.owner)
        future = {n for n, s in service.repo.services().items() if s.owner != topology.owner}
        l7 = RouteOps(service)
        l7_routes = {r.name: r for r in topology.routes}
        proxies = {p.name: p for p in topology.proxies}
        _, l7_changes = l7.plan_desired(
            l7_routes, proxies, topology.owner, new_pods, services=future | set(services)
        )
        summary = changes.summary() + service_changes + l7_changes
        result: dict[str, Any] = {"topology": topology.name, "changes": summary}
        if dry_run:
            steps = service.reconciler.plan(new_nets, new_pods)
            result["steps"] = [step.describe() for step in steps]
            return result
        service.apply_desired(new_nets, new_pods, stop=removed_pods)
        registry.apply_desired(services, topology.owner)
        l7.apply_desired(l7_routes, proxies, topology.owner)  # sidecars need their pods first
        return result


def down(service: Service, owner: str | None) -> dict[str, Any]:
    """Remove every network and pod of one topology (``owner``), or all (None)."""
    with service.lock:
        networks, pods = service.repo.networks(), service.repo.pods()

        def mine(obj_owner: str) -> bool:
            return owner is None or obj_owner == owner

        l7 = RouteOps(service)  # first: sidecars run inside the pods
        registry = Registry(service)
        l7_changes = []
        for gone_owner in sorted({owner} if owner is not None else _l7_owners(l7)):
            l7_changes += l7.apply_desired({}, {}, gone_owner)
        owners = {s.owner for s in service.repo.services().values() if s.owner}
        for gone_owner in sorted({owner} if owner is not None else owners):
            l7_changes += registry.apply_desired({}, gone_owner)
        gone_pods = sorted(n for n, p in pods.items() if mine(p.owner))
        gone_nets = sorted(n for n, net in networks.items() if mine(net.owner))
        kept_nets = {n: net for n, net in networks.items() if n not in gone_nets}
        kept_pods = {n: p for n, p in pods.items() if n not in gone_pods}
        service.apply_desired(kept_nets, kept_pods, stop=gone_pods)
        return {
            "changes": l7_changes
            + [f"- pod {n}" for n in gone_pods]
            + [f"- network {n}" for n in gone_nets]
        }


def _l7_owners(l7: RouteOps) -> set[str]:
    """Every owner of a route or proxy (``down --all`` removes them all)."""
    owners = {r.owner for r in l7.repo.routes().values()}
    return owners | {p.owner for p in l7.repo.proxies().values()}
