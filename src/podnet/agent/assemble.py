"""Build the service layer for one node: store, repository, reconciler, service.

The agent and a standalone ``podnet-cni`` (no agent running) assemble the same
parts, so both paths act on the same state in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from podnet.agent.service import Service
from podnet.controller.observe import device_routes
from podnet.controller.processes import Supervisor
from podnet.controller.reconciler import Reconciler
from podnet.controller.state import Repository
from podnet.kernel import sockets
from podnet.kernel.netlink import Netlink
from podnet.kernel.nft import Nft
from podnet.model.network import IPNetwork
from podnet.settings import Settings
from podnet.store import Store, open_store

__all__ = ["Node", "assemble", "host_routes"]


def host_routes() -> list[tuple[IPNetwork, str]]:
    """The host's routes as (destination, device), for subnet overlap checks."""
    with Netlink(None) as nl:
        names = {link.index: link.name for link in nl.links()}
        return [
            (dst, dev)
            for dst, dev in device_routes(nl, names)
            if not dst.is_link_local and dst.prefixlen > 0
        ]


@dataclass(frozen=True, slots=True)
class Node:
    settings: Settings
    store: Store
    reconciler: Reconciler
    service: Service


def assemble(settings: Settings, *, supervise: bool = True) -> Node:
    """The parts of one node; ``supervise=False`` leaves pod processes alone."""
    store = open_store(settings.store_url)
    repo = Repository(store)
    supervisor = Supervisor(
        repo,
        netns_prefix=settings.netns_prefix,
        log_dir=settings.state_dir / "logs",
        run_dir=settings.run_dir,
    )
    reconciler = Reconciler(settings, repo, Nft(None), supervisor, supervise=supervise)
    service = Service(store, reconciler, host_routes=host_routes, port_holder=sockets.port_holder)
    return Node(settings, store, reconciler, service)
