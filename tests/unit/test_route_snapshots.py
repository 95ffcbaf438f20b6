"""Snapshot building (pure) and the route/proxy operations over an in-memory store."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.agent.routes import RouteOps, proxy_argv
from podnet.agent.service import Service
from podnet.agent.snapshots import build_snapshot, resolve_backend, sidecar_routes
from podnet.controller.processes import Supervisor
from podnet.controller.reconciler import Reconciler
from podnet.controller.state import Keys, Repository
from podnet.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from podnet.kernel.nft import FakeNft
from podnet.model.pod import Interface, PodSpec
from podnet.model.ports import PortMapping
from podnet.model.route import BackendRef, Match, Mirror, ProxySpec, RouteSpec
from podnet.model.service import Endpoint, HealthCheck, ServicePort, ServiceSpec
from podnet.settings import Settings
from podnet.store import open_store
from podnet.store.base import Store


def pod(
    name: str, ip: str, *, ip6: str | None = None, running: bool = True, **labels: str
) -> PodSpec:
    addrs = [ipaddress.ip_interface(f"{ip}/24")]
    if ip6:
        addrs.append(ipaddress.ip_interface(f"{ip6}/64"))
    iface = Interface("front", "eth0", f"veth-{name}", tuple(addrs))
    return PodSpec(name, labels=labels, interfaces=(iface,), running=running)


def service(
    name: str, *, vip: str | None = "10.96.0.10", check: str = "tcp", **selector: str
) -> ServiceSpec:
    return ServiceSpec(
        name,
        (ServicePort(80, 8080, "tcp", "http"), ServicePort(53, 53, "udp")),
        selector=selector or {"app": name},
        health=HealthCheck(kind=check),
        vips=(ipaddress.ip_address(vip),) if vip else (),
    ).validate()


PODS = [
    pod("web-1", "10.89.0.11", ip6="fd00:89::11", app="web", version="v1"),
    pod("web-2", "10.89.0.12", app="web", version="v2"),
    pod("web-3", "10.89.0.13", app="web", version="v2", running=False),
    pod("api-1", "10.89.0.21", app="api"),
]
HEALTH = {("web", "10.89.0.11"): "healthy", ("web", "10.89.0.12"): "unhealthy"}


def route(name: str, *backends: BackendRef, **kw: object) -> RouteSpec:
    return RouteSpec(name, backends=backends, **kw).validate()  # type: ignore[arg-type]


# -- resolving backends -----------------------------------------------------------


def test_backend_endpoints_follow_selector_subset_port_and_health() -> None:
    services = {"web": service("web")}
    all_web = resolve_backend(BackendRef("web", "web"), services, PODS, HEALTH)
    # the stopped pod is out; the dual-stack pod counts once, on IPv4; port = first TCP target
    assert [(e.address, e.port, e.healthy) for e in all_web.endpoints] == [
        ("10.89.0.11", 8080, True),
        ("10.89.0.12", 8080, False),
    ]
    v2 = resolve_backend(
        BackendRef("web-v2", "web", {"version": "v2"}, port=9000), services, PODS, HEALTH
    )
    assert [(e.id, e.labels["version"]) for e in v2.endpoints] == [("10.89.0.12:9000", "v2")]


def test_unchecked_services_are_healthy_and_missing_ones_empty() -> None:
    services = {"api": service("api", check="none")}
    assert [
        e.healthy for e in resolve_backend(BackendRef("api", "api"), services, PODS, {}).endpoints
    ] == [True]
    assert resolve_backend(BackendRef("gone", "gone"), services, PODS, {}).endpoints == ()


def test_manual_endpoints_keep_weight_and_labels() -> None:
    manual = ServiceSpec(
        "ext",
        (ServicePort(443, 8443),),
        endpoints=(Endpoint(ipaddress.ip_address("192.0.2.1"), weight=3, labels={"zone": "a"}),),
        health=HealthCheck(kind="none"),
    ).validate()
    resolved = resolve_backend(BackendRef("ext-a", "ext", {"zone": "a"}), {"ext": manual}, [], {})
    assert [(e.id, e.weight) for e in resolved.endpoints] == [("192.0.2.1:8443", 3)]


# -- snapshots --------------------------------------------------------------------


def test_edge_snapshot_has_the_routes_naming_it_or_none_with_mirror() -> None:
    services = {"web": service("web"), "api": service("api", vip="10.96.0.11")}
    routes = [
        route("shop", BackendRef("web", "web"), mirror=Mirror(BackendRef("api", "api"), 10.0)),
        route("other", BackendRef("api", "api"), proxies=("elsewhere",)),
        route("mine", BackendRef("api", "api"), proxies=("edge",)),
    ]
    snap = build_snapshot(
        ProxySpec("edge", host_port=8080),
        7,
        routes=routes,
        services=services,
        pods=PODS,
        health=HEALTH,
    )
    assert snap.version == 7 and [r.spec.name for r in snap.routes] == ["mine", "shop"]
    shop = snap.routes[1]
    assert shop.mirror is not None and [e.address for e in shop.mirror.endpoints] == ["10.89.0.21"]
    assert type(snap).from_dict(snap.to_dict()) == snap  # crosses the process boundary unchanged


def test_sidecar_synthesizes_a_route_per_vip_port() -> None:
    services = {"web": service("web"), "headless": service("headless", vip=None)}
    routes = sidecar_routes([], services)
    assert [(r.name, r.match.destinations, r.backends[0].port) for r in routes] == [
        ("svc-web-80", ("10.96.0.10:80",), 8080)  # no UDP port, no headless service
    ]


def test_sidecar_user_route_takes_its_services_vip_traffic() -> None:
    services = {"web": service("web"), "api": service("api", vip="10.96.0.11")}
    canary = route(
        "canary",
        BackendRef("web-v1", "web", {"version": "v1"}, weight=90),
        BackendRef("web-v2", "web", {"version": "v2"}, weight=10),
        match=Match(hosts=("shop.example",)),
    )
    beta = route("beta", BackendRef("api", "api"), match=Match(headers={"x-beta": "1"}))
    routes = sidecar_routes([beta, canary], services)
    by_name = {r.name: r for r in routes}
    # a catch-all user route replaces the synthesized one; its hosts do not apply
    assert by_name["canary"].match.destinations == ("10.96.0.10:80",)
    assert by_name["canary"].match.hosts == ()
    assert "svc-web-80" not in by_name
    # a route with conditions sits in front of the synthesized one, which catches the rest
    assert by_name["beta"].match.destinations == ("10.96.0.11:80",)
    assert by_name["beta"].match.specificity() > by_name["svc-api-80"].match.specificity()


# -- operations over a store ------------------------------------------------------


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[RouteOps]:
    settings = Settings(state_dir=tmp_path / "state", run_dir=tmp_path / "run")
    store: Store = open_store("memory:")
    repo = Repository(store)
    supervisor = Supervisor(repo, netns_prefix="t-", log_dir=tmp_path, run_dir=tmp_path)
    reconciler = Reconciler(settings, repo, FakeNft(), supervisor, supervise=False)
    svc = Service(store, reconciler, host_routes=list, port_holder=lambda proto, port: None)
    for spec in (service("web"), service("api", vip="10.96.0.11")):
        store.put(Keys.service(spec.name), spec.to_dict())
    for p in PODS:
        store.put(Keys.pod(p.name), p.to_dict())
    yield RouteOps(svc)
    store.close()


def test_set_route_checks_references(ops: RouteOps) -> None:
    with pytest.raises(NotFound, match="nope"):
        ops.set_route(route("r", BackendRef("nope", "nope")))
    with pytest.raises(NotFound, match="edge-9"):
        ops.set_route(route("r", BackendRef("web", "web"), proxies=("edge-9",)))
    ops.set_route(route("r", BackendRef("web", "web")))
    assert ops.route("r").backends[0].service == "web"
    assert ops.remove_route("r") and not ops.remove_route("r")  # idempotent
    with pytest.raises(NotFound, match="route 'r'"):
        ops.route("r")


def test_weights_change_alone_and_bump_the_version(ops: RouteOps) -> None:
    ops.create_proxy(ProxySpec("edge", host_port=8080))
    ops.set_route(
        route("shop", BackendRef("v1", "web", weight=90), BackendRef("v2", "api", weight=10))
    )
    before = ops.snapshot("edge")
    assert ops.snapshot("edge").version == before.version  # nothing changed
    ops.store.put(Keys.proxy_status("edge"), {"state": "running"})  # not an input
    assert ops.snapshot("edge").version == before.version
    ops.set_weights("shop", {"v1": 50, "v2": 50})
    after = ops.snapshot("edge")
    assert after.version > before.version
    assert [b.ref.weight for b in after.routes[0].backends] == [50, 50]
    assert after.routes[0].spec.backends[0].service == "web"  # the rest is unchanged
    with pytest.raises(InvalidInput, match="no backend"):
        ops.set_weights("shop", {"v3": 1})
    with pytest.raises(NotFound):
        ops.set_weights("missing", {"v1": 1})


def test_long_poll_answers_on_change_or_times_out(ops: RouteOps) -> None:
    ops.create_proxy(ProxySpec("edge", host_port=8080))
    first = ops.wait_snapshot("edge", None, 0)
    assert first is not None
    assert ops.wait_snapshot("edge", first.version, 0.2) is None  # "304"
    timer = threading.Timer(0.2, lambda: ops.set_route(route("r", BackendRef("web", "web"))))
    timer.start()
    changed = ops.wait_snapshot("edge", first.version, 10)
    timer.join()
    assert changed is not None and changed.version > first.version
    assert [r.spec.name for r in changed.routes] == ["r"]


def test_endpoints_coming_and_going_change_the_snapshot(ops: RouteOps) -> None:
    ops.create_proxy(ProxySpec("edge", host_port=8080))
    ops.set_route(route("r", BackendRef("api", "api")))
    one = ops.snapshot("edge")
    ops.store.put(Keys.pod("api-2"), pod("api-2", "10.89.0.22", app="api").to_dict())
    two = ops.snapshot("edge")
    assert two.version > one.version
    assert [e.address for e in two.routes[0].backends[0].endpoints] == ["10.89.0.21", "10.89.0.22"]


def test_proxy_admission(ops: RouteOps) -> None:
    ops.store.put(Keys.pod("pub"), PodSpec("pub", ports=(PortMapping(8081, 80),)).to_dict())
    with pytest.raises(Conflict, match="pod 'pub'"):
        ops.create_proxy(ProxySpec("e1", host_port=8081))
    ops.create_proxy(ProxySpec("e1", host_port=8082))
    with pytest.raises(Conflict, match="proxy 'e1'"):
        ops.create_proxy(ProxySpec("e2", host_port=8082))
    with pytest.raises(AlreadyExists):
        ops.create_proxy(ProxySpec("e1", host_port=8083))
    with pytest.raises(NotFound, match="pod 'ghost'"):
        ops.create_proxy(ProxySpec("s1", mode="sidecar", pod="ghost"))
    ops.create_proxy(ProxySpec("s1", mode="sidecar", pod="web-1"))
    with pytest.raises(Conflict, match="already has sidecar proxy 's1'"):
        ops.create_proxy(ProxySpec("s2", mode="sidecar", pod="web-1"))
    assert ops.remove_proxy("s1") and not ops.remove_proxy("s1")


def test_port_held_by_a_process_is_refused(ops: RouteOps) -> None:
    ops.service.port_holder = lambda proto, port: "process 'nginx' (pid 7)"
    with pytest.raises(Conflict, match="nginx"):
        ops.create_proxy(ProxySpec("e1", host_port=80))


def test_topology_plan_adds_replaces_removes_only_its_own(ops: RouteOps) -> None:
    owner = "topology:t"
    ops.set_route(route("manual", BackendRef("web", "web")))
    r = route("shop", BackendRef("web", "web"), owner=owner)
    p = ProxySpec("edge", host_port=8080, owner=owner)
    assert ops.apply_desired({"shop": r}, {"edge": p}, owner) == ["+ proxy edge", "+ route shop"]
    ops.service.port_holder = lambda proto, port: "process 'python3' (pid 1)"  # itself, running
    assert ops.apply_desired({"shop": r}, {"edge": p}, owner) == []
    more = ProxySpec("edge", host_port=8080, workers=2, owner=owner)  # same port, new spec
    assert ops.plan_desired({"shop": r}, {"edge": more}, owner)[1] == ["~ proxy edge"]
    with pytest.raises(Conflict, match="python3"):  # a new port someone else holds
        ops.plan_desired({}, {"edge": ProxySpec("edge", host_port=8081, owner=owner)}, owner)
    r2 = route("shop", BackendRef("api", "api"), owner=owner)
    assert ops.apply_desired({"shop": r2}, {}, owner) == ["- proxy edge", "~ route shop"]
    with pytest.raises(Conflict, match="manual"):
        ops.plan_desired(
            {"manual": route("manual", BackendRef("web", "web"), owner=owner)}, {}, owner
        )
    assert ops.apply_desired({}, {}, owner) == ["- route shop"]
    assert set(ops.repo.routes()) == {"manual"}


def test_proxy_argv() -> None:
    edge = proxy_argv(ProxySpec("e", host_port=8080, admin_port=9901, workers=2), None, "py")
    assert edge == (
        "py", "-m", "podnet", "proxy", "run", "--name", "e", "--agent",
        "--listen", "0.0.0.0:8080", "--admin", "127.0.0.1:9901",
        "--workers", "2", "--access-log", "-",
    )  # fmt: skip
    side = proxy_argv(ProxySpec("s", mode="sidecar", pod="p"), "ns-p", "py")
    assert side[:4] == ("ip", "netns", "exec", "ns-p")
    assert "--sidecar" in side and "127.0.0.1:15001" in side
