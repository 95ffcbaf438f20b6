"""The agent's asyncio runtime: pods' resolv.conf, the zone and the health targets it
derives from the store, the health records it writes back, and one whole runtime on
loopback (DNS on a free port of 127.0.0.1, checks of a local HTTP server).

No root needed: resolv.conf goes to a temporary NETNS_ETC, DNS listens on port 0.
Timeouts here are guards against a hung test, never assertions about speed.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from podnet.agent.runtime import (
    AsyncRuntime,
    Snapshot,
    checked_ports,
    health_ops,
    health_records,
    health_targets,
    listen_addresses,
    new_event_loop,
    zone_of,
)
from podnet.controller.state import Keys, Repository, pod_ops, pod_removal_ops
from podnet.dns.resolv import (
    nameservers_of,
    recorded_netns,
    remove_resolv_conf,
    resolv_conf_path,
    resolv_conf_text,
    sync_resolv_confs,
    write_resolv_conf,
)
from podnet.errors import InvalidInput
from podnet.health import HealthState, HealthStatus, Target
from podnet.model.network import IPAddress, Network
from podnet.model.pod import Interface, PodSpec
from podnet.model.service import Endpoint, HealthCheck, ServicePort, ServiceSpec
from podnet.settings import Settings, parse_upstreams
from podnet.store import JSON, MemoryStore, Put

IP = ipaddress.ip_address
GUARD = 30.0  # a hung test fails instead of hanging; not a timing assertion

FRONT = Network.build(
    "front", [ipaddress.ip_network("10.89.0.0/24"), ipaddress.ip_network("fd00:89::/64")]
)
BACK = Network.build("back", [ipaddress.ip_network("10.89.1.0/24")])
NETS = {"front": FRONT, "back": BACK}


def pod(name: str, *ifaces: tuple[str, tuple[str, ...]], running: bool = True) -> PodSpec:
    interfaces = tuple(
        Interface(net, f"eth{i}", f"pnv{name}{i}", tuple(ipaddress.ip_interface(a) for a in addrs))
        for i, (net, addrs) in enumerate(ifaces)
    )
    return PodSpec(name, labels={"app": "web"}, running=running, interfaces=interfaces)


WEB1 = pod("web-1", ("front", ("10.89.0.5/24", "fd00:89::5/64")))
WEB2 = pod("web-2", ("front", ("10.89.0.6/24",)), ("back", ("10.89.1.6/24",)))
WEB3 = pod("web-3", ("back", ("10.89.1.7/24",)), running=False)
LONER = PodSpec("loner")
HTTP = HealthCheck(kind="http", interval=1.0, timeout=0.5)


def service(name: str = "web", **kw: object) -> ServiceSpec:
    fields: dict[str, object] = {
        "ports": (ServicePort(80, 8080, "tcp", "http"),),
        "selector": {"app": "web"},
        "headless": True,
        "health": HTTP,
    }
    fields.update(kw)
    return ServiceSpec(name, **fields)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state", netns_etc=tmp_path / "etc-netns")


# -- settings ---------------------------------------------------------------------


def test_dns_settings_defaults_and_environment() -> None:
    s = Settings()
    assert (s.dns_upstreams, s.dns_domain, s.netns_etc) == ("", "podnet.", Path("/etc/netns"))
    assert s.upstreams == ()
    env = {
        "PODNET_DNS_UPSTREAMS": "10.0.0.2, [2001:db8::53]:5353",
        "PODNET_DNS_DOMAIN": "cluster.example.",
        "PODNET_NETNS_ETC": "/tmp/etc-netns",
    }
    s = Settings.from_env(env)
    assert s.upstreams == (("10.0.0.2", 53), ("2001:db8::53", 5353))
    assert s.dns_domain == "cluster.example."
    assert s.netns_etc == Path("/tmp/etc-netns")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", ()),
        ("10.0.0.2", (("10.0.0.2", 53),)),
        ("10.0.0.2:5353,2001:db8::1", (("10.0.0.2", 5353), ("2001:db8::1", 53))),
        ("[::1]", (("::1", 53),)),
        ("[::1]:54", (("::1", 54),)),
    ],
)
def test_upstreams_parse(text: str, parsed: tuple[tuple[str, int], ...]) -> None:
    assert parse_upstreams(text) == parsed


@pytest.mark.parametrize("text", ["dns.example", "10.0.0.2:0", "10.0.0.2:70000", "[::1", "[::1]x"])
def test_bad_upstreams_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="DNS upstream"):
        Settings(dns_upstreams=text).validate()


@pytest.mark.parametrize("domain", ["", ".", "a..b", "-x.", "has space.", "x" * 64 + "."])
def test_bad_dns_domains_are_refused(domain: str) -> None:
    with pytest.raises(InvalidInput, match="DNS domain"):
        Settings(dns_domain=domain).validate()


# -- resolv.conf --------------------------------------------------------------------


def test_resolv_conf_names_the_gateways_the_search_domain_and_ndots() -> None:
    text = resolv_conf_text([IP("10.89.0.1"), IP("fd00:89::1")], "podnet.")
    assert text == ("nameserver 10.89.0.1\nnameserver fd00:89::1\nsearch podnet\noptions ndots:1\n")


def test_nameservers_are_the_first_networks_gateways_of_the_pods_ip_versions() -> None:
    assert nameservers_of(WEB1, NETS) == [IP("10.89.0.1"), IP("fd00:89::1")]
    assert nameservers_of(WEB2, NETS) == [IP("10.89.0.1")]  # no IPv6 address on front
    assert nameservers_of(WEB3, NETS) == [IP("10.89.1.1")]
    assert nameservers_of(LONER, NETS) == []
    assert nameservers_of(WEB1, {}) == []


def test_write_creates_the_directory_and_file_and_records_them(settings: Settings) -> None:
    path = write_resolv_conf(settings, WEB2, NETS)
    assert path == settings.netns_etc / "podnet-web-2" / "resolv.conf"
    assert path == resolv_conf_path(settings, "web-2")
    assert path.read_text() == "nameserver 10.89.0.1\nsearch podnet\noptions ndots:1\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in path.parent.iterdir()) == ["resolv.conf"]  # no temp file
    assert recorded_netns(settings) == ["podnet-web-2"]
    assert sorted(os.listdir(settings.netns_etc)) == [".podnet-created", "podnet-web-2"]


def test_write_is_idempotent_and_follows_changes(settings: Settings) -> None:
    path = write_resolv_conf(settings, WEB1, NETS)
    assert path is not None
    mtime = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert write_resolv_conf(settings, WEB1, NETS) == path
    assert path.stat().st_mtime_ns == mtime  # unchanged: not rewritten
    other = replace(settings, dns_domain="cluster.example.")
    write_resolv_conf(other, WEB1, NETS)
    assert "search cluster.example\n" in path.read_text()


def test_remove_takes_the_directory_podnet_made(settings: Settings) -> None:
    path = write_resolv_conf(settings, WEB1, NETS)
    assert path is not None
    assert remove_resolv_conf(settings, "podnet-web-1")
    assert not path.parent.exists()
    assert recorded_netns(settings) == []
    assert not remove_resolv_conf(settings, "podnet-web-1")  # nothing recorded any more


def test_netns_etc_goes_with_the_last_file_when_podnet_made_it(settings: Settings) -> None:
    write_resolv_conf(settings, WEB1, NETS)
    write_resolv_conf(settings, WEB2, NETS)
    remove_resolv_conf(settings, "podnet-web-1")
    assert settings.netns_etc.is_dir()
    remove_resolv_conf(settings, "podnet-web-2")
    assert not settings.netns_etc.exists()


def test_agents_sharing_netns_etc_leave_it_with_the_last_file(
    settings: Settings, tmp_path: Path
) -> None:
    other = replace(settings, state_dir=tmp_path / "other-state", netns_prefix="n2-")
    write_resolv_conf(settings, WEB1, NETS)  # this agent makes the base
    write_resolv_conf(other, WEB2, NETS)
    assert sorted(os.listdir(settings.netns_etc)) == [".podnet-created", "n2-web-2", "podnet-web-1"]
    sync_resolv_confs(settings, {}, {})
    assert settings.netns_etc.is_dir()
    sync_resolv_confs(other, {}, {})
    assert not settings.netns_etc.exists()


def test_netns_etc_stays_when_it_was_there(settings: Settings) -> None:
    settings.netns_etc.mkdir()
    write_resolv_conf(settings, WEB1, NETS)
    remove_resolv_conf(settings, "podnet-web-1")
    assert settings.netns_etc.is_dir()


def test_remove_leaves_a_directory_that_existed_and_its_other_files(settings: Settings) -> None:
    directory = settings.netns_etc / "podnet-web-1"
    directory.mkdir(parents=True)
    (directory / "hosts").write_text("127.0.0.1 localhost\n")
    write_resolv_conf(settings, WEB1, NETS)
    remove_resolv_conf(settings, "podnet-web-1")
    assert sorted(p.name for p in directory.iterdir()) == ["hosts"]


def test_a_pod_on_no_network_gets_no_resolv_conf_and_loses_an_old_one(settings: Settings) -> None:
    assert write_resolv_conf(settings, LONER, NETS) is None
    assert not (settings.netns_etc / "podnet-loner").exists()
    write_resolv_conf(settings, WEB1, NETS)
    assert write_resolv_conf(settings, replace(WEB1, interfaces=()), NETS) is None
    assert not (settings.netns_etc / "podnet-web-1").exists()


def test_a_new_netns_etc_moves_the_file(settings: Settings, tmp_path: Path) -> None:
    old = write_resolv_conf(settings, WEB1, NETS)
    moved = replace(settings, netns_etc=tmp_path / "elsewhere")
    new = write_resolv_conf(moved, WEB1, NETS)
    assert old is not None and new is not None
    assert not old.parent.exists() and new.exists()


def test_sync_writes_every_pod_and_removes_gone_ones_by_record(settings: Settings) -> None:
    stranger = settings.netns_etc / "podnet-stranger"  # not recorded: never touched
    stranger.mkdir(parents=True)
    (stranger / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    kept, removed = sync_resolv_confs(settings, {"web-1": WEB1, "web-2": WEB2}, NETS)
    assert (kept, removed) == (["podnet-web-1", "podnet-web-2"], [])
    kept, removed = sync_resolv_confs(settings, {"web-2": WEB2}, NETS)
    assert (kept, removed) == (["podnet-web-2"], ["podnet-web-1"])
    assert not (settings.netns_etc / "podnet-web-1").exists()
    assert sync_resolv_confs(settings, {}, {}) == ([], ["podnet-web-2"])
    assert sorted(p.name for p in settings.netns_etc.iterdir()) == ["podnet-stranger"]  # kept
    assert (stranger / "resolv.conf").exists()


# -- zone, listen addresses ---------------------------------------------------------------


def store_with(
    *services: ServiceSpec, health: dict[tuple[str, str], str] | None = None
) -> Repository:
    store = MemoryStore()
    for net in NETS.values():
        store.put(Keys.network(net.name), net.to_dict())
    for p in (WEB1, WEB2, WEB3, LONER):
        store.commit(pod_ops(p))
    for spec in services:
        store.put(Keys.service(spec.name), spec.to_dict())
    for (svc, address), state in (health or {}).items():
        store.put(Keys.health(svc, IP(address)), {"state": state, "reason": ""})
    return Repository(store)


def addresses(snapshot: Snapshot, name: str, rdtype: str = "A") -> set[str]:
    zone = zone_of("podnet.", snapshot.pods, snapshot.services, snapshot.health)
    owner = dns.name.from_text(name, zone.origin)
    rdataset = zone.rdatasets(owner).get(dns.rdatatype.from_text(rdtype))
    return {r.to_text() for r in rdataset} if rdataset is not None else set()


def test_the_zone_names_pods_and_the_ready_endpoints_of_services() -> None:
    health = {("web", "10.89.0.5"): "healthy", ("web", "10.89.0.6"): "unhealthy"}
    snap = Snapshot.read(
        store_with(
            service(), service("vip", headless=False, vips=(IP("10.96.0.10"),)), health=health
        )
    )
    assert addresses(snap, "web-1") == {"10.89.0.5"}
    assert addresses(snap, "web-1", "AAAA") == {"fd00:89::5"}
    assert addresses(snap, "web-2") == {"10.89.0.6", "10.89.1.6"}
    assert addresses(snap, "web-3") == {"10.89.1.7"}  # stopped pods keep their name
    assert addresses(snap, "web") == {"10.89.0.5"}  # web-2 unhealthy, web-3 not running
    assert addresses(snap, "vip") == {"10.96.0.10"}
    zone = zone_of("podnet.", snap.pods, snap.services, snap.health)
    assert not zone.exists(dns.name.from_text("nope.podnet."))


def test_services_without_checks_answer_every_endpoint_and_unknown_is_not_ready() -> None:
    snap = Snapshot.read(store_with(service(health=HealthCheck(kind="none"))))
    assert addresses(snap, "web") == {"10.89.0.5", "10.89.0.6"}
    snap = Snapshot.read(store_with(service()))  # checked, nothing known yet
    assert addresses(snap, "web") == set()


def test_dns_listens_on_every_gateway() -> None:
    assert listen_addresses([BACK, FRONT]) == (
        ("10.89.0.1", 53),
        ("10.89.1.1", 53),
        ("fd00:89::1", 53),
    )
    assert listen_addresses([FRONT, FRONT], 0) == (("10.89.0.1", 0), ("fd00:89::1", 0))
    assert listen_addresses([]) == ()


# -- health targets, records, store writes ------------------------------------------------


def test_targets_are_every_endpoint_on_every_checked_port() -> None:
    ports = (ServicePort(80, 8080), ServicePort(443, 8443), ServicePort(53, 53, "udp"))
    snap = Snapshot.read(
        store_with(
            service(ports=ports),
            service("off", health=HealthCheck(kind="none")),
            service("manual", selector={}, endpoints=(Endpoint(IP("192.0.2.9")),), health=HTTP),
        )
    )
    targets = health_targets(snap.services, snap.pods)
    assert {(t.service, str(t.address), t.port) for t in targets} == {
        ("web", "10.89.0.5", 8080),
        ("web", "10.89.0.5", 8443),
        ("web", "fd00:89::5", 8080),
        ("web", "fd00:89::5", 8443),
        ("web", "10.89.0.6", 8080),  # web-2's first interface only
        ("web", "10.89.0.6", 8443),
        ("manual", "192.0.2.9", 8080),
    }
    assert all(t.check == HTTP and t.netns is None for t in targets)


def test_udp_only_services_are_checked_on_their_ports() -> None:
    assert checked_ports(service(ports=(ServicePort(53, 5353, "udp"),))) == [5353]
    assert checked_ports(service(ports=(ServicePort(80, 8080), ServicePort(81, 8080)))) == [8080]


def status(state: HealthState, reason: str = "", at: float = 1.0) -> HealthStatus:
    return HealthStatus(state, None, reason, 0, 0, at, None)


def target(address: str, port: int = 80, svc: str = "web") -> Target:
    return Target(svc, IP(address), port, HTTP)


def test_records_take_the_worst_state_of_an_endpoints_ports() -> None:
    records = health_records(
        {
            target("10.89.0.5", 80): status(HealthState.HEALTHY, at=1),
            target("10.89.0.5", 443): status(HealthState.UNHEALTHY, "refused", at=2),
            target("10.89.0.6", 80): status(HealthState.HEALTHY, at=3),
            target("10.89.0.6", 443): status(HealthState.UNKNOWN, at=4),
            target("10.89.0.7", 80): status(HealthState.HEALTHY, at=5),
        }
    )
    assert records == {
        ("web", IP("10.89.0.5")): {"state": "unhealthy", "reason": "refused", "changed_at": 2},
        ("web", IP("10.89.0.6")): {"state": "unknown", "reason": "", "changed_at": 4},
        ("web", IP("10.89.0.7")): {"state": "healthy", "reason": "", "changed_at": 5},
    }


def test_store_writes_follow_records_but_unknown_never_replaces_a_key() -> None:
    key = Keys.health
    current: dict[str, JSON] = {
        key("web", IP("10.89.0.5")): {"state": "healthy", "reason": "", "changed_at": 1},
        key("web", IP("10.89.0.6")): {"state": "healthy", "reason": "", "changed_at": 1},
        key("web", IP("10.89.0.7")): {"state": "healthy", "reason": "", "changed_at": 1},
        key("gone", IP("10.89.0.5")): {"state": "healthy", "reason": ""},
    }
    records: dict[tuple[str, IPAddress], JSON] = {
        ("web", IP("10.89.0.5")): {"state": "unhealthy", "reason": "refused", "changed_at": 2},
        ("web", IP("10.89.0.6")): {"state": "unknown", "reason": "", "changed_at": 2},
        ("web", IP("10.89.0.7")): {"state": "healthy", "reason": "", "changed_at": 9},
        ("web", IP("fd00:89::5")): {"state": "unknown", "reason": "", "changed_at": 2},
    }
    ops = health_ops(current, records)
    assert [(type(op).__name__, op.key) for op in ops] == [
        ("Delete", "/health/gone/10.89.0.5"),
        ("Put", "/health/web/10.89.0.5"),
        ("Put", "/health/web/fd00:89::5"),
    ]
    applied = {**current, **{op.key: op.value for op in ops if isinstance(op, Put)}}
    del applied["/health/gone/10.89.0.5"]
    assert health_ops(applied, records) == []


def test_new_event_loop_runs_coroutines() -> None:
    loop = new_event_loop()
    try:
        assert loop.run_until_complete(_answer()) == 42
    finally:
        loop.close()


async def _answer() -> int:
    return 42


# -- one whole runtime on loopback ---------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class HttpServer:
    """A /health server on 127.0.0.1 that can stop and start again on its port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _Health)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def wait_for(what: str, predicate: Callable[[], object], timeout: float = GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def ask(server: tuple[str, int], name: str) -> tuple[int, set[str]]:
    reply = dns.query.udp(dns.message.make_query(name, "A"), server[0], port=server[1], timeout=5)
    return reply.rcode(), {r.to_text() for rrset in reply.answer for r in rrset}


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    yield server
    server.stop()


def test_a_runtime_serves_dns_checks_health_and_keeps_resolv_conf(
    settings: Settings, http_server: HttpServer
) -> None:
    store = MemoryStore()
    lo = Network.build("lo", [ipaddress.ip_network("127.0.0.0/24")])
    pod1 = pod("web-1", ("lo", ("127.0.0.2/24",)))
    store.put(Keys.network("lo"), lo.to_dict())
    store.commit(pod_ops(pod1))
    check = HealthCheck(
        kind="http", interval=0.1, timeout=0.1, healthy_threshold=1, unhealthy_threshold=1
    )
    spec = ServiceSpec(
        "web",
        (ServicePort(80, http_server.port),),
        endpoints=(Endpoint(IP("127.0.0.1")),),
        headless=True,
        health=check,
    )
    store.put(Keys.service("web"), spec.to_dict())
    lock = threading.RLock()
    runtime = AsyncRuntime(settings, store, lock=lock, dns_port=0, poll=0.05)
    runtime.start()
    try:
        wait_for("DNS serves", lambda: runtime.dns_addresses)
        server = runtime.dns_addresses[0]
        assert server[0] == "127.0.0.1"
        assert ask(server, "web-1.podnet.") == (dns.rcode.NOERROR, {"127.0.0.2"})
        assert ask(server, "nope.podnet.")[0] == dns.rcode.NXDOMAIN
        resolv = resolv_conf_path(settings, "web-1")
        wait_for("resolv.conf is written", resolv.exists)
        assert resolv.read_text().startswith("nameserver 127.0.0.1\n")

        def state() -> object:
            entry = store.get("/health/web/127.0.0.1")
            return entry.value["state"] if entry else None

        wait_for("the endpoint is healthy", lambda: state() == "healthy")
        wait_for("DNS answers it", lambda: ask(server, "web.podnet.")[1] == {"127.0.0.1"})
        http_server.stop()
        wait_for("the endpoint is unhealthy", lambda: state() == "unhealthy")
        entry = store.get("/health/web/127.0.0.1")
        assert entry is not None and entry.value["reason"] and entry.value["changed_at"]
        wait_for("DNS drops it", lambda: ask(server, "web.podnet.")[1] == set())
        http_server.start()
        wait_for("the endpoint is healthy again", lambda: state() == "healthy")
        wait_for("DNS answers it again", lambda: ask(server, "web.podnet.")[1] == {"127.0.0.1"})

        # a second network: DNS rebinds to both gateways; one not here is left out
        store.put(
            Keys.network("lo1"),
            Network.build("lo1", [ipaddress.ip_network("127.0.1.0/24")]).to_dict(),
        )
        away = Network.build("away", [ipaddress.ip_network("192.0.2.0/24")])
        store.put(Keys.network("away"), away.to_dict())
        wait_for(
            "DNS serves both gateways",
            lambda: sorted(h for h, _ in runtime.dns_addresses) == ["127.0.0.1", "127.0.1.1"],
        )
        server = runtime.dns_addresses[0]
        assert ask(server, "web-1.podnet.")[1] == {"127.0.0.2"}

        # the service goes: its health key goes; the pod goes: its resolv.conf goes
        store.delete(Keys.service("web"))
        wait_for("the health key is removed", lambda: store.list(Keys.HEALTH) == [])
        store.commit(pod_removal_ops(pod1))
        wait_for("resolv.conf is removed", lambda: not resolv.parent.exists())
        assert runtime.refreshes > 1
    finally:
        runtime.stop(timeout=GUARD)
    assert runtime.dns_addresses == []
    assert not runtime._thread or not runtime._thread.is_alive()
    runtime.stop()  # idempotent


def test_a_runtime_stops_promptly_even_before_it_served(settings: Settings) -> None:
    runtime = AsyncRuntime(settings, MemoryStore(), dns_port=0)
    runtime.start()
    started = time.monotonic()
    runtime.stop(timeout=GUARD)
    assert time.monotonic() - started < GUARD
    assert json.dumps(runtime.health()) == "{}"
