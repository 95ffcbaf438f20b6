"""Isolation between networks, and no way out of an internal network."""

from __future__ import annotations

from collections.abc import Iterable

from podnet.model.network import Network
from podnet.rules.transaction import Rule

__all__ = ["BRIDGES_SET", "CHAIN", "isolation_rules"]

CHAIN = "network_isolation"
BRIDGES_SET = "bridges"


def isolation_rules(networks: Iterable[Network]) -> list[Rule]:
    """Rules of the ``network_isolation`` chain (jumped to from filter forward).

    Order matters: internal networks drop everything routed in or out first;
    then connections to published ports (DNAT) are let through, as Docker does,
    so a pod on one network can use a port another network's pod publishes on
    the host; then traffic routed from one podnet bridge to another is dropped.
    Pods attached to two networks talk to both directly, not through the host.
    """
    nets = sorted(networks, key=lambda n: n.name)
    rules: list[Rule] = []
    for net in nets:
        if net.internal:
            tag = f"network:{net.name}:internal"
            rules.append(Rule(CHAIN, f'iifname "{net.bridge}" oifname != "{net.bridge}" drop', tag))
            rules.append(Rule(CHAIN, f'oifname "{net.bridge}" iifname != "{net.bridge}" drop', tag))
    rules.append(Rule(CHAIN, "ct status dnat accept", "published-ports"))
    for net in nets:
        if not net.internal:
            rules.append(
                Rule(
                    CHAIN,
                    f'iifname "{net.bridge}" oifname @{BRIDGES_SET} oifname != "{net.bridge}" drop',
                    f"network:{net.name}:isolation",
                )
            )
    return rules
