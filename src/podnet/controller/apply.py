"""Carry out planned steps through the kernel adapters."""

from __future__ import annotations

from collections.abc import Iterable

from podnet.controller import steps as s
from podnet.controller.state import Repository
from podnet.errors import NotFound, PodnetError
from podnet.kernel import netns, sysctl
from podnet.kernel.netlink import Netlink
from podnet.kernel.nft import NftRunner

__all__ = ["Executor", "StepFailed"]


class StepFailed(PodnetError):
    """A step of a reconcile failed; names the step and the kernel's reason."""

    kind = "kernel"


class Executor:
    """Runs steps in order. Netlink sockets into pod namespaces are opened once
    per run and closed at the end."""

    def __init__(self, host: Netlink, repo: Repository, nft: NftRunner) -> None:
        self._host = host
        self._repo = repo
        self._nft = nft
        self._pods: dict[str, Netlink] = {}

    def run(self, steps: Iterable[s.Step]) -> None:
        try:
            for step in steps:
                try:
                    self._do(step)
                except PodnetError as exc:
                    raise StepFailed(
                        f"{step.describe().splitlines()[0]}: {exc.message}", hint=exc.hint
                    ) from exc
        finally:
            self.close()

    def close(self) -> None:
        for nl in self._pods.values():
            nl.close()
        self._pods.clear()

    def _nl(self, name: str | None) -> Netlink:
        if name is None:
            return self._host
        if name not in self._pods:
            self._pods[name] = Netlink(name)
        return self._pods[name]

    def _do(self, step: s.Step) -> None:
        match step:
            case s.CreateNetns(name=name, pod=pod):
                self._repo.record_netns(name, pod)  # record first: a crash cannot strand it
                netns.ensure(name)
            case s.DeleteNetns(name=name):
                if name in self._pods:
                    self._pods.pop(name).close()
                netns.delete(name)
                self._repo.forget_netns(name)
            case s.AddBridge(name=name, mtu=mtu, alias=alias):
                self._host.add_bridge(name, mtu=mtu, alias=alias)
            case s.AddVipLink(name=name, alias=alias):
                # An empty bridge, not a dummy: kernels without the dummy module
                # have bridges, and a route through a device without carrier is
                # still used (ignore_routes_with_linkdown defaults to 0).
                self._host.add_bridge(name, alias=alias)
            case s.AddRoute(netns=ns, dst=dst, ifname=ifname):
                self._nl(ns).add_route(dst, ifname=ifname)
            case s.AddVeth(netns=ns, ifname=ifname, host_ifname=peer, mtu=mtu, alias=alias):
                self._host.delete_link(peer)  # a stale host end from a crashed run
                self._nl(ns).add_veth(ifname, peer, peer_netns=None, mtu=mtu)
                self._host.set_alias(peer, alias)  # through the socket already open here
            case s.SetMaster(name=name, bridge=bridge):
                self._host.set_master(name, bridge)
            case s.SetHairpin(name=name):
                self._host.set_bridge_port(name, hairpin=True)
            case s.SetLinkUp(netns=ns, name=name):
                self._nl(ns).set_up(name)
            case s.AddAddress(netns=ns, ifname=ifname, address=address):
                self._nl(ns).add_address(ifname, address)
            case s.DelAddress(netns=ns, ifname=ifname, address=address):
                self._nl(ns).del_address(ifname, address)
            case s.AddDefaultRoute(netns=ns, gateway=gateway, ifname=ifname):
                self._nl(ns).add_route(None, gateway=gateway, ifname=ifname)
            case s.DeleteLink(netns=ns, name=name):
                self._nl(ns).delete_link(name)
            case s.SetSysctl(netns=ns, path=path, value=value):
                try:
                    sysctl.set_path(path, value, netns=ns)
                except NotFound:
                    if path[-1] != "forwarding":  # IPv6 disabled: nothing to forward
                        raise
            case s.ApplyNft(script=script):
                self._nft.apply(script)
