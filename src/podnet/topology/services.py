"""The ``services:`` section of a topology file.

Services by name, in the CLI's words (``podnet service create``)::

    services:
      web:
        ports: [http=80:8080]        # [NAME=]PORT[:TARGET][/udp]; one string is fine
        selector: {app: web}         # or endpoints: [10.0.0.5, 10.0.0.6@2]
        lb: maglev                   # random (default), roundrobin, maglev
        affinity: client-ip:600      # optional
        headless: false
        publish: ["8088:80"]         # HOST_PORT:PORT on the node
        health: {kind: http, path: /health, interval: 1, timeout: 0.5}

Virtual IPs are the agent's to give (``up`` keeps a service's VIPs when it
changes); each entry is checked by the model's own rules and reported at its
line.
"""

from __future__ import annotations

from typing import Any

from podnet.errors import InvalidInput
from podnet.model.service import (
    HealthCheck,
    ServicePort,
    ServiceSpec,
    parse_affinity,
    parse_endpoint,
    publish,
)
from podnet.topology.fields import mapping, name_ok, string_map
from podnet.topology.problems import Path, Problems

__all__ = ["build_services"]

_FIELDS = frozenset(
    {"ports", "selector", "endpoints", "lb", "affinity", "headless", "publish", "health"}
)


def _texts(value: object) -> list[str]:
    """A string or a list of them (numbers are written as they read)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items]


def _service(name: str, data: dict[str, Any], owner: str) -> ServiceSpec:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise InvalidInput(
            f"service {name!r} has unknown field(s) {', '.join(unknown)}",
            hint="fields: " + ", ".join(sorted(_FIELDS)),
        )
    ports = [ServicePort.parse(p) for p in _texts(data.get("ports"))]
    health = mapping(data.get("health"))
    return ServiceSpec(
        name=name,
        ports=publish(ports, _texts(data.get("publish"))),
        selector=string_map(data.get("selector")),
        lb=str(data.get("lb", "random")),
        affinity_timeout=parse_affinity(
            None if data.get("affinity") is None else str(data["affinity"])
        ),
        headless=bool(data.get("headless", False)),
        endpoints=tuple(parse_endpoint(e) for e in _texts(data.get("endpoints"))),
        health=HealthCheck.from_dict(health) if health else HealthCheck(),
        owner=owner,
    ).validate()


def build_services(section: object, owner: str, problems: Problems) -> list[ServiceSpec]:
    """Every service of the ``services:`` section, owned by ``owner``."""
    out: list[ServiceSpec] = []
    for name, spec in mapping(section).items():
        path: Path = ("services", name)
        if not name_ok("service", name, path, problems):
            continue
        try:
            out.append(_service(name, mapping(spec), owner))
        except InvalidInput as exc:
            problems.add(path, exc.message, exc.hint, key=True)
        except (TypeError, ValueError) as exc:  # shapes the schema let through
            problems.add(path, f"service {name!r} is not valid: {exc}", None, key=True)
    return out
