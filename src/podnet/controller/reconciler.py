"""The reconcile loop: read desired state, observe the kernel, plan, apply.

Reconcile is idempotent and works from any starting point, so an agent killed
at any instant converges on restart: what is missing is made again, what
podnet owns and no longer wants is removed. One lock serialises reconciles
within an agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping
from ipaddress import ip_network

from podnet.controller.apply import Executor
from podnet.controller.observe import observe
from podnet.controller.plan import plan
from podnet.controller.processes import Supervisor
from podnet.controller.service_index import ServiceIndex
from podnet.controller.state import Keys, Repository
from podnet.controller.steps import ApplyNft, Step
from podnet.dns.resolv import sync_resolv_confs, write_resolv_conf
from podnet.errors import PodnetError, StoreConflict
from podnet.kernel.netlink import Netlink
from podnet.kernel.nft import NftRunner
from podnet.model.names import netns_name
from podnet.model.network import IPNetwork, Network
from podnet.model.pod import PodSpec
from podnet.rules import render_ruleset
from podnet.rules.service_layout import SYNCED_SET
from podnet.rules.services import (
    Inventory,
    ServicesConfig,
    ServicesState,
    render_changes,
    render_full,
)
from podnet.settings import Settings

__all__ = ["Reconciler"]

log = logging.getLogger("podnet.reconciler")


class Reconciler:
    """Makes the kernel match the store."""

    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        nft: NftRunner,
        supervisor: Supervisor,
        *,
        supervise: bool = True,
    ) -> None:
        self.settings = settings
        self.supervise = supervise  # False in a standalone CNI plugin: processes are the agent's
        self.repo = repo
        self.nft = nft
        self.supervisor = supervisor
        self.lock = threading.RLock()
        self._applied: str | None = None  # the ruleset the last pass applied
        self._services_config = ServicesConfig(table=settings.nft_table)
        self._services: ServicesState | None = None  # what the kernel holds; None: unknown
        self._services_revision: int | None = None  # the store revision it was read at
        self.index = ServiceIndex(repo.store)  # services, pods, health: kept from watch events

    def plan(
        self,
        networks: Mapping[str, Network],
        pods: Mapping[str, PodSpec],
        scope: Collection[str] | None = None,
    ) -> list[Step]:
        """The steps that would bring the kernel to the given desired state.

        ``scope`` limits which pods are looked at inside (None: all of them).
        """
        prefix = self.settings.netns_prefix
        looked_at = [p for p in pods if scope is None or p in scope]
        with Netlink(None) as host:
            observed = observe(host, prefix, (netns_name(p, prefix) for p in looked_at))
        steps = plan(
            networks,
            pods,
            observed,
            table=self.settings.nft_table,
            netns_prefix=prefix,
            owned_netns=self.repo.owned_netns(),
            trusted=set(pods) - set(looked_at),
            service_pools=self._service_pools(),
        )
        return [*steps, ApplyNft(self._ruleset(networks, pods))]

    def _ruleset(self, networks: Mapping[str, Network], pods: Mapping[str, PodSpec]) -> str:
        """The networks-and-pods part of the table; CNI attachments count as pods."""
        attached = [a.as_pod() for a in self.repo.attachments()]
        everyone = [*pods.values(), *attached]
        return render_ruleset(self.settings.nft_table, networks.values(), everyone).render()

    def _service_pools(self) -> list[IPNetwork]:
        """The VIP ranges the host must route, when there are services."""
        self.index.refresh()
        vips = [v for spec in self.index.specs().values() for v in spec.vips]
        pools: list[IPNetwork] = []
        for text in (self.settings.service_pool, self.settings.service_pool6):
            pool = ip_network(text)
            if any(v in pool for v in vips):
                pools.append(pool)
        return pools

    def _services_script(self, new: ServicesState, changed: frozenset[str] | None = None) -> str:
        """Full sync when the kernel's service state is unknown, else the changes.

        ``changed``: the services that may differ from the last sync's (None: any).
        """
        if self._services is None:
            existing = self.nft.list_json("inet", self.settings.nft_table)
            inventory = Inventory.from_nft_json(existing) if existing else None
            tx = render_full(
                self._services_config, new.services.values(), new.endpoints, existing=inventory
            )
        else:
            tx = render_changes(self._services_config, self._services, new, only=changed)
        return tx.render()

    def _services_intact(self) -> bool:
        """The kernel still has the services part a full sync put there (its marker set)."""
        return self.nft.has_set("inet", self.settings.nft_table, SYNCED_SET)

    def services_stale(self) -> bool:
        """Whether anything services depend on (services, pods, health) changed
        since the last sync; other writes (process status, records) do not count."""
        synced = self._services_revision
        if synced is None or self._services is None:
            return True
        try:
            return any(
                self.repo.store.watch(prefix, synced, timeout=0)
                for prefix in (Keys.SERVICES, Keys.PODS, Keys.HEALTH)
            )
        except StoreConflict:  # history compacted past it: assume changed
            return True

    def sync_services(self) -> bool:
        """Bring the kernel's service load balancer to the store; True if nft ran.

        Incremental when the kernel's state is known; a change nft refuses is
        retried as a full sync.
        """
        with self.lock:
            started = time.perf_counter()
            self.index.refresh()
            if self._nothing_wanted(self.repo.networks(), self.index.has_pods()):
                return False  # the table is reconcile's to drop, not this sync's to declare
            read = time.perf_counter()
            new, changed = self.index.state(), self.index.take_changes()
            script = self._services_script(new, changed)
            self._services_revision = self.index.revision
            if not script:
                return False
            rendered = time.perf_counter()
            try:
                self.nft.apply(script)
            except PodnetError:
                if self._services is None:
                    raise
                self._services = None
                self.nft.apply(self._services_script(new))
            self._services = new
            done = time.perf_counter()
            log.info(
                "services synced: %s in %.1f ms (store %.1f, render %.1f, nft %.1f)",
                "all" if changed is None else f"{len(changed)} changed",
                (done - started) * 1000,
                (read - started) * 1000,
                (rendered - read) * 1000,
                (done - rendered) * 1000,
            )
            return True

    def sync_rules(self) -> bool:
        """Re-render the nft table and apply it if it changed; True if applied.

        For changes that touch only rules (a CNI attachment's published ports):
        no netlink observation, one nft call at most.
        """
        with self.lock:
            script = self._ruleset(self.repo.networks(), self.repo.pods())
            if script == self._applied:
                return False
            self.nft.apply(script)
            self._applied = script
            return True

    def reconcile(self, scope: Collection[str] | None = None) -> list[Step]:
        """One pass; returns the steps it took (the nft apply included).

        With ``scope`` (the pods an API call changed), other pods' insides are
        not re-read and an unchanged ruleset is not re-applied: one call costs
        the same with 5 pods or 500. Without it, everything is checked.
        """
        with self.lock:
            networks, pods = self.repo.networks(), self.repo.pods()
            if self.supervise:
                self.supervisor.sync_stopped(pods)
            steps = self.plan(networks, pods, scope)
            nft = steps[-1]
            assert isinstance(nft, ApplyNft)
            if self._nothing_wanted(networks, bool(pods)):  # e.g. after `down --all`
                with Netlink(None) as host:
                    Executor(host, self.repo, self.nft).run(steps[:-1])
                self._drop_table()
                return steps[:-1]
            self.index.refresh()
            services, changed = self.index.state(), self.index.take_changes()
            if scope is None and not self._services_intact():
                self._services = None  # lost (e.g. the table was deleted): sync in full
            service_script = self._services_script(services, changed)
            if scope is not None and nft.script == self._applied and not service_script:
                steps = steps[:-1]
            else:  # service chains first: the ruleset's hooks jump to them
                steps[-1] = ApplyNft(service_script + nft.script)
            try:
                with Netlink(None) as host:
                    Executor(host, self.repo, self.nft).run(steps)
            except PodnetError:
                self._services = None  # unknown now: the next pass syncs in full
                raise
            self._applied = nft.script
            self._services, self._services_revision = services, self.index.revision
            if self.supervise:  # resolv.conf first: `ip netns exec` mounts it for the process
                self._resolv_confs(networks, pods, scope)
                self.supervisor.sync(pods)
            return steps

    def _resolv_confs(
        self,
        networks: Mapping[str, Network],
        pods: Mapping[str, PodSpec],
        scope: Collection[str] | None,
    ) -> None:
        if scope is None:
            sync_resolv_confs(self.settings, pods, networks)
            return
        for name in scope:
            pod = pods.get(name)
            if pod is None:
                continue
            try:
                write_resolv_conf(self.settings, pod, networks)
            except OSError as exc:
                log.error("resolv.conf of pod %s: %s", name, exc)

    def teardown(self) -> None:
        """Remove everything this agent owns: processes, netns, bridges, its table."""
        with self.lock:
            self.supervisor.sync_stopped({})
            steps = self.plan({}, {})[:-1]
            with Netlink(None) as host:
                Executor(host, self.repo, self.nft).run(steps)
            sync_resolv_confs(self.settings, {}, {})
            self._drop_table()

    def _nothing_wanted(self, networks: Mapping[str, Network], has_pods: bool) -> bool:
        """No network, pod, attachment or service: podnet's table should not exist."""
        self.index.refresh()
        return not (networks or has_pods or self.repo.attachments() or self.index.specs())

    def _drop_table(self) -> None:
        """Delete podnet's own table (if present); the kernel's state is then known."""
        if self.nft.chain_rules("inet", self.settings.nft_table, "prerouting") is not None:
            self.nft.apply(f"delete table inet {self.settings.nft_table}\n")
        self._applied = None
        self._services = self._services_revision = None  # no service layout: next sync is full
