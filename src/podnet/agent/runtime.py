"""The agent's asyncio side: the DNS server and the health checks, on one thread.

Theory of operation. :class:`AsyncRuntime` runs one event loop (uvloop when
installed) on a background thread of the agent. It follows the store: a
worker thread waits on ``store.watch("/", ...)`` (at most ``poll`` seconds at
a time, so it also notices other processes' writes and stops promptly), and
every change, or every ``settings.reconcile_interval`` seconds without one,
triggers a *refresh*:

1. read networks, pods, services and endpoint health from the store and
   build the DNS zone from them (pods, and services with their READY
   endpoints); the zone is swapped in with one assignment, so every query is
   answered from one consistent snapshot;
2. make the one :class:`~podnet.dns.DnsServer` listen on port 53 of every
   network's gateway addresses (IPv4 and IPv6), rebinding when networks come
   and go; a gateway not on a bridge yet is left out and retried every
   second, so one broken network does not silence the others;
3. hand :meth:`HealthMonitor.sync <podnet.health.HealthMonitor.sync>` the
   targets: every endpoint of every service whose check is not ``none``, on
   each TCP target port; checks run from the agent's netns, where endpoint
   addresses are routed to the bridges;
4. write or remove pods' ``/etc/netns/<netns>/resolv.conf``
   (:mod:`podnet.dns.resolv`), under the reconciler's lock so that it never
   races a reconcile creating or removing the same pod.

Health changes are published to ``/health/<service>/<ip>`` as
``{"state", "reason", "changed_at"}`` by one writer task (so writes never
interleave out of order); the nft data path and DNS follow from the store. An
endpoint with several checked ports takes the worst state of them. A new
endpoint is written ``unknown`` only when it has no key yet: a key left by a
previous agent keeps its state until the first checks decide, so restarting
the agent does not take serving endpoints out. Keys of endpoints and services
that are gone (or no longer checked) are deleted.

Errors are logged, never fatal; every wait is bounded. :meth:`AsyncRuntime.stop`
closes the health monitor (no probe outlives it), stops the DNS server and
joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from podnet.controller.state import Keys, Repository
from podnet.dns import DEFAULT_DOMAIN, DnsServer, Zone, build_zone
from podnet.dns.resolv import sync_resolv_confs
from podnet.errors import PodnetError, StoreConflict
from podnet.health import HealthMonitor, HealthState, HealthStatus, Target
from podnet.lb.endpoints import endpoints_of, ready_endpoints
from podnet.model.network import IPAddress, Network
from podnet.model.pod import PodSpec
from podnet.model.service import ServiceSpec
from podnet.settings import Settings
from podnet.store import JSON, Delete, Put, Store

__all__ = [
    "DNS_PORT",
    "AsyncRuntime",
    "Lock",
    "Snapshot",
    "health_ops",
    "health_records",
    "health_targets",
    "listen_addresses",
    "new_event_loop",
    "zone_of",
]

log = logging.getLogger("podnet.runtime")

T = TypeVar("T")
DNS_PORT = 53
HealthKey = tuple[str, IPAddress]

_RETRY = 1.0  # seconds between attempts to bind gateways that were not there yet
_STEP_TIMEOUT = 10.0  # bound on one DNS start/stop, one monitor close
_LOCK_TIMEOUT = 5.0  # bound on waiting for a reconcile to finish before resolv.conf
_RANK = {HealthState.HEALTHY: 0, HealthState.UNKNOWN: 1, HealthState.UNHEALTHY: 2}


class Lock(Protocol):
    """What the runtime needs of the reconciler's lock."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


# -- pure parts -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the runtime reads from the store on each refresh."""

    networks: Mapping[str, Network]
    pods: Mapping[str, PodSpec]
    services: Mapping[str, ServiceSpec]
    health: Mapping[tuple[str, str], str]

    @staticmethod
    def read(repo: Repository) -> Snapshot:
        return Snapshot(repo.networks(), repo.pods(), repo.services(), repo.health())


def listen_addresses(
    networks: Iterable[Network], port: int = DNS_PORT
) -> tuple[tuple[str, int], ...]:
    """Every gateway address of every network, with ``port``: where DNS listens."""
    gateways = {gw for net in networks for gw in net.gateways}
    return tuple((str(gw), port) for gw in sorted(gateways, key=lambda a: (a.version, int(a))))


def zone_of(
    domain: str,
    pods: Mapping[str, PodSpec],
    services: Mapping[str, ServiceSpec],
    health: Mapping[tuple[str, str], str],
) -> Zone:
    """The DNS zone: every pod, and every service with its READY endpoints.

    Raises:
        InvalidInput: the domain or a name is not valid in DNS.
    """
    members = list(pods.values())
    return build_zone(
        domain,
        members,
        [
            (spec, ready_endpoints(spec, endpoints_of(spec, members), health))
            for _, spec in sorted(services.items())
        ],
    )


def checked_ports(spec: ServiceSpec) -> list[int]:
    """The endpoint ports a service's checks connect to (TCP and HTTP checks are TCP).

    The target ports of its TCP ports; a service with UDP ports only is
    checked on those port numbers over TCP (a DNS server, say, answers both).
    """
    tcp = [p.target_port for p in spec.ports if p.protocol == "tcp"]
    return sorted(set(tcp or [p.target_port for p in spec.ports]))


def health_targets(
    services: Mapping[str, ServiceSpec], pods: Mapping[str, PodSpec]
) -> list[Target]:
    """What to check: each endpoint of each service with a check, on each checked port.

    A service whose check is not valid is skipped (and logged).
    """
    members = list(pods.values())
    targets: list[Target] = []
    for name, spec in sorted(services.items()):
        if spec.health.kind == "none":
            continue
        try:
            ports = checked_ports(spec)
            targets.extend(
                Target(name, ep.address, port, spec.health)
                for ep in endpoints_of(spec, members)
                for port in ports
            )
        except PodnetError as exc:
            log.error("service %s: its endpoints cannot be checked: %s", name, exc)
    return targets


def _worst(statuses: Iterable[HealthStatus]) -> HealthStatus:
    return max(statuses, key=lambda s: (_RANK[s.state], s.changed_at or 0.0))


def health_records(snapshot: Mapping[Target, HealthStatus]) -> dict[HealthKey, JSON]:
    """One store record per checked (service, endpoint): the worst state of its ports."""
    by_key: dict[HealthKey, list[HealthStatus]] = {}
    for target, status in snapshot.items():
        if target.check.kind != "none":
            by_key.setdefault((target.service, target.address), []).append(status)
    out: dict[HealthKey, JSON] = {}
    for key, statuses in by_key.items():
        worst = _worst(statuses)
        out[key] = {
            "state": worst.state.value,
            "reason": worst.reason,
            "changed_at": worst.changed_at,
        }
    return out


def health_ops(
    current: Mapping[str, JSON], records: Mapping[HealthKey, JSON]
) -> list[Put | Delete]:
    """Store writes that make ``/health/`` match ``records``.

    ``current`` maps each existing health key to its value. Keys without a
    record are deleted. A record whose state or reason differs is written,
    except that ``unknown`` never replaces an existing key (the first checks
    decide; see the module's notes on restarts).
    """
    wanted = {Keys.health(service, address): rec for (service, address), rec in records.items()}
    ops: list[Put | Delete] = [Delete(key) for key in sorted(current) if key not in wanted]
    for key, rec in sorted(wanted.items()):
        old = current.get(key)
        if old is not None and rec["state"] == HealthState.UNKNOWN.value:
            continue
        if old is None or (old.get("state"), old.get("reason")) != (rec["state"], rec["reason"]):
            ops.append(Put(key, dict(rec)))
    return ops


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop when uvloop is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _bindable(address: str) -> bool:
    """True when ``address`` is one of this netns's addresses (a port-0 bind works)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError as exc:
            return exc.errno != errno.EADDRNOTAVAIL
    return True


# -- the runtime ------------------------------------------------------------------


class AsyncRuntime:
    """DNS and health checks of one agent, on a thread of their own.

    Args:
        settings: ``dns_domain``, ``dns_upstreams``, ``netns_etc``, ...
        store: the agent's store (thread-safe; used from worker threads).
        lock: held while writing pods' resolv.conf (the reconciler's lock);
            None: no lock.
        dns_port: where DNS listens on each gateway (0: a free port, for tests).
        poll: longest wait for a store change before checking the stop flag.
        resolv: keep pods' resolv.conf files (False: leave them alone).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        lock: Lock | None = None,
        dns_port: int = DNS_PORT,
        poll: float = 0.2,
        resolv: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.repo = Repository(store)
        self.dns_port = dns_port
        self._lock = lock
        self._poll = poll
        self._resolv = resolv
        self._upstreams = settings.upstreams
        try:
            self._zone: Zone = build_zone(settings.dns_domain)
        except PodnetError as exc:
            log.error("DNS domain: %s; serving %s instead", exc, DEFAULT_DOMAIN)
            self._zone = build_zone(DEFAULT_DOMAIN)
        self._dns: DnsServer | None = None
        self._dns_wanted: tuple[tuple[str, int], ...] = ()
        self._dns_retry_at = 0.0
        self._dns_error = ""
        self._monitor: HealthMonitor | None = None
        self._seen = -1
        self._resolv_key: object = None
        self._shadowed: tuple[str, ...] = ()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._health_dirty: asyncio.Event | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="podnet-rt")
        self.refreshes = 0  # for tests and metrics

    # -- life cycle (any thread) ----------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the loop thread; returns once it runs (DNS binds in the background)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="podnet-runtime", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            log.error("the asyncio runtime did not start within %.0fs", timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop DNS and health checks and join the thread; idempotent, bounded."""
        self._stopping.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(wake.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("the asyncio runtime did not stop within %.0fs", timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def zone(self) -> Zone:
        """The zone DNS answers from now."""
        return self._zone

    @property
    def dns_addresses(self) -> list[tuple[str, int]]:
        """Where the DNS server answers now (empty when it does not)."""
        server = self._dns
        return server.addresses if server is not None and server.serving else []

    def health(self, timeout: float = 5.0) -> dict[Target, HealthStatus]:
        """Every checked target's status, from any thread but the loop's."""
        loop, monitor = self._loop, self._monitor
        if loop is None or monitor is None or loop.is_closed():
            return {}

        async def snapshot() -> dict[Target, HealthStatus]:
            return monitor.snapshot()

        return asyncio.run_coroutine_threadsafe(snapshot(), loop).result(timeout)

    def _run(self) -> None:
        loop = new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("the asyncio runtime failed")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            self._ready.set()
            loop.close()
            self._executor.shutdown(wait=True, cancel_futures=True)

    # -- on the loop -------------------------------------------------------------------

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        self._health_dirty = asyncio.Event()
        self._monitor = HealthMonitor(self._on_health_change)
        self._ready.set()
        if self._stopping.is_set():
            self._wake.set()
        writer = asyncio.create_task(self._health_writer(), name="podnet health writer")
        follower = asyncio.create_task(self._follow(), name="podnet store follower")
        await self._wake.wait()
        for task in (follower, writer):
            task.cancel()
        await asyncio.gather(follower, writer, return_exceptions=True)
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._monitor is not None:
            await self._bounded(self._monitor.close(), "closing the health checks")
        if self._dns is not None:
            await self._bounded(self._dns.stop(), "stopping DNS")
            self._dns = None
        if self._resolv:  # pods removed in the last instants (a reset) lose their file
            with contextlib.suppress(Exception):
                await self._in_thread(self._sync_resolv, True)

    async def _bounded(self, step: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await asyncio.wait_for(step, _STEP_TIMEOUT)
        except Exception as exc:
            log.error("%s: %s", what, exc or type(exc).__name__)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _follow(self) -> None:
        """Refresh at start, on every store change, and now and then without one."""
        last_full = -float("inf")
        changed = True
        while not self._stopping.is_set():
            try:
                now = time.monotonic()
                full = now - last_full >= self.settings.reconcile_interval
                if changed or full:
                    await self._refresh(full=full)
                    if full:
                        last_full = now
                elif self._dns_wanted and now >= self._dns_retry_at:
                    await self._ensure_dns(self._dns_wanted)
                changed = await self._in_thread(self._wait_for_change)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("DNS/health refresh failed; retrying")
                changed = True
                await asyncio.sleep(_RETRY)

    def _wait_for_change(self) -> bool:
        """Block up to ``poll`` seconds for a store change (worker thread)."""
        if self._seen < 0:
            self._seen = self.store.revision()
            return True
        try:
            events = self.store.watch("/", self._seen, timeout=self._poll)
        except StoreConflict:  # history compacted: read everything again
            self._seen = self.store.revision()
            return True
        if events:
            self._seen = events[-1].revision
        return bool(events)

    async def _refresh(self, *, full: bool = False) -> None:
        self.refreshes += 1
        snap = await self._in_thread(Snapshot.read, self.repo)
        try:
            zone = await self._in_thread(
                zone_of, self.settings.dns_domain, snap.pods, snap.services, snap.health
            )
        except PodnetError as exc:
            log.error("DNS zone not updated: %s", exc)
        else:
            self._zone = zone
            if zone.shadowed != self._shadowed:
                self._shadowed = zone.shadowed
                if zone.shadowed:
                    log.warning(
                        "DNS: services hide pods of the same name: %s", ", ".join(zone.shadowed)
                    )
        await self._ensure_dns(listen_addresses(snap.networks.values(), self.dns_port))
        if self._monitor is not None:
            await self._monitor.sync(health_targets(snap.services, snap.pods))
            self._mark_health_dirty()
        if self._resolv:
            key = (_resolv_fingerprint(snap), self.settings.dns_domain)
            changed = full or key != self._resolv_key
            if changed and await self._in_thread(self._sync_resolv, False):
                self._resolv_key = key

    def _sync_resolv(self, final: bool) -> bool:
        """Make pods' resolv.conf match the store under the reconciler's lock (thread)."""
        lock = self._lock
        if lock is not None and not lock.acquire(timeout=_LOCK_TIMEOUT):
            log.warning("resolv.conf not synced: a reconcile holds the lock; will retry")
            return False
        try:
            pods, networks = self.repo.pods(), self.repo.networks()
            _, removed = sync_resolv_confs(self.settings, pods, networks)
            if removed and not final:
                log.info("removed resolv.conf of gone pods: %s", ", ".join(removed))
            return True
        finally:
            if lock is not None:
                lock.release()

    # -- DNS -----------------------------------------------------------------------

    async def _ensure_dns(self, wanted: tuple[tuple[str, int], ...]) -> None:
        """Serve on ``wanted``, or on as many of them as are addresses here now."""
        self._dns_wanted = wanted
        current = self._dns.listen if self._dns is not None and self._dns.serving else None
        if current == wanted:
            return
        usable = tuple(a for a in wanted if _bindable(a[0]))
        if usable != wanted:
            self._dns_retry_at = time.monotonic() + _RETRY
        if current == usable:
            return
        if self._dns is not None:
            await self._bounded(self._dns.stop(), "stopping DNS to rebind")
            self._dns = None
        if not usable:
            return
        server = DnsServer(lambda: self._zone, usable, self._upstreams)
        try:
            await asyncio.wait_for(server.start(), _STEP_TIMEOUT)
        except (PodnetError, OSError, TimeoutError) as exc:
            self._dns_retry_at = time.monotonic() + _RETRY
            if str(exc) != self._dns_error:
                log.error("DNS server not serving: %s", exc)
            self._dns_error = str(exc)
            await self._bounded(server.stop(), "releasing DNS sockets")
            return
        self._dns, self._dns_error = server, ""
        log.info("DNS serving %s on %s", self.settings.dns_domain, _where(server.addresses))
        missing = [host for host, port in wanted if (host, port) not in usable]
        if missing:
            log.warning("DNS not yet on %s (not an address here yet)", ", ".join(missing))

    # -- health --------------------------------------------------------------------

    def _on_health_change(self, target: Target, status: HealthStatus) -> None:
        log.info(
            "health %s %s:%d is %s%s",
            target.service,
            target.address,
            target.port,
            status.state.value,
            f" ({status.reason})" if status.reason else "",
        )
        self._mark_health_dirty()

    def _mark_health_dirty(self) -> None:
        if self._health_dirty is not None:
            self._health_dirty.set()

    async def _health_writer(self) -> None:
        """Publish health to the store, one write at a time, latest state wins."""
        assert self._health_dirty is not None
        while True:
            await self._health_dirty.wait()
            self._health_dirty.clear()
            if self._monitor is None:
                continue
            records = health_records(self._monitor.snapshot())
            try:
                await self._in_thread(self._write_health, records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("health not written to the store: %s; retrying", exc)
                self._health_dirty.set()
                await asyncio.sleep(_RETRY)

    def _write_health(self, records: Mapping[HealthKey, JSON]) -> None:
        current = {e.key: e.value for e in self.store.list(Keys.HEALTH)}
        ops = health_ops(current, records)
        if ops:
            self.store.commit(ops)


def _resolv_fingerprint(snap: Snapshot) -> tuple[object, ...]:
    """What pods' resolv.conf depends on: pods' first interfaces and the gateways."""
    pods = tuple(
        (name, pod.interfaces[0] if pod.interfaces else None)
        for name, pod in sorted(snap.pods.items())
    )
    nets = tuple((name, net.gateways) for name, net in sorted(snap.networks.items()))
    return pods, nets


def _where(addresses: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses)
