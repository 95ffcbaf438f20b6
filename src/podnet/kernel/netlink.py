"""Links, addresses and routes over rtnetlink (pyroute2), bound to one netns.

Theory of operation: a :class:`Netlink` owns one pyroute2 ``IPRoute`` whose
socket was created by a worker thread pinned inside the target netns (see
``_pinned``), so every request goes to that namespace and the object can be
shared by threads. Requests name interfaces directly (the kernel resolves
``IFLA_IFNAME``), so one operation is one or two round trips, never a dump.

A veth pair is created in one request with its peer placed straight into the
peer's netns (``IFLA_NET_NS_FD`` in the peer's attributes): both ends appear
at once, each where it belongs, so a crash cannot strand a half-made pair,
and no device is ever moved between namespaces (a move waits for an RCU grace
period, about 17 ms here, against under 1 ms for the whole creation). Setting
the peer's alias then needs a socket in the peer's netns; those are opened on
first use and kept until :meth:`Netlink.close`.

Errors come back as podnet's: EEXIST -> AlreadyExists, ENOENT/ENODEV ->
NotFound, anything else -> KernelError, each naming the object and netns.
Deleting something missing is success (returns False).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from ipaddress import ip_network
from types import TracebackType
from typing import Any

from podnet.errors import AlreadyExists, InvalidInput, NotFound
from podnet.kernel import netns as _netns
from podnet.kernel._errors import translated, where
from podnet.kernel._pinned import PinnedIPRoute
from podnet.kernel._rtnl import (
    Address,
    IPAddress,
    IPInterface,
    IPNetwork,
    Link,
    Route,
    address_from_msg,
    family_of,
    link_from_msg,
    route_from_msg,
)

__all__ = ["Address", "Link", "Netlink", "Route"]

_IFA_F_NODAD = 0x02
_BRPORT_MODE_HAIRPIN = 1


class Netlink:
    """rtnetlink in one network namespace; use as a context manager.

    ``Netlink(None)`` works in the netns of the thread that constructs it
    (the process's own, unless that thread was moved by ``netns.run_in``).
    That same netns is where ``add_veth(..., peer_netns=None)`` puts peers.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._where = where(netns)
        # The caller's netns is captured now so that peer_netns=None still
        # means "here" when this object's netns is a pod's.
        self._home_fd = _netns.open_fd(None)
        self._lock = threading.Lock()
        self._sockets: dict[str | None, PinnedIPRoute] = {}
        # name -> ifindex, learnt from lookups; dropped on delete or on a miss.
        self._indexes: dict[str, int] = {}
        # Releases threads, sockets and the fd even if close() is forgotten;
        # not at interpreter exit, when the worker threads may be gone.
        self._release = weakref.finalize(self, _release, self._sockets, self._home_fd)
        self._release.atexit = False
        try:
            self._main = self._socket_in(netns)
        except BaseException:
            self.close()
            raise

    def _socket_in(self, netns: str | None) -> PinnedIPRoute:
        """The socket in ``netns`` (None: the home netns), opened on first use."""
        with self._lock:
            if netns not in self._sockets:
                self._sockets[netns] = self._open_socket(netns)
            return self._sockets[netns]

    def _open_socket(self, netns: str | None) -> PinnedIPRoute:
        if netns is None:
            return PinnedIPRoute(self._home_fd, None)
        fd = _netns.open_fd(netns)
        try:
            return PinnedIPRoute(fd, netns)
        finally:
            os.close(fd)  # the pinned thread holds the netns now

    def __enter__(self) -> Netlink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Netlink(netns={self.netns!r})"

    def close(self) -> None:
        """Close the sockets and stop their threads; safe to call twice."""
        self._release()

    def _run(self, what: str, request: Any) -> Any:
        """Run ``request(ipr)`` in this netns, translating errors about ``what``."""
        return self._request(lambda: self._main, f"{what} in {self._where}", request)

    def _run_in(self, netns: str | None, what: str, request: Any) -> Any:
        """Like :meth:`_run`, in another netns (None: the home netns)."""
        return self._request(lambda: self._socket_in(netns), f"{what} in {where(netns)}", request)

    def _request(self, sock: Callable[[], PinnedIPRoute], what: str, request: Any) -> Any:
        if not self._release.alive:
            raise RuntimeError(f"{self!r} is closed")
        with translated(what):
            return sock().run(request)

    # -- links ---------------------------------------------------------------

    def links(self) -> list[Link]:
        """All interfaces of the netns."""
        return [link_from_msg(m) for m in self._run("listing links", lambda i: i.link("dump"))]

    def link(self, name: str) -> Link | None:
        """The interface called ``name``, or None (one RTM_GETLINK, no dump)."""
        try:
            return self._get(name)
        except NotFound:
            return None

    def ifindex(self, name: str) -> int:
        """The index of interface ``name``; raises NotFound if there is none.

        Indexes are remembered: a pod set-up asks for the same few interfaces
        a dozen times, and each lookup is a round trip to the kernel.
        """
        index = self._indexes.get(name)
        return index if index is not None else self._get(name).index

    def _get(self, name: str) -> Link:
        msgs = self._run(f"looking up link {name!r}", lambda i: i.link("get", ifname=name))
        link = link_from_msg(msgs[0])
        self._indexes[name] = link.index
        return link

    def _by_index(self, name: str, request: Callable[[int], None]) -> None:
        """Run ``request(ifindex)``; on a stale remembered index, look up once more."""
        index = self.ifindex(name)
        try:
            request(index)
        except NotFound:
            if self._indexes.pop(name, None) is None:
                raise
            request(self.ifindex(name))

    def add_bridge(self, name: str, *, mtu: int = 1500, alias: str | None = None) -> Link:
        """Create a Linux bridge (left down; see :meth:`set_up`).

        Raises:
            AlreadyExists: an interface called ``name`` exists.
        """
        what = f"creating bridge {name!r}"
        self._run(what, lambda i: i.link("add", ifname=name, kind="bridge", mtu=mtu))
        # The kernel ignores IFLA_IFALIAS on creation, hence a second request.
        return self._finish_new_link(name, alias)

    def _finish_new_link(self, name: str, alias: str | None) -> Link:
        try:
            if alias is not None:
                self.set_alias(name, alias)
            return self._get(name)
        except BaseException:
            self.delete_link(name)  # roll back: never leave a half-made link
            raise

    def add_veth(
        self,
        name: str,
        peer_name: str,
        *,
        peer_netns: str | None,
        mtu: int = 1500,
        peer_alias: str | None = None,
    ) -> Link:
        """Create a veth pair: ``name`` here, ``peer_name`` in ``peer_netns``.

        One request creates both ends, each in its own netns (see the module
        docstring): a crash leaves either the whole pair or nothing, and
        deleting this netns deletes the pair.

        Args:
            name: this end, in this object's netns.
            peer_name: the other end, in ``peer_netns``.
            peer_netns: where the peer goes; None is the netns of the thread
                that constructed this object.
            mtu: for both ends.
            peer_alias: ownership tag for the peer.

        Returns:
            This end.

        Raises:
            AlreadyExists: ``name`` is taken here or ``peer_name`` there.
            NotFound: ``peer_netns`` does not exist.
        """
        peer_fd = self._home_fd if peer_netns is None else _netns.open_fd(peer_netns)
        try:
            peer = {"ifname": peer_name, "mtu": mtu, "net_ns_fd": peer_fd}
            what = f"creating veth {name!r} (peer {peer_name!r} in {where(peer_netns)})"
            self._run(what, lambda i: i.link("add", ifname=name, kind="veth", mtu=mtu, peer=peer))
        finally:
            if peer_fd != self._home_fd:
                os.close(peer_fd)
        try:
            if peer_alias is not None:
                what = f"setting alias of veth peer {peer_name!r}"
                self._run_in(
                    peer_netns, what, lambda i: i.link("set", ifname=peer_name, ifalias=peer_alias)
                )
            return self._get(name)
        except BaseException:
            self.delete_link(name)  # roll back: deleting one end deletes both
            raise

    def create_veth(
        self,
        name: str,
        peer_name: str,
        *,
        peer_netns: str | None,
        mtu: int,
        mac: str,
        peer_mac: str,
        master: str | None = None,
    ) -> None:
        """Like :meth:`add_veth`, in exactly one request and no lookup after it:
        this end is created up, with its MAC, already on ``master``; the peer
        (left down) gets ``peer_mac``. For hot paths (a CNI ADD)."""
        attrs: dict[str, Any] = {"mtu": mtu, "address": mac, "state": "up"}
        if master is not None:
            attrs["master"] = self.ifindex(master)
        peer_fd = self._home_fd if peer_netns is None else _netns.open_fd(peer_netns)
        try:
            peer = {"ifname": peer_name, "mtu": mtu, "net_ns_fd": peer_fd, "address": peer_mac}
            what = f"creating veth {name!r} (peer {peer_name!r} in {where(peer_netns)})"
            self._run(what, lambda i: i.link("add", ifname=name, kind="veth", peer=peer, **attrs))
        finally:
            if peer_fd != self._home_fd:
                os.close(peer_fd)

    def set_alias(self, name: str, alias: str) -> None:
        """Set the interface alias (``ip link set NAME alias ALIAS``)."""
        self._set(name, f"setting alias of {name!r}", ifalias=alias)

    def set_master(self, name: str, bridge: str | None) -> None:
        """Attach ``name`` to ``bridge``, or detach it from any bridge (None)."""
        if bridge is None:
            self._set(name, f"detaching {name!r} from its bridge", master=0)
        else:
            what = f"attaching {name!r} to bridge {bridge!r}"
            self._by_index(bridge, lambda master: self._set(name, what, master=master))

    def set_up(self, name: str) -> None:
        """Bring the interface administratively up."""
        self._set(name, f"bringing up {name!r}", state="up")

    def set_mac(self, name: str, mac: str) -> None:
        """Set the interface's hardware address."""
        self._set(name, f"setting address {mac} on {name!r}", address=mac)

    def set_mtu(self, name: str, mtu: int) -> None:
        """Set the interface MTU."""
        self._set(name, f"setting mtu {mtu} on {name!r}", mtu=mtu)

    def _set(self, name: str, what: str, **attrs: Any) -> None:
        self._run(what, lambda i: i.link("set", ifname=name, **attrs))

    def set_bridge_port(self, name: str, *, hairpin: bool, learning: bool | None = None) -> None:
        """Set bridge-port flags of an enslaved interface.

        Args:
            hairpin: let frames go back out of the port they came in on, so a
                pod reaches itself through a published port.
            learning: MAC learning on this port; None leaves it as it is.
        """
        flags: dict[str, int] = {"mode": _BRPORT_MODE_HAIRPIN if hairpin else 0}
        if learning is not None:
            flags["learning"] = int(learning)
        what = f"setting bridge port flags of {name!r}"
        self._run(what, lambda i: i.brport("set", ifname=name, **flags))

    def delete_link(self, name: str) -> bool:
        """Delete the interface (and a veth's peer); True if it existed."""
        self._indexes.pop(name, None)
        try:
            self._run(f"deleting link {name!r}", lambda i: i.link("del", ifname=name))
        except NotFound:
            return False
        return True

    # -- addresses -------------------------------------------------------------

    def addresses(self, name: str | None = None) -> list[Address]:
        """Addresses of interface ``name``, or of every interface."""
        index = None if name is None else self.ifindex(name)
        msgs = self._run("listing addresses", lambda i: i.addr("dump"))
        found = (address_from_msg(m) for m in msgs)
        return [a for a in found if index is None or a.ifindex == index]

    def add_address(self, name: str, interface: IPInterface) -> None:
        """Add an address; already present is fine.

        IPv6 addresses skip duplicate address detection (IFA_F_NODAD): podnet
        allocated them, and a tentative address cannot be bound for ~1 s.
        """
        flags = _IFA_F_NODAD if interface.version == 6 else 0
        what = f"adding address {interface} to {name!r}"

        def add(index: int) -> None:
            with contextlib.suppress(AlreadyExists):
                self._run(
                    what, lambda i: i.addr("add", **_addr_args(index, interface), flags=flags)
                )

        self._by_index(name, add)

    def del_address(self, name: str, interface: IPInterface) -> bool:
        """Remove an address; True if it was there (a missing link counts as not)."""
        what = f"removing address {interface} from {name!r}"
        try:
            index = self.ifindex(name)
            self._run(what, lambda i: i.addr("del", **_addr_args(index, interface)))
        except NotFound:
            return False
        return True

    # -- routes ----------------------------------------------------------------

    def routes(self, version: int) -> list[Route]:
        """Unicast routes of the main table for IP ``version`` (4 or 6)."""
        family = family_of(version)
        msgs = self._run(f"listing IPv{version} routes", lambda i: i.route("dump", family=family))
        found = (route_from_msg(m) for m in msgs)
        return [r for r in found if r is not None]

    def add_route(
        self,
        dst: IPNetwork | None,
        *,
        gateway: IPAddress | None = None,
        ifname: str | None = None,
        version: int | None = None,
    ) -> None:
        """Add or replace a main-table route (``ip route replace``).

        Args:
            dst: destination; None is the default route.
            gateway: next hop, or None for an on-link route.
            ifname: output interface, or None to let the kernel choose.
            version: only needed for a default route without a gateway.
        """
        args = self._route_args(dst, gateway, ifname, version)
        self._run(f"adding route to {_dst_text(dst)}", lambda i: i.route("replace", **args))

    def del_route(
        self,
        dst: IPNetwork | None,
        *,
        gateway: IPAddress | None = None,
        ifname: str | None = None,
        version: int | None = None,
    ) -> bool:
        """Delete a main-table route; True if it existed (missing link: False)."""
        try:
            args = self._route_args(dst, gateway, ifname, version)
            self._run(f"deleting route to {_dst_text(dst)}", lambda i: i.route("del", **args))
        except NotFound:
            return False
        return True

    def _route_args(
        self,
        dst: IPNetwork | None,
        gateway: IPAddress | None,
        ifname: str | None,
        version: int | None,
    ) -> dict[str, Any]:
        version = _ip_version(dst, gateway, version)
        if dst is None:
            dst = ip_network("0.0.0.0/0" if version == 4 else "::/0")
        args: dict[str, Any] = {"dst": str(dst), "family": family_of(version)}
        if gateway is not None:
            args["gateway"] = str(gateway)
        if ifname is not None:
            args["oif"] = self.ifindex(ifname)
        return args


def _ip_version(dst: IPNetwork | None, gateway: IPAddress | None, version: int | None) -> int:
    if version is not None:
        return version
    if dst is not None:
        return dst.version
    if gateway is not None:
        return gateway.version
    raise InvalidInput(
        "a default route without a gateway needs an IP version",
        hint="pass version=4 or version=6",
    )


def _release(sockets: dict[str | None, PinnedIPRoute], home_fd: int) -> None:
    # ExitStack runs every callback even when one raises.
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, home_fd)
        for sock in sockets.values():
            stack.callback(sock.close)
        sockets.clear()


def _dst_text(dst: IPNetwork | None) -> str:
    return "default" if dst is None else str(dst)


def _addr_args(index: int, interface: IPInterface) -> dict[str, Any]:
    return {"index": index, "address": str(interface.ip), "prefixlen": interface.network.prefixlen}
