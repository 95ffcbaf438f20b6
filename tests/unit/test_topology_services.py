"""The ``services:`` section of topology files: the CLI's words, the model's checks."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from podnet.model.service import HealthCheck, ServicePort
from podnet.topology import Problem, TopologyError, loads


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def problems(text: str) -> list[Problem]:
    with pytest.raises(TopologyError) as info:
        loads(doc(text), "t.yaml")
    return info.value.problems


def test_services_load_in_the_cli_words_owned_by_the_topology() -> None:
    topo = loads(
        doc(
            """
            name: shop
            services:
              web:
                ports: [http=80:8080, 53/udp]
                selector: {app: web}
                lb: maglev
                affinity: client-ip:600
                publish: "8088:80"
                health: {kind: http, path: /healthz, interval: 1, timeout: 0.5}
              legacy:
                ports: 443
                endpoints: [192.0.2.10, 192.0.2.11@3]
            """
        ),
        "t.yaml",
    )
    by_name = {s.name: s for s in topo.services}
    web, legacy = by_name["web"], by_name["legacy"]
    assert web.ports == (
        ServicePort(80, 8080, "tcp", "http", host_port=8088),
        ServicePort(53, 53, "udp"),
    )
    assert web.selector == {"app": "web"} and web.lb == "maglev" and web.affinity_timeout == 600
    assert web.health == HealthCheck(kind="http", path="/healthz", interval=1, timeout=0.5)
    assert web.owner == topo.owner == legacy.owner and not web.vips
    assert [(str(e.address), e.weight) for e in legacy.endpoints] == [
        ("192.0.2.10", 1),
        ("192.0.2.11", 3),
    ]
    assert legacy.ports[0].port == 443 and legacy.health == HealthCheck()
    assert ipaddress.ip_address("192.0.2.10") == legacy.endpoints[0].address


def test_bad_services_are_reported_at_their_line_with_a_fix() -> None:
    found = problems(
        """
        name: shop
        services:
          web:
            ports: [80]
            selector: {app: web}
            endpoints: [10.0.0.9]
          api:
            ports: ["80:99999"]
          db:
            ports: [5432]
            publish: ["9999:80"]
          Bad_Name:
            ports: [80]
        """
    )
    text = "\n".join(str(p) for p in found)
    assert "both a selector and manual endpoints" in text
    assert "out of range" in text
    assert "names no port of the service" in text
    assert "Bad_Name" in text
    assert all(p.line for p in found)  # each at its line


def test_the_schema_refuses_unknown_service_fields() -> None:
    found = problems(
        """
        name: shop
        services:
          web: {ports: [80], selecter: {app: web}}
        """
    )
    assert any("selecter" in str(p) for p in found)
