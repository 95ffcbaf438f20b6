"""Router: matching order, backend shares, endpoint choice, pinning, sticky, mirror, rebuilds."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.model.route import (
    BackendRef,
    CircuitBreaker,
    Match,
    Mirror,
    OutlierDetection,
    Pinning,
    ResolvedBackend,
    ResolvedRoute,
    RouteSpec,
    Snapshot,
    SnapshotEndpoint,
    Sticky,
)
from podnet.proxy.routing import RequestInfo, Router, RouteRuntime, sticky_token


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ep(n: int, *, weight: int = 1, healthy: bool = True, port: int = 80) -> SnapshotEndpoint:
    return SnapshotEndpoint(f"10.0.0.{n}", port, weight, healthy)


Backends = Sequence[tuple[str, int, Sequence[SnapshotEndpoint]]]


def resolved(
    name: str, backends: Backends, match: Match | None = None, **spec: Any
) -> ResolvedRoute:
    refs = tuple(BackendRef(b, b, weight=w) for b, w, _ in backends)
    mirror_eps = spec.pop("mirror_endpoints", None)
    route = RouteSpec(name, match or Match(), refs, **spec)
    mirror = None
    if route.mirror is not None:
        mirror = ResolvedBackend(route.mirror.backend, tuple(mirror_eps or ()))
    pairs = zip(refs, backends, strict=True)
    return ResolvedRoute(
        route, tuple(ResolvedBackend(r, tuple(e)) for r, (_, _, e) in pairs), mirror
    )


def snapshot(*routes: ResolvedRoute, version: int = 1) -> Snapshot:
    return Snapshot("edge", version, tuple(routes))


def req(
    path: str = "/",
    *,
    host: str = "",
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    destination: str = "",
) -> RequestInfo:
    return RequestInfo(method, host, path, headers or {}, cookies or {}, destination)


def router(*routes: ResolvedRoute, seed: int = 1, **kw: Any) -> Router:
    return Router(snapshot(*routes), rng=random.Random(seed), **kw)


def one(route_name: str = "r", **kw: Any) -> ResolvedRoute:
    return resolved(route_name, [("b", 1, [ep(1)])], **kw)


# --- matching --------------------------------------------------------------------------------


def test_match_order_exact_host_wildcard_hostless() -> None:
    table = router(
        one("any"),
        one("wild", match=Match(hosts=("*.example.com",))),
        one("exact", match=Match(hosts=("shop.example.com",))),
        one("api", match=Match(hosts=("*.example.com",), path_prefix="/api")),
    )
    assert table.match(req(host="shop.example.com")).name == "exact"  # type: ignore[union-attr]
    assert table.match(req(host="a.b.example.com")).name == "wild"  # type: ignore[union-attr]
    assert table.match(req("/api/x", host="x.example.com")).name == "api"  # type: ignore[union-attr]
    assert table.match(req(host="example.com")).name == "any"  # type: ignore[union-attr]
    assert table.match(req()).name == "any"  # type: ignore[union-attr]
    assert [r.name for r in table.routes()] == ["exact", "api", "wild", "any"]


def test_host_matching_is_case_insensitive() -> None:
    table = router(one("exact", match=Match(hosts=("Shop.Example.COM", "*.Other.org"))))
    for host in ("shop.example.com", "SHOP.example.com", "a.other.org", "A.OTHER.ORG"):
        assert table.match(req(host=host)) is not None, host
    assert table.match(req(host="other.org")) is None
    assert table.match(req(host="")) is None


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("/api", "/api", True),
        ("/api", "/api/", True),
        ("/api", "/api/v1/x", True),
        ("/api", "/apix", False),
        ("/api", "/ap", False),
        ("/api/", "/api/x", True),
        ("/api/", "/apix", False),
        ("/", "/anything", True),
        ("/a/b", "/a/b/c", True),
        ("/a/b", "/a/bc", False),
    ],
)
def test_path_prefix_is_segment_aware(prefix: str, path: str, expected: bool) -> None:
    table = router(one(match=Match(path_prefix=prefix)))
    assert (table.match(req(path)) is not None) is expected


def test_methods_headers_destinations() -> None:
    table = router(
        one("canary", match=Match(headers={"X-Canary": "1"})),
        one("writes", match=Match(methods=("POST", "PUT"))),
        one("sidecar", match=Match(destinations=("10.96.0.10:80",))),
        one("rest"),
    )
    assert table.match(req(headers={"x-canary": "1"})).name == "canary"  # type: ignore[union-attr]
    assert table.match(req(headers={"x-canary": "2"})).name == "rest"  # type: ignore[union-attr]
    assert table.match(req(method="PUT")).name == "writes"  # type: ignore[union-attr]
    hit = table.match(req(method="PUT", destination="10.96.0.10:80"))
    assert hit is not None and hit.name == "sidecar"
    assert table.match(req(destination="10.96.0.11:80")).name == "rest"  # type: ignore[union-attr]


def test_equal_specificity_keeps_declaration_order_and_no_match_is_none() -> None:
    table = router(one("first", match=Match(path_prefix="/a")), one("second", match=Match()))
    table2 = router(
        one("x", match=Match(hosts=("a.com",))), one("y", match=Match(hosts=("a.com",)))
    )
    assert table.match(req("/a")).name == "first"  # type: ignore[union-attr]
    assert table2.match(req(host="a.com")).name == "x"  # type: ignore[union-attr]
    assert table2.match(req(host="b.com")) is None


def _reference_match(specs: list[RouteSpec], request: RequestInfo) -> str | None:
    """Linear scan over the declared order sorted by specificity, every condition checked."""
    for spec in sorted(specs, key=lambda s: s.match.specificity(), reverse=True):
        m = spec.match
        host = request.host.lower()
        if m.hosts and not any(
            h.lower() == host
            or (h.startswith("*.") and host.endswith(h[1:].lower()) and len(host) > len(h) - 1)
            for h in m.hosts
        ):
            continue
        if m.destinations and request.destination not in m.destinations:
            continue
        p = m.path_prefix.rstrip("/")
        if p and not (request.path == p or request.path.startswith(p + "/")):
            continue
        if m.methods and request.method not in m.methods:
            continue
        if any(request.headers.get(k) != v for k, v in m.headers.items()):
            continue
        return spec.name
    return None


hosts_st = st.sampled_from(["a.com", "b.a.com", "x.b.a.com", "*.a.com", "*.b.a.com", "c.org"])
paths_st = st.sampled_from(["/", "/api", "/api/", "/api/v1", "/apix", "/b"])
match_st = st.builds(
    Match,
    hosts=st.lists(hosts_st, max_size=2, unique=True).map(tuple),
    path_prefix=paths_st,
    methods=st.lists(st.sampled_from(["GET", "POST"]), max_size=1).map(tuple),
    headers=st.dictionaries(st.sampled_from(["x-a"]), st.sampled_from(["1", "2"]), max_size=1),
    destinations=st.lists(st.sampled_from(["10.96.0.1:80"]), max_size=1).map(tuple),
)
request_st = st.builds(
    req,
    paths_st,
    host=st.sampled_from(["a.com", "b.a.com", "x.b.a.com", "y.x.b.a.com", "c.org", "A.COM", ""]),
    method=st.sampled_from(["GET", "POST"]),
    headers=st.dictionaries(st.sampled_from(["x-a"]), st.sampled_from(["1", "2"]), max_size=1),
    destination=st.sampled_from(["", "10.96.0.1:80"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(match_st, min_size=1, max_size=6), st.lists(request_st, min_size=1, max_size=8))
def test_match_agrees_with_a_linear_reference(matches: list[Match], requests: list[Any]) -> None:
    routes = [one(f"r{i}", match=m) for i, m in enumerate(matches)]
    table = router(*routes)
    specs = [r.spec for r in routes]
    for request in requests:
        found = table.match(request)
        assert (found.name if found else None) == _reference_match(specs, request)


# --- backend shares --------------------------------------------------------------------------


def names(route: RouteRuntime, n: int, request: RequestInfo | None = None) -> list[str]:
    out = []
    for _ in range(n):
        pick = route.pick(request or req())
        assert pick is not None
        out.append(pick.backend.name)
    return out


def test_weighted_backends_exact_and_interleaved() -> None:
    table = router(resolved("r", [("a", 5, [ep(1), ep(2)]), ("b", 1, [ep(3)]), ("c", 1, [ep(4)])]))
    route = table.match(req())
    assert route is not None
    assert "".join(names(route, 14)) == "aabacaa" * 2


def test_weight_zero_backend_never_picked() -> None:
    table = router(resolved("r", [("a", 0, [ep(1)]), ("b", 2, [ep(2)]), ("c", 1, [ep(3)])]))
    route = table.routes()[0]
    assert Counter(names(route, 300)) == {"b": 200, "c": 100}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=5).filter(any),
    st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=4),
    st.integers(0, 20),
)
def test_shares_exact_when_backends_leave_and_return(
    weights: list[int], health_rounds: list[list[bool]], offset: int
) -> None:
    """A backend with no usable endpoint gives its share to the others; after every
    snapshot every window of sum(usable weights) picks is exact again."""
    previous: Router | None = None
    for version, health in enumerate([*health_rounds, [True] * 5], start=1):
        backends = [(f"b{i}", w, [ep(i + 1, healthy=health[i])]) for i, w in enumerate(weights)]
        table = Router(
            snapshot(resolved("r", backends), version=version),
            previous,
            rng=random.Random(version),
        )
        previous = table
        route = table.routes()[0]
        expected = {f"b{i}": w for i, w in enumerate(weights) if health[i] and w}
        total = sum(expected.values())
        if not total:
            assert route.pick(req()) is None
            continue
        picks = names(route, offset % total + 2 * total)
        for start in range(len(picks) - total + 1):
            assert Counter(picks[start : start + total]) == expected


def test_wrr_state_survives_rebuild_unless_weights_change() -> None:
    spec = [("a", 3, [ep(1)]), ("b", 2, [ep(2)])]
    uninterrupted = names(router(resolved("r", spec)).routes()[0], 10)
    first = router(resolved("r", spec))
    seq = names(first.routes()[0], 3)
    second = Router(snapshot(resolved("r", spec), version=2), first)
    seq += names(second.routes()[0], 7)
    assert seq == uninterrupted
    changed = Router(snapshot(resolved("r", [("a", 1, [ep(1)]), ("b", 1, [ep(2)])])), second)
    assert names(changed.routes()[0], 2) == ["a", "b"]  # fresh state: a first
    # Another route's change does not reset this one.
    other = Router(
        snapshot(resolved("r", [("a", 1, [ep(1)]), ("b", 1, [ep(2)])]), one("new")), changed
    )
    assert names(other.routes()[0], 2) == ["a", "b"]


# --- endpoints inside a backend --------------------------------------------------------------


def endpoint_ids(route: RouteRuntime, n: int, tried: frozenset[str] = frozenset()) -> list[str]:
    out = []
    for _ in range(n):
        pick = route.pick(req(), tried)
        assert pick is not None
        out.append(pick.endpoint.id)
    return out


def test_round_robin_over_usable_endpoints() -> None:
    eps = [ep(1), ep(2, healthy=False), ep(3, weight=0), ep(4)]
    route = router(resolved("r", [("b", 1, eps)])).routes()[0]
    assert endpoint_ids(route, 4) == ["10.0.0.1:80", "10.0.0.4:80"] * 2


def test_weighted_endpoints_share_by_weight() -> None:
    route = router(resolved("r", [("b", 1, [ep(1, weight=3), ep(2, weight=1)])])).routes()[0]
    assert Counter(endpoint_ids(route, 400)) == {"10.0.0.1:80": 300, "10.0.0.2:80": 100}


@pytest.mark.parametrize("balancer", ["round_robin", "least_request", "peak_ewma"])
def test_tried_endpoints_avoided_until_none_is_left(balancer: str) -> None:
    eps = [ep(1), ep(2), ep(3)]
    route = router(resolved("r", [("b", 1, eps)], balancer=balancer)).routes()[0]
    tried = frozenset({"10.0.0.1:80", "10.0.0.2:80"})
    assert set(endpoint_ids(route, 20, tried)) == {"10.0.0.3:80"}
    everything = frozenset(e.id for e in eps)
    assert set(endpoint_ids(route, 60, everything)) == everything


def test_retry_prefers_a_backend_with_an_untried_endpoint() -> None:
    route = router(resolved("r", [("a", 9, [ep(1)]), ("b", 1, [ep(2)])])).routes()[0]
    picks = [route.pick(req(), frozenset({"10.0.0.1:80"})) for _ in range(30)]
    assert {p.backend.name for p in picks if p} == {"b"}
    # Retries leave the first-try sequence alone.
    assert "".join(names(route, 10)) == "aaaaabaaaa"


def test_least_request_avoids_busy_endpoints() -> None:
    route = router(resolved("r", [("b", 1, [ep(1), ep(2)])], balancer="least_request")).routes()[0]
    busy = route.backends[0].endpoints[0]
    busy.start()
    assert set(endpoint_ids(route, 30)) == {"10.0.0.2:80"}


def test_peak_ewma_prefers_fast_and_new_endpoints_get_a_neutral_cost() -> None:
    clock = Clock()
    first = router(resolved("r", [("b", 1, [ep(1), ep(2)])], balancer="peak_ewma"), clock=clock)
    backend = first.routes()[0].backends[0]
    slow, fast = backend.endpoints
    for endpoint, seconds in ((slow, 0.2), (fast, 0.01)):
        started = endpoint.start()
        clock.now += seconds
        endpoint.finish(started, "ok")
    assert set(endpoint_ids(first.routes()[0], 20)) == {fast.id}
    second = Router(
        snapshot(resolved("r", [("b", 1, [ep(1), ep(2), ep(3)])], balancer="peak_ewma")),
        first,
        rng=random.Random(2),
        clock=clock,
    )
    new = second.routes()[0].backends[0].endpoints[2]
    assert new.ewma.value(clock.now) == pytest.approx((0.2 + 0.01) / 2, rel=0.01)
    assert new.id in endpoint_ids(second.routes()[0], 30)


# --- outlier ejection through finish() -------------------------------------------------------


def test_failing_endpoint_is_ejected_and_returns() -> None:
    clock = Clock()
    outlier = OutlierDetection(consecutive_errors=2, base_ejection=10)
    table = router(resolved("r", [("b", 1, [ep(1), ep(2)])], outlier=outlier), clock=clock)
    route = table.routes()[0]
    bad = route.backends[0].endpoints[0]
    for _ in range(2):
        bad.finish(bad.start(), "error")
    assert route.backends[0].outlier.ejections_total() == 1
    assert set(endpoint_ids(route, 10)) == {"10.0.0.2:80"}
    clock.now += 10
    assert set(endpoint_ids(route, 10)) == {"10.0.0.1:80", "10.0.0.2:80"}


def test_ejection_state_survives_rebuild() -> None:
    clock = Clock()
    outlier = OutlierDetection(consecutive_errors=1, base_ejection=10)
    first = router(resolved("r", [("b", 1, [ep(1), ep(2)])], outlier=outlier), clock=clock)
    bad = first.routes()[0].backends[0].endpoints[0]
    bad.finish(bad.start(), "error")
    second = Router(
        snapshot(resolved("r", [("b", 1, [ep(1), ep(2), ep(3)])], outlier=outlier)),
        first,
        clock=clock,
    )
    assert "10.0.0.1:80" not in endpoint_ids(second.routes()[0], 20)
    assert second.routes()[0].backends[0].outlier.ejections_total() == 1


# --- pinning, sticky, mirror -----------------------------------------------------------------


def test_pinning_by_header_or_cookie() -> None:
    pinning = Pinning(header="X-Backend", cookie="backend")
    route = router(
        resolved(
            "r",
            [("stable", 1, [ep(1)]), ("canary", 0, [ep(2)]), ("down", 1, [ep(3, healthy=False)])],
            pinning=pinning,
        )
    ).routes()[0]
    assert set(names(route, 5, req(headers={"x-backend": "canary"}))) == {"canary"}
    assert set(names(route, 5, req(cookies={"backend": "canary"}))) == {"canary"}
    header_wins = req(headers={"x-backend": "stable"}, cookies={"backend": "canary"})
    assert set(names(route, 5, header_wins)) == {"stable"}
    # Unknown name, or a backend without a usable endpoint: the normal choice.
    assert set(names(route, 5, req(headers={"x-backend": "nope"}))) == {"stable"}
    assert set(names(route, 5, req(headers={"x-backend": "down"}))) == {"stable"}


def test_sticky_sets_cookie_once_and_follows_it() -> None:
    sticky = Sticky(cookie="sid", ttl=60)
    route = router(resolved("r", [("b", 1, [ep(1), ep(2), ep(3)])], sticky=sticky)).routes()[0]
    first = route.pick(req())
    assert first is not None and first.set_cookie is not None
    token = sticky_token(first.endpoint.id)
    assert first.set_cookie == f"sid={token}; Max-Age=60; Path=/; HttpOnly"
    assert token != first.endpoint.id and "=" not in token
    again = [route.pick(req(cookies={"sid": token})) for _ in range(10)]
    assert {(p.endpoint.id, p.set_cookie) for p in again if p} == {(first.endpoint.id, None)}
    bogus = route.pick(req(cookies={"sid": "garbage"}))
    assert bogus is not None and bogus.set_cookie is not None
    # A retry must go elsewhere, and re-stick the client there.
    retry = route.pick(req(cookies={"sid": token}), frozenset({first.endpoint.id}))
    assert retry is not None and retry.endpoint.id != first.endpoint.id
    assert retry.set_cookie is not None and sticky_token(retry.endpoint.id) in retry.set_cookie


def test_sticky_endpoint_gone_unhealthy_goes_elsewhere() -> None:
    sticky = Sticky()
    first = router(resolved("r", [("b", 1, [ep(1), ep(2)])], sticky=sticky))
    token = sticky_token("10.0.0.1:80")
    second = Router(
        snapshot(resolved("r", [("b", 1, [ep(1, healthy=False), ep(2)])], sticky=sticky)), first
    )
    pick = second.routes()[0].pick(req(cookies={"podnet-sticky": token}))
    assert pick is not None and pick.endpoint.id == "10.0.0.2:80" and pick.set_cookie


def test_sticky_inside_a_pinned_backend() -> None:
    route = router(
        resolved(
            "r",
            [("a", 1, [ep(1)]), ("b", 1, [ep(2), ep(3)])],
            sticky=Sticky(),
            pinning=Pinning(header="x-b"),
        )
    ).routes()[0]
    token = sticky_token("10.0.0.3:80")
    picks = [route.pick(req(headers={"x-b": "b"}, cookies={"podnet-sticky": token}))]
    picks += [route.pick(req(headers={"x-b": "b"}, cookies={"podnet-sticky": token}))]
    assert {(p.endpoint.id, p.set_cookie) for p in picks if p} == {("10.0.0.3:80", None)}


def test_mirror_percent_is_decided_per_request() -> None:
    mirror = Mirror(BackendRef("shadow", "shadow"), percent=30)
    route = router(
        resolved("r", [("b", 1, [ep(1)])], mirror=mirror, mirror_endpoints=[ep(9)]), seed=4
    ).routes()[0]
    picks = [route.mirror(req()) for _ in range(2000)]
    hits = [p for p in picks if p is not None]
    assert 500 < len(hits) < 700
    assert {(p.backend.name, p.endpoint.id) for p in hits} == {("shadow", "10.0.0.9:80")}
    full = router(
        resolved(
            "r", [("b", 1, [ep(1)])], mirror=Mirror(BackendRef("s", "s")), mirror_endpoints=[ep(9)]
        )
    ).routes()[0]
    assert all(full.mirror(req()) is not None for _ in range(50))
    assert router(one()).routes()[0].mirror(req()) is None


def test_no_usable_endpoint_gives_none() -> None:
    route = router(resolved("r", [("b", 1, [ep(1, healthy=False)]), ("c", 1, [])])).routes()[0]
    assert route.pick(req()) is None
    assert route.pick(req(), frozenset({"x"})) is None


# --- rebuilds --------------------------------------------------------------------------------


def test_rebuild_keeps_in_flight_breaker_and_budget_and_drops_gone_endpoints() -> None:
    breaker = CircuitBreaker(max_requests=2)
    first = router(resolved("r", [("b", 1, [ep(1), ep(2)])], circuit_breaker=breaker))
    route = first.routes()[0]
    backend = route.backends[0]
    endpoint = backend.by_id["10.0.0.1:80"]
    started = endpoint.start()
    assert backend.breaker.try_acquire("requests")
    route.budget.request_started()
    second = Router(
        snapshot(resolved("r", [("b", 1, [ep(1), ep(3)])], circuit_breaker=breaker), version=7),
        first,
    )
    assert second.version == 7
    new_backend = second.routes()[0].backends[0]
    assert new_backend.by_id["10.0.0.1:80"].in_flight == 1
    assert "10.0.0.2:80" not in new_backend.by_id
    assert new_backend.breaker.counts()["requests"] == 1
    assert second.routes()[0].budget is route.budget  # its window of requests and retries
    endpoint.finish(started, "ok")  # the request started on the old table ends
    assert new_backend.by_id["10.0.0.1:80"].in_flight == 0


def test_rebuild_applies_weight_and_health_at_once() -> None:
    first = router(resolved("r", [("a", 1, [ep(1)]), ("b", 1, [ep(2)])]))
    names(first.routes()[0], 3)
    second = Router(snapshot(resolved("r", [("a", 0, [ep(1)]), ("b", 1, [ep(2)])])), first)
    assert set(names(second.routes()[0], 10)) == {"b"}
    third = Router(
        snapshot(resolved("r", [("a", 1, [ep(1)]), ("b", 1, [ep(2, healthy=False)])])), second
    )
    assert set(names(third.routes()[0], 10)) == {"a"}


def test_parse_cookies() -> None:
    parsed = RequestInfo.parse_cookies(['a=1; b="two"; junk; =x', "a=other; c = 3 "])
    assert parsed == {"a": "1", "b": "two", "c": "3"}
    assert RequestInfo.parse_cookies([]) == {}
