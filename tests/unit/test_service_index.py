"""The service index follows store events to exactly what a full re-read gives,
and re-derives only the services an event can affect."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.controller.service_index import ServiceIndex
from podnet.controller.state import Keys
from podnet.lb.endpoints import endpoints_of, ready_endpoints
from podnet.model.pod import Interface, PodSpec
from podnet.model.service import Endpoint, HealthCheck, ServicePort, ServiceSpec
from podnet.store.memory import MemoryStore


def service(name: str, app: str | None = None, *manual: str, health: str = "none") -> ServiceSpec:
    return ServiceSpec(
        name,
        (ServicePort(80, 8080),),
        selector={"app": app} if app else {},
        endpoints=tuple(Endpoint(ipaddress.ip_address(a)) for a in manual),
        health=HealthCheck(kind=health),
        vips=(ipaddress.ip_address("10.96.0.1"),),
    )


def pod(name: str, address: str, running: bool = True, **labels: str) -> PodSpec:
    iface = Interface("n1", "eth0", f"pnv{name}", (ipaddress.ip_interface(f"{address}/24"),))
    return PodSpec(name, labels=labels, running=running, interfaces=(iface,))


def brute_force(store: MemoryStore) -> dict[str, tuple[Endpoint, ...]]:
    specs = {
        e.key.removeprefix(Keys.SERVICES): ServiceSpec.from_dict(e.value)
        for e in store.list(Keys.SERVICES)
    }
    pods = [PodSpec.from_dict(e.value) for e in store.list(Keys.PODS)]
    health = {}
    for e in store.list(Keys.HEALTH):
        svc, _, addr = e.key.removeprefix(Keys.HEALTH).partition("/")
        health[(svc, addr)] = e.value["state"]
    return {n: tuple(ready_endpoints(s, endpoints_of(s, pods), health)) for n, s in specs.items()}


def test_first_refresh_reads_everything() -> None:
    store = MemoryStore()
    store.put(Keys.service("web"), service("web", "web").to_dict())
    store.put(Keys.pod("w1"), pod("w1", "10.0.0.2", app="web").to_dict())
    store.put(Keys.pod("db"), pod("db", "10.0.0.3", app="db").to_dict())
    index = ServiceIndex(store)
    index.refresh()
    assert index.take_changes() is None  # a full read: anything may have changed
    assert [str(e.address) for e in index.state().endpoints["web"]] == ["10.0.0.2"]
    assert index.revision == store.revision()


def test_only_affected_services_change_and_others_keep_their_objects() -> None:
    store = MemoryStore()
    for i in range(50):
        store.put(Keys.service(f"s{i}"), service(f"s{i}", f"app{i}").to_dict())
        store.put(Keys.pod(f"p{i}"), pod(f"p{i}", f"10.0.{i}.2", app=f"app{i}").to_dict())
    index = ServiceIndex(store)
    index.refresh()
    index.take_changes()
    before = index.state()
    store.put(Keys.pod("p7b"), pod("p7b", "10.1.7.2", app="app7").to_dict())
    index.refresh()
    assert index.take_changes() == {"s7"}
    after = index.state()
    assert len(after.endpoints["s7"]) == 2
    assert all(after.endpoints[f"s{i}"] is before.endpoints[f"s{i}"] for i in range(50) if i != 7)
    assert all(after.services[f"s{i}"] is before.services[f"s{i}"] for i in range(50))
    assert before.endpoints["s7"] is not after.endpoints["s7"]  # the old state is untouched
    assert len(before.endpoints["s7"]) == 1


def test_relabelled_pod_leaves_one_service_and_joins_another() -> None:
    store = MemoryStore()
    store.put(Keys.service("a"), service("a", "a").to_dict())
    store.put(Keys.service("b"), service("b", "b").to_dict())
    store.put(Keys.pod("p"), pod("p", "10.0.0.2", app="a").to_dict())
    index = ServiceIndex(store)
    index.refresh()
    index.take_changes()
    store.put(Keys.pod("p"), pod("p", "10.0.0.2", app="b").to_dict())
    index.refresh()
    assert index.take_changes() == {"a", "b"}
    assert index.state().endpoints["a"] == ()
    assert len(index.state().endpoints["b"]) == 1


def test_health_and_deletes() -> None:
    store = MemoryStore()
    store.put(
        Keys.service("hc"), service("hc", None, "10.0.0.5", "10.0.0.6", health="tcp").to_dict()
    )
    index = ServiceIndex(store)
    index.refresh()
    assert index.state().endpoints["hc"] == ()  # not checked yet: not ready
    index.take_changes()
    store.put(Keys.HEALTH + "hc/10.0.0.5", {"state": "healthy"})
    index.refresh()
    assert index.take_changes() == {"hc"}
    assert [str(e.address) for e in index.state().endpoints["hc"]] == ["10.0.0.5"]
    store.delete(Keys.service("hc"))
    index.refresh()
    assert index.take_changes() == {"hc"}
    assert "hc" not in index.state().services and "hc" not in index.state().endpoints


def test_changes_accumulate_across_refreshes_until_taken() -> None:
    store = MemoryStore()
    store.put(Keys.service("a"), service("a", None, "10.0.0.1").to_dict())
    store.put(Keys.service("b"), service("b", None, "10.0.0.2").to_dict())
    index = ServiceIndex(store)
    index.refresh()
    index.take_changes()
    store.put(Keys.service("a"), service("a", None, "10.0.0.9").to_dict())
    index.refresh()
    store.put(Keys.service("b"), service("b", None, "10.0.0.8").to_dict())
    index.refresh()
    assert index.take_changes() == {"a", "b"}
    assert index.take_changes() == frozenset()


def test_compacted_history_means_a_full_read() -> None:
    store = MemoryStore(history=2)
    store.put(Keys.service("a"), service("a", None, "10.0.0.1").to_dict())
    index = ServiceIndex(store)
    index.refresh()
    index.take_changes()
    for i in range(5):
        store.put(Keys.service(f"x{i}"), service(f"x{i}", None, "10.0.0.2").to_dict())
    index.refresh()
    assert index.take_changes() is None
    assert set(index.state().services) == {"a", *(f"x{i}" for i in range(5))}


_ops = st.lists(
    st.tuples(
        st.sampled_from(["svc", "svc-rm", "pod", "pod-rm", "health", "health-rm"]),
        st.integers(0, 4),
        st.integers(0, 3),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(_ops, st.integers(1, 6))
def test_index_equals_a_full_reread_after_any_events(
    ops: list[tuple[str, int, int, bool]], every: int
) -> None:
    store = MemoryStore()
    index = ServiceIndex(store)
    rng = random.Random(0)
    for step, (op, i, j, flag) in enumerate(ops):
        if op == "svc":
            spec = service(f"s{i}", f"app{j}", health="tcp" if flag else "none")
            store.put(Keys.service(f"s{i}"), spec.to_dict())
        elif op == "svc-rm":
            store.delete(Keys.service(f"s{i}"))
        elif op == "pod":
            p = pod(f"p{i}", f"10.0.{i}.{j + 2}", running=flag or rng.random() < 0.5, app=f"app{j}")
            store.put(Keys.pod(f"p{i}"), p.to_dict())
        elif op == "pod-rm":
            store.delete(Keys.pod(f"p{i}"))
        elif op == "health":
            state = "healthy" if flag else "unhealthy"
            store.put(f"{Keys.HEALTH}s{i}/10.0.{j}.{j + 2}", {"state": state})
        else:
            store.delete(f"{Keys.HEALTH}s{i}/10.0.{j}.{j + 2}")
        if step % every == 0:
            index.refresh()
    index.refresh()
    assert dict(index.state().endpoints) == brute_force(store)
    assert set(index.state().services) == set(brute_force(store))
