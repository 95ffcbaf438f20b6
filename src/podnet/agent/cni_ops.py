"""CNI operations on podnet's state: ADD, DEL, CHECK, GC and STATUS.

One function, :func:`run_cni`, is the whole plugin: environment and stdin in,
exit status and stdout out. The agent runs it for the fast path (the plugin
forwards its request over the API socket) and ``podnet-cni`` runs it in-process
when no agent answers, so both paths give the same result.

Attachments share IPAM and published ports with pods (one set of leases, one
port table), are keyed by (network, container id, ifname), and are removed
from that record, not from what the interface still shows.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from ipaddress import ip_network

from podnet import errors
from podnet.agent.admission import admit_pod, check_ports
from podnet.agent.cni_delegate import run_ipam
from podnet.agent.service import Service
from podnet.cni.spec import (
    DNS,
    CniError,
    Command,
    ErrorCode,
    Interface,
    Invocation,
    IPConfig,
    NetConf,
    PodnetPluginConf,
    Result,
    Route,
    check_request,
    parse_config,
    parse_env,
    parse_plugin_conf,
    reply_version,
    requested_ips,
    requested_version,
    valid_attachments,
    version_info,
)
from podnet.controller import attach
from podnet.controller.state import Keys
from podnet.kernel.netlink import Netlink
from podnet.model.attachment import CniAttachment
from podnet.model.network import IPAddress, IPNetwork, Network, NetworkRequest
from podnet.model.pod import Attachment, PodSpec
from podnet.store.base import Delete, Put

__all__ = ["KERNEL_FAILURE", "CniOps", "network_name"]

#: podnet's own error code (100+ are the plugin's): the kernel refused a step.
KERNEL_FAILURE = 100
#: CHECK found the attachment's kernel state not as ADD left it.
CHECK_FAILED = 101


def network_name(cni_name: str) -> str:
    """The podnet network behind a CNI network name (podnet names are DNS labels)."""
    name = re.sub(r"[^a-z0-9-]+", "-", cni_name.lower()).strip("-")[:63].strip("-")
    return name or "cni"


def _as_cni(exc: errors.PodnetError) -> CniError:
    message = exc.message
    details = exc.hint or ""
    if isinstance(exc, errors.StoreConflict | errors.StoreUnavailable):
        return CniError(ErrorCode.TRY_AGAIN_LATER, message, details)
    if isinstance(exc, errors.InvalidInput | errors.Conflict | errors.AlreadyExists):
        return CniError(ErrorCode.INVALID_NETWORK_CONFIG, message, details)
    if isinstance(exc, errors.NotFound):
        return CniError(ErrorCode.INVALID_NETWORK_CONFIG, message, details)
    return CniError(KERNEL_FAILURE, message, details)


class CniOps:
    """The five CNI commands against one agent's service layer."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.repo = service.repo
        self.table = service.settings.nft_table
        self._host: Netlink | None = None

    @property
    def host(self) -> Netlink:
        """One netlink socket into the host netns for the agent's lifetime."""
        if self._host is None:
            self._host = Netlink(None)
        return self._host

    def run_cni(self, env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
        """The whole plugin: (exit status, what to print on stdout)."""
        try:
            inv = parse_env(env)
            if inv.command == Command.VERSION:
                return 0, json.dumps(version_info(requested_version(stdin)))
            conf = parse_config(stdin)
            check_request(inv, conf)
            result = self.handle(inv, conf, env)
            return 0, "" if result is None else json.dumps(result.to_json(conf.cni_version))
        except CniError as exc:
            return 1, json.dumps(exc.to_json(reply_version(stdin)))
        except errors.PodnetError as exc:
            return 1, json.dumps(_as_cni(exc).to_json(reply_version(stdin)))

    def handle(self, inv: Invocation, conf: NetConf, env: Mapping[str, str]) -> Result | None:
        with self.service.lock:
            if inv.command == Command.ADD:
                return self.add(inv, conf, env)
            if inv.command == Command.DEL:
                self.delete(inv, conf, env)
            elif inv.command == Command.CHECK:
                self.check(inv, conf)
            elif inv.command == Command.GC:
                self.gc(conf, env, inv.path)
            elif inv.command == Command.STATUS:
                self.status(conf)
            return None

    # -- ADD -----------------------------------------------------------------

    def add(self, inv: Invocation, conf: NetConf, env: Mapping[str, str]) -> Result:
        plugin = parse_plugin_conf(conf)
        delegated: Result | None = None
        if plugin.ipam_plugin:
            delegated = run_ipam(
                plugin.ipam_plugin,
                "ADD",
                env=env,
                path=inv.path,
                raw_conf=conf.raw,
                version=conf.cni_version,
            )
        try:
            net = self._network(conf, plugin, delegated)
            att = self._admit(inv, conf, plugin, net, delegated)
            self._record(att)
        except BaseException:
            if plugin.ipam_plugin:
                self._release_delegated(plugin.ipam_plugin, inv, conf, env)
            raise
        try:
            routes = _routes(plugin, net, delegated)
            inside_mac, host_mac = attach.attach(
                att,
                net,
                host=self.host,
                table=self.table,
                routes=routes,
                hairpin=plugin.hairpin_mode,
            )
            if att.ports:
                self.service.reconciler.sync_rules()
        except BaseException:
            self._forget(att, env, inv.path, conf)
            raise
        return self._result(
            att,
            net=net,
            plugin=plugin,
            conf=conf,
            inside_mac=inside_mac,
            host_mac=host_mac,
            routes=routes,
        )

    def _network(
        self, conf: NetConf, plugin: PodnetPluginConf, delegated: Result | None
    ) -> Network:
        if plugin.network is not None:
            net = self.repo.network(plugin.network)
            if net is None:
                raise CniError(
                    ErrorCode.INVALID_NETWORK_CONFIG,
                    f"podnet network {plugin.network!r} does not exist",
                    f"create it with 'podnet network create {plugin.network}'",
                )
            return net
        name = network_name(conf.name)
        subnets = plugin.subnets or tuple(_subnets_of(delegated))
        existing = self.repo.network(name)
        if existing is not None:
            _check_compatible(existing, conf.name, plugin, subnets)
            return existing
        request = NetworkRequest(
            name=name,
            subnets=subnets,
            ipv4=not subnets,
            masquerade=plugin.ip_masq,
            mtu=plugin.mtu or 1500,
            bridge=plugin.bridge,
            owner=f"cni:{conf.name}",
        )
        return self.service.create_network(request)

    def _admit(
        self,
        inv: Invocation,
        conf: NetConf,
        plugin: PodnetPluginConf,
        net: Network,
        delegated: Result | None,
    ) -> CniAttachment:
        ports = conf.runtime_config.port_mappings
        draft = CniAttachment(
            net.name,
            inv.container_id,
            inv.ifname,
            inv.netns,
            ports=ports,
            mac=conf.runtime_config.mac,
            ipam_plugin=plugin.ipam_plugin,
        )
        if self.repo.attachment(net.name, inv.container_id, inv.ifname) is not None:
            raise CniError(
                ErrorCode.INVALID_NETWORK_CONFIG,
                f"{draft.owner} is already attached to network {net.name!r}",
                "DEL it first; a runtime ADDs an attachment once",
            )
        networks = {net.name: net}
        # Published ports are checked against every pod and container; without
        # them only this network's leases matter, and reading those is cheap.
        alloc = self.service.allocations() if ports else self.service.network_allocations(net.name)
        fixed = tuple(r.address for r in requested_ips(conf, inv))
        spec = PodSpec(draft.as_pod().name, (Attachment(net.name, inv.ifname, fixed),), ports)
        if delegated is not None:
            check_ports(spec, networks, alloc, self.service.port_holder)
            return replace(draft, addresses=tuple(ip.address for ip in delegated.ips))
        admitted = admit_pod(spec, networks, alloc, self.service.port_holder)
        return replace(draft, addresses=admitted.interfaces[0].addresses)

    def _record(self, att: CniAttachment) -> None:
        key = Keys.attachment(att.network, att.container_id, att.ifname)
        ops: list[Put | Delete] = [Put(key, att.to_dict())]
        expect = {key: 0}
        if att.ipam_plugin is None:
            for address in att.addresses:
                lease = Keys.lease(att.network, address.ip)
                ops.append(Put(lease, {"pod": att.owner}))
                expect[lease] = 0
            cursor = {**self.repo.cursor(att.network)}
            cursor.update({str(a.version): str(a.ip) for a in att.addresses})
            ops.append(Put(Keys.cursor(att.network), cursor))  # round robin, as host-local
        self.service.store.commit(ops, expect=expect)

    def _result(
        self,
        att: CniAttachment,
        *,
        net: Network,
        plugin: PodnetPluginConf,
        conf: NetConf,
        inside_mac: str,
        host_mac: str,
        routes: Sequence[tuple[IPNetwork, IPAddress | None]],
    ) -> Result:
        with_gateway = plugin.is_gateway or plugin.is_default_gateway or plugin.network is not None
        ips = tuple(
            IPConfig(a, net.gateway_for(a.version) if with_gateway else None, interface=2)
            for a in att.addresses
        )
        return Result(
            interfaces=(
                Interface(net.bridge),
                Interface(att.host_ifname, mac=host_mac),
                Interface(att.ifname, mac=inside_mac, sandbox=att.netns),
            ),
            ips=ips,
            routes=tuple(Route(dst, gw) for dst, gw in routes),
            dns=_dns(conf),
        )

    # -- DEL, GC -------------------------------------------------------------

    def delete(self, inv: Invocation, conf: NetConf, env: Mapping[str, str]) -> None:
        """Best effort and idempotent: whatever is already gone is success."""
        name = _network_of(conf)
        att = self.repo.attachment(name, inv.container_id, inv.ifname)
        if att is None:  # nothing recorded: still remove a veth a crash may have left
            gone = CniAttachment(name, inv.container_id, inv.ifname, inv.netns or "/-")
            attach.detach(gone, self.host)
            return
        if inv.netns and att.netns != inv.netns:
            att = replace(att, netns=inv.netns)
        self._forget(att, env, inv.path, conf)

    def gc(self, conf: NetConf, env: Mapping[str, str], path: Sequence[str]) -> None:
        keep = valid_attachments(conf)
        for att in self.repo.attachments(_network_of(conf)):
            if (att.container_id, att.ifname) not in keep:
                self._forget(att, env, path, conf)

    def _forget(
        self, att: CniAttachment, env: Mapping[str, str], path: Sequence[str], conf: NetConf
    ) -> None:
        """Remove an attachment's veth, record, leases and rules; every step is tried."""
        failures: list[str] = []
        for step in (
            lambda: attach.detach(att, self.host),
            lambda: self._drop_record(att),
            lambda: att.ports and self.service.reconciler.sync_rules(),
        ):
            try:
                step()
            except errors.PodnetError as exc:
                failures.append(exc.message)
        if att.ipam_plugin:
            inv_env = {**env, "CNI_CONTAINERID": att.container_id, "CNI_IFNAME": att.ifname}
            try:
                run_ipam(
                    att.ipam_plugin,
                    "DEL",
                    env=inv_env,
                    path=path,
                    raw_conf=conf.raw,
                    version=conf.cni_version,
                )
            except CniError as exc:
                failures.append(exc.msg)
        if failures:
            raise CniError(KERNEL_FAILURE, f"removing {att.owner}: " + "; ".join(failures))

    def _drop_record(self, att: CniAttachment) -> None:
        ops: list[Put | Delete] = [
            Delete(Keys.attachment(att.network, att.container_id, att.ifname))
        ]
        if att.ipam_plugin is None:
            ops += [Delete(Keys.lease(att.network, a.ip)) for a in att.addresses]
        self.service.store.commit(ops)

    def _release_delegated(
        self, plugin: str, inv: Invocation, conf: NetConf, env: Mapping[str, str]
    ) -> None:
        with contextlib.suppress(CniError):  # the ADD's own error is the one to report
            run_ipam(
                plugin, "DEL", env=env, path=inv.path, raw_conf=conf.raw, version=conf.cni_version
            )

    # -- CHECK, STATUS -------------------------------------------------------

    def check(self, inv: Invocation, conf: NetConf) -> None:
        name = _network_of(conf)
        att = self.repo.attachment(name, inv.container_id, inv.ifname)
        net = self.repo.network(name)
        if att is None or net is None:
            raise CniError(
                ErrorCode.UNKNOWN_CONTAINER,
                f"container {inv.container_id[:12]}/{inv.ifname} is not attached to {conf.name!r}",
            )
        problems = attach.inspect(att, net, self.host)
        if conf.prev_result is not None:
            have = set(att.addresses)
            problems += [
                f"prevResult address {ip.address} is not the attachment's"
                for ip in conf.prev_result.ips
                if ip.address not in have
            ]
        if problems:
            raise CniError(CHECK_FAILED, "; ".join(problems))

    def status(self, conf: NetConf) -> None:
        """Code 50 when an ADD could not be served now."""
        try:
            plugin = parse_plugin_conf(conf)
            if plugin.network is not None and self.repo.network(plugin.network) is None:
                raise CniError(
                    ErrorCode.PLUGIN_NOT_AVAILABLE,
                    f"podnet network {plugin.network!r} does not exist",
                    f"create it with 'podnet network create {plugin.network}'",
                )
            self.service.store.revision()
        except errors.PodnetError as exc:
            if isinstance(exc, CniError) and exc.code == ErrorCode.PLUGIN_NOT_AVAILABLE:
                raise
            raise CniError(ErrorCode.PLUGIN_NOT_AVAILABLE, exc.message, exc.hint or "") from None


def _network_of(conf: NetConf) -> str:
    """The podnet network a configuration means, even one that no longer validates."""
    explicit = conf.plugin.get("network")
    return explicit if isinstance(explicit, str) and explicit else network_name(conf.name)


def _subnets_of(delegated: Result | None) -> list[IPNetwork]:
    if delegated is None:
        return []
    return [ip.address.network for ip in delegated.ips]


def _check_compatible(
    net: Network, cni_name: str, plugin: PodnetPluginConf, subnets: Sequence[IPNetwork]
) -> None:
    if subnets and set(subnets) != set(net.subnets):
        raise CniError(
            ErrorCode.INVALID_NETWORK_CONFIG,
            f"network {cni_name!r} asks for subnets {', '.join(map(str, subnets))} but podnet "
            f"network {net.name!r} has {', '.join(map(str, net.subnets))}",
            "use the same subnets in every configuration of one network, or another name",
        )
    if plugin.bridge and plugin.bridge != net.bridge:
        raise CniError(
            ErrorCode.INVALID_NETWORK_CONFIG,
            f"network {cni_name!r} asks for bridge {plugin.bridge!r} but podnet network "
            f"{net.name!r} uses {net.bridge!r}",
            "use the same bridge in every configuration of one network",
        )


def _routes(
    plugin: PodnetPluginConf, net: Network, delegated: Result | None
) -> list[tuple[IPNetwork, IPAddress | None]]:
    if delegated is not None:
        # A route without "gw" goes via the IPAM result's gateway of its family,
        # as the reference plugins do (ipam.ConfigureIface).
        gateways = {ip.address.version: ip.gateway for ip in delegated.ips if ip.gateway}
        return [(r.dst, r.gw or gateways.get(r.dst.version)) for r in delegated.routes]
    routes = [(r.dst, r.gw or net.gateway_for(r.dst.version)) for r in plugin.routes]
    wants_default = plugin.is_default_gateway or plugin.network is not None
    if wants_default or (plugin.is_gateway and not routes):
        for gw in net.gateways:
            default = ip_network("0.0.0.0/0" if gw.version == 4 else "::/0")
            if all(dst != default for dst, _ in routes):
                routes.append((default, gw))
    return routes


def _dns(conf: NetConf) -> DNS:
    runtime = conf.runtime_config.dns
    if runtime is not None:
        return DNS(nameservers=runtime.servers, search=runtime.searches, options=runtime.options)
    return conf.dns or DNS()
