"""The sidecar's interception rules, inside a pod's netns. Pure.

A sidecar proxy listens on the pod's loopback. One table owned by podnet in
the pod's netns (:data:`SIDECAR_TABLE`) has a nat chain on the output hook that
redirects the pod's TCP connections to the service VIP ranges to the proxy's
port; the proxy reads the original destination (SO_ORIGINAL_DST) and routes by
it. The proxy itself connects to endpoint pod addresses, never to VIPs, so its
own connections are not redirected again: no loop, no uid exclusion needed.

``redirect`` sends IPv4 to 127.0.0.1 and IPv6 to ::1: the proxy listens on
both (on ::1 only when the pod's loopback has IPv6), with IP6T_SO_ORIGINAL_DST
for the IPv6 destination.

The transaction declares the table, deletes it and declares it again in one
``nft -f -``: applied any number of times it leaves exactly this content, and
it is atomic (a pod never sees a half-made table).
"""

from __future__ import annotations

from collections.abc import Iterable

from podnet.model.network import IPNetwork
from podnet.rules.transaction import BaseChain, Rule, Transaction

__all__ = ["SIDECAR_CHAIN", "SIDECAR_TABLE", "render_sidecar", "render_sidecar_removal"]

SIDECAR_TABLE = "podnet-sidecar"
SIDECAR_CHAIN = "output"
_OUTPUT_NAT = BaseChain("nat", "output", "-100")


def render_sidecar(
    proxy: str, listen_port: int, pools: Iterable[IPNetwork], *, table: str = SIDECAR_TABLE
) -> str:
    """The whole sidecar table for ``proxy`` listening on ``listen_port``.

    Args:
        proxy: the proxy's name (in the rules' comments).
        listen_port: where the proxy listens on 127.0.0.1.
        pools: the service VIP ranges (IPv4 and IPv6).
    """
    tx = Transaction(table).add_table().delete_table().add_table()
    tx.add_chain(SIDECAR_CHAIN, _OUTPUT_NAT, comment=f"podnet sidecar {proxy}")
    rules = [
        Rule(
            SIDECAR_CHAIN,
            f"{'ip' if pool.version == 4 else 'ip6'} daddr {pool} meta l4proto tcp "
            f"redirect to :{listen_port}",
            f"podnet sidecar {proxy}: service VIPs to the proxy",
        )
        for pool in pools
    ]
    tx.add_rules(rules)
    return tx.render()


def render_sidecar_removal(*, table: str = SIDECAR_TABLE) -> str:
    """Delete the sidecar table (declared first, so a missing one is no error)."""
    return Transaction(table).add_table().delete_table().render()
