"""The reconcile loop: read desired state, observe the kernel, plan, apply.

Reconcile is idempotent and works from any starting point, so an agent killed
at any instant converges on restart: what is missing is made again, what
podnet owns and no longer wants is removed. One lock serialises reconciles
within an agent.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from podnet.controller.apply import Executor
from podnet.controller.observe import observe
from podnet.controller.plan import plan
from podnet.controller.processes import Supervisor
from podnet.controller.state import Repository
from podnet.controller.steps import ApplyNft, Step
from podnet.kernel.netlink import Netlink
from podnet.kernel.nft import NftRunner
from podnet.model.names import netns_name
from podnet.model.network import Network
from podnet.model.pod import PodSpec
from podnet.rules import render_ruleset
from podnet.settings import Settings

__all__ = ["Reconciler"]


class Reconciler:
    """Makes the kernel match the store."""

    def __init__(
        self, settings: Settings, repo: Repository, nft: NftRunner, supervisor: Supervisor
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.nft = nft
        self.supervisor = supervisor
        self.lock = threading.RLock()

    def plan(self, networks: Mapping[str, Network], pods: Mapping[str, PodSpec]) -> list[Step]:
        """The steps that would bring the kernel to the given desired state."""
        prefix = self.settings.netns_prefix
        with Netlink(None) as host:
            observed = observe(host, prefix, (netns_name(p, prefix) for p in pods))
        steps = plan(
            networks,
            pods,
            observed,
            table=self.settings.nft_table,
            netns_prefix=prefix,
            owned_netns=self.repo.owned_netns(),
        )
        script = render_ruleset(self.settings.nft_table, networks.values(), pods.values())
        return [*steps, ApplyNft(script.render())]

    def reconcile(self) -> list[Step]:
        """One full pass; returns the steps it took (the nft apply included)."""
        with self.lock:
            networks, pods = self.repo.networks(), self.repo.pods()
            self.supervisor.sync_stopped(pods)
            steps = self.plan(networks, pods)
            with Netlink(None) as host:
                Executor(host, self.repo, self.nft).run(steps)
            self.supervisor.sync(pods)
            return steps

    def teardown(self) -> None:
        """Remove everything this agent owns: processes, netns, bridges, its table."""
        with self.lock:
            self.supervisor.sync_stopped({})
            steps = self.plan({}, {})[:-1]
            with Netlink(None) as host:
                Executor(host, self.repo, self.nft).run(steps)
            if self.nft.list_json("inet", self.settings.nft_table) is not None:
                self.nft.apply(f"delete table inet {self.settings.nft_table}\n")
