"""Address management, pure: pick free subnets from a pool, hand out addresses.

Nothing here reads or writes state. The caller passes what is in use (routes,
networks, leases) and records what it was given; the store's compare-and-swap
makes two concurrent allocations of one address impossible.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Iterator, Mapping

from podnet.errors import Conflict, InvalidInput
from podnet.model.network import IPAddress, IPNetwork

__all__ = ["allocate", "find_overlap", "pick_subnet", "reserved_addresses"]

# How many /64s of an IPv6 pool, or addresses of a subnet, one search looks at
# before giving up: bounded work even for a /48 or a /64.
_SEARCH_LIMIT = 1 << 20


def find_overlap(subnet: IPNetwork, existing: Mapping[str, Iterable[IPNetwork]]) -> str | None:
    """The name of the first entry whose subnets overlap ``subnet``, or None."""
    for name, subnets in existing.items():
        for other in subnets:
            if other.version == subnet.version and other.overlaps(subnet):
                return f"{name} ({other})"
    return None


def _candidates(pool: IPNetwork, prefixlen: int) -> Iterator[IPNetwork]:
    if prefixlen < pool.prefixlen:
        raise InvalidInput(
            f"a /{prefixlen} subnet does not fit in pool {pool}",
            hint="use a longer prefix, or a wider pool (PODNET_SUBNET_POOL / PODNET_IPV6_POOL)",
        )
    step = 1 << (pool.max_prefixlen - prefixlen)
    base = int(pool.network_address)
    count = min(1 << (prefixlen - pool.prefixlen), _SEARCH_LIMIT)
    for i in range(count):
        yield ipaddress.ip_network((base + i * step, prefixlen))


def pick_subnet(pool: IPNetwork, prefixlen: int, avoid: Iterable[IPNetwork]) -> IPNetwork:
    """The first ``/prefixlen`` of ``pool`` that overlaps nothing in ``avoid``.

    Raises:
        Conflict: the pool has no free subnet left.
    """
    taken = [n for n in avoid if n.version == pool.version]
    for candidate in _candidates(pool, prefixlen):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise Conflict(
        f"no free /{prefixlen} subnet left in pool {pool}",
        hint="remove unused networks, give --subnet explicitly, or widen PODNET_SUBNET_POOL",
    )


def reserved_addresses(subnet: IPNetwork, gateway: IPAddress | None) -> set[IPAddress]:
    """Addresses never handed to pods: network, broadcast (IPv4) and gateway."""
    reserved: set[IPAddress] = {subnet.network_address}
    if subnet.version == 4:
        reserved.add(subnet.broadcast_address)
    if gateway is not None:
        reserved.add(gateway)
    return reserved


def allocate(
    subnet: IPNetwork,
    *,
    used: Collection[IPAddress],
    reserved: Collection[IPAddress] = (),
    after: IPAddress | None = None,
) -> IPAddress:
    """The next free address of ``subnet`` after ``after``, wrapping around.

    Handing addresses out round robin (as CNI host-local does) keeps a just
    released address from being reused at once by the next pod.

    Raises:
        Conflict: every address of the subnet is taken.
    """
    first = int(subnet.network_address)
    size = min(subnet.num_addresses, _SEARCH_LIMIT)
    start = (int(after) - first + 1) % size if after is not None and after in subnet else 0
    for i in range(size):
        candidate = ipaddress.ip_address(first + (start + i) % size)
        if candidate not in used and candidate not in reserved:
            return candidate
    raise Conflict(
        f"subnet {subnet} has no free address left",
        hint="remove pods from it or create a network with a larger subnet",
    )
