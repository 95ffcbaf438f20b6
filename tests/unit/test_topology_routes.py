"""The ``routes:`` and ``proxies:`` sections of topology files and their schema."""

from __future__ import annotations

import json
import textwrap

import pytest

from podnet.model.route import BackendRef, RouteSpec
from podnet.topology import Problem, TopologyError, loads, schema_text


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def problems(text: str) -> list[Problem]:
    with pytest.raises(TopologyError) as info:
        loads(doc(text), "t.yaml")
    return info.value.problems


FILE = """
name: shop
pods:
  client: {networks: []}
routes:
  shop:
    match: {hosts: [shop.example], path_prefix: /api, headers: {X-Beta: "1"}}
    backends:
      - web:version=v1@90
      - {service: web, subset: {version: v2}, weight: 10, port: 8080}
    balancer: peak_ewma
    sticky: true
    mirror: {backend: shadow, percent: 5}
    timeouts: {connect: 0.5, per_try: 2}
    retries: {attempts: 2, on: [connect-failure, "503"]}
    circuit_breaker: {max_requests: 100}
    outlier: {consecutive_5xx: 2}
    proxies: [edge]
proxies:
  edge: {host_port: 8080, workers: 2}
  side: {mode: sidecar, pod: client}
"""


def test_routes_and_proxies_load_as_specs_owned_by_the_topology() -> None:
    topo = loads(doc(FILE), "t.yaml")
    (shop,) = topo.routes
    assert shop.owner == "topology:shop"
    assert shop.backends == (
        BackendRef("web-v1", "web", {"version": "v1"}, 90),
        BackendRef("web-v2", "web", {"version": "v2"}, 10, 8080),
    )
    assert dict(shop.match.headers) == {"x-beta": "1"}
    assert shop.sticky is not None and shop.mirror is not None
    assert shop.mirror.backend.service == "shadow" and shop.retries.attempts == 2
    assert (shop.circuit_breaker.max_requests, shop.outlier.consecutive_5xx) == (100, 2)
    assert RouteSpec.from_dict(shop.to_dict()) == shop
    edge, side = topo.proxies
    assert (edge.mode, edge.host_port, edge.workers, edge.owner) == ("edge", 8080, 2, topo.owner)
    assert (side.mode, side.pod, side.listen_port) == ("sidecar", "client", 15001)


def test_schema_describes_routes_and_proxies() -> None:
    schema = json.loads(schema_text())
    assert {"routes", "proxies"} <= set(schema["properties"])
    assert schema["$defs"]["route"]["properties"]["balancer"]["enum"] == [
        "round_robin",
        "least_request",
        "peak_ewma",
    ]


def test_errors_are_reported_at_their_line_with_a_fix() -> None:
    found = problems(
        """
        name: t
        routes:
          shop:
            backends: [web@x]
            balancer: random
            retries: {atempts: 2}
          empty: {}
          Bad: {backends: [web]}
        proxies:
          p: {host_port: 70000}
        """
    )
    text = [str(p) for p in found]
    assert any("t.yaml:4:" in t and "backend 'web@x' is not valid" in t for t in text), text
    assert any("t.yaml:5:" in t and "not one of" in t and "round_robin" in t for t in text), text
    assert any(
        "t.yaml:6:" in t and "'atempts'" in t and "did you mean 'attempts'" in t for t in text
    )
    assert any("t.yaml:7:" in t and "missing the required key 'backends'" in t for t in text), text
    assert any("t.yaml:8:" in t and "route name 'Bad'" in t for t in text), text
    assert any("t.yaml:10:" in t and "maximum is 65535" in t for t in text), text
    assert len(text) == 6, text  # each once: the model's checks wait for a well-shaped file


def test_model_checks_run_on_a_well_shaped_file() -> None:
    text = [
        str(p)
        for p in problems(
            """
            name: t
            routes:
              shop: {backends: [web@0], timeouts: {per_try: 40}}
            proxies:
              edge: {}
              side: {mode: sidecar}
            """
        )
    ]
    assert any("t.yaml:3:" in t and "weight 0" in t for t in text), text
    assert any("t.yaml:5:" in t and "has no host port" in t for t in text), text
    assert any("t.yaml:6:" in t and "names no pod" in t for t in text), text


def test_files_without_the_sections_have_none() -> None:
    topo = loads("name: plain\n", "t.yaml")
    assert topo.routes == () and topo.proxies == ()
