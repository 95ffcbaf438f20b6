"""``podnet route set`` and ``podnet proxy create`` parsing: the --backend grammar,
--weight, the policy flags, and the specs they build."""

from __future__ import annotations

import argparse

import pytest

from podnet.cli.main import _parser
from podnet.cli.proxies import proxy_spec
from podnet.cli.routes import parse_mirror, parse_weights, route_spec
from podnet.errors import InvalidInput
from podnet.model.route import BackendRef
from podnet.topology.routes import parse_backend


def args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(list(argv))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web", BackendRef("web", "web")),
        ("web@90", BackendRef("web", "web", weight=90)),
        ("web=main", BackendRef("main", "web")),
        ("web@10=canary", BackendRef("canary", "web", weight=10)),
        ("web:version=v2", BackendRef("web-v2", "web", {"version": "v2"})),
        ("web:version=v2@0", BackendRef("web-v2", "web", {"version": "v2"}, weight=0)),
        ("web:version=v2,zone=a@5=b", BackendRef("b", "web", {"version": "v2", "zone": "a"}, 5)),
        ("web:version=v2=canary", BackendRef("canary", "web", {"version": "v2"})),
    ],
)
def test_backend_grammar(text: str, expected: BackendRef) -> None:
    assert parse_backend(text) == expected


@pytest.mark.parametrize(
    "text", ["", "@5", "web@x", "web:version", "web:=v2", "web:a=b=c@5=d", "web=a@5=b", "web@5@6"]
)
def test_bad_backends_are_refused_with_the_grammar(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_backend(text)
    assert err.value.hint is not None and "SERVICE" in err.value.hint


def test_weights_and_mirror() -> None:
    assert parse_weights(["web-v1=50", "web-v2=50"]) == {"web-v1": 50, "web-v2": 50}
    for bad in ("web-v1", "=5", "web-v1=-1", "web-v1=x"):
        with pytest.raises(InvalidInput, match="weight"):
            parse_weights([bad])
    mirror = parse_mirror("web:version=v2@12.5")
    assert mirror.percent == 12.5 and mirror.backend.subset == {"version": "v2"}
    for bad in ("web", "web@0", "web@101", "web@x"):
        with pytest.raises(InvalidInput, match="mirror"):
            parse_mirror(bad)


def test_route_set_builds_the_whole_spec() -> None:
    ns = args(
        "route", "set", "shop", "--host", "shop.example", "--path", "/api", "--method", "GET",
        "--header", "X-Beta=1", "--backend", "web-v1@90", "--backend", "web:version=v2@10",
        "--balancer", "least_request", "--pin-header", "x-backend", "--sticky",
        "--mirror", "shadow@5", "--timeout-connect", "0.5", "--timeout-try", "2",
        "--retries", "2", "--retry-on", "connect-failure,503", "--retry-non-idempotent",
        "--max-connections", "10", "--eject-after-5xx", "2", "--eject-time", "400",
        "--proxy", "edge",
    )  # fmt: skip
    spec = route_spec(ns)
    assert spec.match.hosts == ("shop.example",) and spec.match.path_prefix == "/api"
    assert spec.match.methods == ("GET",) and dict(spec.match.headers) == {"x-beta": "1"}
    assert [(b.name, b.weight) for b in spec.backends] == [("web-v1", 90), ("web-v2", 10)]
    assert spec.balancer == "least_request" and spec.pinning.header == "x-backend"
    assert spec.sticky is not None and spec.sticky.cookie == "podnet-sticky"
    assert spec.mirror is not None and spec.mirror.percent == 5
    assert (spec.timeouts.connect, spec.timeouts.per_try) == (0.5, 2)
    assert spec.retries.attempts == 3 and spec.retries.on == ("connect-failure", "503")
    assert spec.retries.non_idempotent
    assert spec.circuit_breaker.max_connections == 10
    assert spec.outlier.consecutive_5xx == 2 and spec.outlier.max_ejection >= 400
    assert spec.proxies == ("edge",)


def test_route_set_defaults_and_checks() -> None:
    spec = route_spec(args("route", "set", "r", "--backend", "web"))
    assert spec.retries.attempts == 3 and spec.sticky is None and spec.proxies == ()
    assert (
        route_spec(
            args("route", "set", "r", "--backend", "w", "--timeout-try", "60")
        ).timeouts.request
        == 60
    )
    with pytest.raises(InvalidInput, match="retry condition"):
        route_spec(args("route", "set", "r", "--backend", "w", "--retry-on", "sometimes"))
    with pytest.raises(InvalidInput, match="weight 0"):
        route_spec(args("route", "set", "r", "--backend", "w@0"))
    ns = args("route", "set", "r", "--sticky=sid", "--backend", "w", "--retries", "0")
    assert route_spec(ns).sticky.cookie == "sid"  # type: ignore[union-attr]
    assert route_spec(ns).retries.attempts == 1


def test_proxy_create() -> None:
    edge = proxy_spec(args("proxy", "create", "edge", "--port", "8080", "--workers", "2"))
    assert (edge.mode, edge.host_port, edge.workers) == ("edge", 8080, 2)
    side = proxy_spec(args("proxy", "create", "s", "--sidecar", "--pod", "client"))
    assert (side.mode, side.pod, side.listen_port) == ("sidecar", "client", 15001)
    with pytest.raises(InvalidInput, match="no host port"):
        proxy_spec(args("proxy", "create", "edge"))
    with pytest.raises(InvalidInput, match="names no pod"):
        proxy_spec(args("proxy", "create", "s", "--sidecar"))
    with pytest.raises(InvalidInput, match="--sidecar"):
        proxy_spec(args("proxy", "create", "s", "--pod", "client", "--port", "1"))
