"""The whole nft table podnet owns for networks and pods, as one transaction.

Layout of table ``inet <table>`` (the table name is a setting)::

    prerouting  (nat, dstnat)    fib daddr type local -> published_ports
    output      (nat, dstnat)    fib daddr type local -> published_ports
    postrouting (nat, srcnat)    -> outbound_nat
    forward     (filter, filter) -> network_isolation
    published_ports, outbound_nat, network_isolation: regular chains, one rule per need,
    each tagged with a comment naming the network or pod it is for
    set bridges: the bridges of every podnet network

Every apply declares the table and chains (``add`` is idempotent), flushes the
chains and set this module owns and fills them again, all in one transaction,
so the kernel never sees a half-written table. Service maps (kept elsewhere)
are not touched by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from podnet.model.network import Network
from podnet.model.pod import PodSpec
from podnet.rules import isolation, masquerade, published
from podnet.rules.service_layout import MASQUERADE_CHAIN, SERVICES_CHAIN, hook_rules
from podnet.rules.transaction import BaseChain, Rule, Transaction

__all__ = ["BASE_CHAINS", "render_ruleset"]

BASE_CHAINS: dict[str, BaseChain] = {
    "prerouting": BaseChain("nat", "prerouting", "dstnat"),
    "output": BaseChain("nat", "output", "-100"),
    "postrouting": BaseChain("nat", "postrouting", "srcnat"),
    "forward": BaseChain("filter", "forward", "filter"),
}
_JUMPS = [
    Rule("prerouting", f"fib daddr type local jump {published.CHAIN}"),
    Rule("output", f"fib daddr type local jump {published.CHAIN}"),
    Rule("postrouting", f"jump {masquerade.CHAIN}"),
    Rule("forward", f"jump {isolation.CHAIN}"),
]
_REGULAR = (published.CHAIN, masquerade.CHAIN, isolation.CHAIN)


def render_ruleset(table: str, networks: Iterable[Network], pods: Iterable[PodSpec]) -> Transaction:
    """The transaction that makes the table match the desired networks and pods."""
    nets = list(networks)
    by_name: Mapping[str, Network] = {n.name: n for n in nets}
    tx = Transaction(table).add_table()
    for name, base in BASE_CHAINS.items():
        tx.add_chain(name, base)
    for name in _REGULAR:
        tx.add_chain(name)
    # The service chains are filled by rules.services; declared here (not
    # flushed) so the jumps below are valid before the first service sync.
    tx.add_chain(SERVICES_CHAIN)
    tx.add_chain(MASQUERADE_CHAIN)
    tx.add_set(isolation.BRIDGES_SET, "ifname")
    for name in (*BASE_CHAINS, *_REGULAR):
        tx.flush_chain(name)
    tx.flush_set(isolation.BRIDGES_SET)
    tx.add_elements(isolation.BRIDGES_SET, (f'"{n.bridge}"' for n in nets))
    tx.add_rules(_JUMPS)
    tx.add_rules(hook_rules())
    tx.add_rules(published.published_rules(pods, by_name))
    tx.add_rules(masquerade.masquerade_rules(nets))
    tx.add_rules(isolation.isolation_rules(nets))
    return tx
