"""Kernel adapters: the only code in podnet that touches the kernel's network state.

- :mod:`~podnet.kernel.netns` — named network namespaces and ``run_in``.
- :mod:`~podnet.kernel.netlink` — links, addresses, routes (pyroute2).
- :mod:`~podnet.kernel.nft` — nftables transactions (``nft -f -``) and a fake.
- :mod:`~podnet.kernel.sysctl` — ``/proc/sys`` in a netns.

Each is thin and typed and raises only podnet's errors
(:class:`~podnet.errors.AlreadyExists`, :class:`~podnet.errors.NotFound`,
:class:`~podnet.errors.KernelError`, :class:`~podnet.errors.InvalidInput`).
"""

from podnet.kernel import netns, sysctl
from podnet.kernel.netlink import Address, Link, Netlink, Route
from podnet.kernel.netns import run_in
from podnet.kernel.nft import FakeNft, Nft, NftRunner

__all__ = [
    "Address",
    "FakeNft",
    "Link",
    "Netlink",
    "Nft",
    "NftRunner",
    "Route",
    "netns",
    "run_in",
    "sysctl",
]
