"""Source NAT: masquerade for traffic leaving a network's subnet, hairpin and
published ports reached from the host's own 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterable

from podnet.model.network import Network
from podnet.rules.transaction import Rule

__all__ = ["CHAIN", "masquerade_rules"]

CHAIN = "outbound_nat"


def _family(version: int) -> str:
    return "ip" if version == 4 else "ip6"


def masquerade_rules(networks: Iterable[Network]) -> list[Rule]:
    """Rules of the ``outbound_nat`` chain (jumped to from nat postrouting).

    - outbound: a pod's traffic to anywhere outside its subnet leaves with the
      host's address (unless the network opts out or is internal);
    - hairpin: a pod reaching a published port whose DNAT sends it back onto its
      own bridge is masqueraded, so the answer comes back through the host;
    - localhost: 127.0.0.1 → published port is masqueraded to the gateway
      (the bridge also gets route_localnet=1, set by the controller).
    """
    rules: list[Rule] = []
    for net in sorted(networks, key=lambda n: n.name):
        tag = f"network:{net.name}"
        for subnet in net.subnets:
            fam = _family(subnet.version)
            if net.masquerade and not net.internal:
                rules.append(
                    Rule(CHAIN, f"{fam} saddr {subnet} {fam} daddr != {subnet} masquerade", tag)
                )
            rules.append(
                Rule(
                    CHAIN,
                    f'oifname "{net.bridge}" {fam} saddr {subnet} ct status dnat masquerade',
                    f"{tag}:hairpin",
                )
            )
        if net.subnet_for(4) is not None and not net.internal:
            rules.append(
                Rule(
                    CHAIN,
                    f'oifname "{net.bridge}" ip saddr 127.0.0.0/8 ct status dnat masquerade',
                    f"{tag}:localhost",
                )
            )
    return rules
