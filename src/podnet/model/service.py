"""Services: a stable name and virtual IP in front of a changing set of endpoints.

A service selects pods by labels (or lists manual endpoints), balances L4
traffic to its virtual IP in the kernel by a policy, answers in DNS, and
health-checks its endpoints. This module holds the types only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from podnet.errors import InvalidInput
from podnet.model.names import check_name
from podnet.model.network import IPAddress, parse_ip
from podnet.model.ports import PROTOCOLS

__all__ = [
    "LB_POLICIES",
    "Endpoint",
    "HealthCheck",
    "ServicePort",
    "ServiceSpec",
    "parse_affinity",
    "parse_endpoint",
    "publish",
]

LB_POLICIES = ("random", "roundrobin", "maglev")
_PORT = re.compile(
    r"(?:(?P<name>[a-z][a-z0-9-]{0,14})=)?(?P<port>\d+)(?::(?P<target>\d+))?(?:/(?P<proto>[a-z]+))?"
)
_PORT_HINT = "write [NAME=]PORT[:TARGET_PORT][/tcp|/udp], e.g. 80, http=80:8080 or 53/udp"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """``port`` on the virtual IP goes to ``target_port`` on each endpoint.

    ``name`` makes DNS SRV records (``_name._proto.service``); ``host_port``
    publishes the service on the node's addresses with no proxy in the path.
    """

    port: int
    target_port: int
    protocol: str = "tcp"
    name: str | None = None
    host_port: int | None = None

    @staticmethod
    def parse(text: str) -> ServicePort:
        match = _PORT.fullmatch(text.strip())
        if not match:
            raise InvalidInput(f"service port {text!r} is not valid", hint=_PORT_HINT)
        proto = match["proto"] or "tcp"
        if proto not in PROTOCOLS:
            raise InvalidInput(f"protocol {proto!r} in {text!r} is not tcp or udp", hint=_PORT_HINT)
        port = int(match["port"])
        target = int(match["target"] or port)
        for value in (port, target):
            if not 1 <= value <= 65535:
                raise InvalidInput(f"port {value} in {text!r} is out of range", hint=_PORT_HINT)
        return ServicePort(port, target, proto, match["name"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "target_port": self.target_port,
            "protocol": self.protocol,
            "name": self.name,
            "host_port": self.host_port,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> ServicePort:
        return ServicePort(
            port=int(data["port"]),
            target_port=int(data.get("target_port") or data["port"]),
            protocol=str(data.get("protocol", "tcp")),
            name=data.get("name"),
            host_port=data.get("host_port"),
        )


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How endpoints are checked. ``kind``: none, tcp (connect) or http (GET)."""

    kind: str = "tcp"
    path: str = "/health"
    expect_status: int = 200
    interval: float = 2.0
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3

    def validate(self) -> HealthCheck:
        if self.kind not in ("none", "tcp", "http"):
            raise InvalidInput(
                f"health check kind {self.kind!r} is unknown", hint="use none, tcp or http"
            )
        if not (0 < self.timeout <= self.interval):
            raise InvalidInput(
                f"health check timeout {self.timeout}s must be above 0 and at most the "
                f"interval {self.interval}s",
                hint="e.g. --health-interval 2 --health-timeout 1",
            )
        if self.healthy_threshold < 1 or self.unhealthy_threshold < 1:
            raise InvalidInput("health check thresholds must be at least 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "expect_status": self.expect_status,
            "interval": self.interval,
            "timeout": self.timeout,
            "healthy_threshold": self.healthy_threshold,
            "unhealthy_threshold": self.unhealthy_threshold,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> HealthCheck:
        return HealthCheck(**{k: data[k] for k in data if k in HealthCheck.__slots__})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend address of a service, with its weight and health."""

    address: IPAddress
    pod: str | None = None
    weight: int = 1
    ready: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": str(self.address),
            "pod": self.pod,
            "weight": self.weight,
            "ready": self.ready,
            "labels": dict(self.labels),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Endpoint:
        return Endpoint(
            address=parse_ip(data["address"]),
            pod=data.get("pod"),
            weight=int(data.get("weight", 1)),
            ready=bool(data.get("ready", True)),
            labels=dict(data.get("labels", {})),
        )


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """Desired state of one service. ``vips`` are filled by the agent."""

    name: str
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str] = field(default_factory=dict)
    lb: str = "random"
    affinity_timeout: int | None = None
    headless: bool = False
    endpoints: tuple[Endpoint, ...] = ()
    health: HealthCheck = field(default_factory=HealthCheck)
    vips: tuple[IPAddress, ...] = ()
    owner: str = ""

    def validate(self) -> ServiceSpec:
        check_name("service", self.name)
        if not self.ports:
            raise InvalidInput(f"service {self.name!r} has no port", hint="give --port 80")
        if self.lb not in LB_POLICIES:
            raise InvalidInput(
                f"load-balancing policy {self.lb!r} of service {self.name!r} is unknown",
                hint="use " + ", ".join(LB_POLICIES),
            )
        if self.selector and self.endpoints:
            raise InvalidInput(
                f"service {self.name!r} has both a selector and manual endpoints",
                hint="use --selector for pods or --endpoint for other backends, not both",
            )
        if self.affinity_timeout is not None and not 1 <= self.affinity_timeout <= 86400:
            raise InvalidInput(
                f"affinity timeout {self.affinity_timeout}s of service {self.name!r} is out "
                "of range",
                hint="use 1-86400 seconds",
            )
        keys = [(p.protocol, p.port) for p in self.ports]
        if len(keys) != len(set(keys)):
            raise InvalidInput(f"service {self.name!r} lists a port twice")
        self.health.validate()
        return self

    def selects(self, labels: Mapping[str, str]) -> bool:
        """True when every selector label matches (an empty selector selects nothing)."""
        return bool(self.selector) and all(labels.get(k) == v for k, v in self.selector.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ports": [p.to_dict() for p in self.ports],
            "selector": dict(self.selector),
            "lb": self.lb,
            "affinity_timeout": self.affinity_timeout,
            "headless": self.headless,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "health": self.health.to_dict(),
            "vips": [str(v) for v in self.vips],
            "owner": self.owner,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> ServiceSpec:
        return ServiceSpec(
            name=data["name"],
            ports=tuple(ServicePort.from_dict(p) for p in data.get("ports", [])),
            selector=dict(data.get("selector", {})),
            lb=str(data.get("lb", "random")),
            affinity_timeout=data.get("affinity_timeout"),
            headless=bool(data.get("headless", False)),
            endpoints=tuple(Endpoint.from_dict(e) for e in data.get("endpoints", [])),
            health=HealthCheck.from_dict(data.get("health", {})),
            vips=tuple(parse_ip(v) for v in data.get("vips", [])),
            owner=str(data.get("owner", "")),
        )


# -- the text forms the CLI and topology files share ------------------------------------------


def parse_endpoint(text: str) -> Endpoint:
    """``IP`` or ``IP@WEIGHT``: a manual endpoint."""
    addr, _, weight = text.partition("@")
    try:
        return Endpoint(parse_ip(addr), weight=int(weight or 1))
    except ValueError:
        raise InvalidInput(
            f"endpoint {text!r} is not valid", hint="write IP or IP@WEIGHT"
        ) from None


def parse_affinity(text: str | None) -> int | None:
    """``client-ip[:SECONDS]`` (default 3 hours, as Kubernetes): the timeout; None: none."""
    if text is None:
        return None
    kind, _, timeout = text.partition(":")
    if kind != "client-ip" or not (timeout or "0").isdigit():
        raise InvalidInput(f"affinity {text!r} is not valid", hint="write client-ip[:SECONDS]")
    return int(timeout or 10800)


def publish(ports: Sequence[ServicePort], published: Iterable[str]) -> tuple[ServicePort, ...]:
    """``ports`` with host ports from ``HOST_PORT:PORT[/udp]`` texts."""
    out = list(ports)
    for text in published:
        spec, _, proto = text.partition("/")
        host, _, port = spec.partition(":")
        match = [p for p in out if str(p.port) == port and p.protocol == (proto or "tcp")]
        if not match or not host.isdigit():
            raise InvalidInput(
                f"published port {text!r} names no port of the service",
                hint="write HOST_PORT:PORT with PORT one of the service's ports",
            )
        out[out.index(match[0])] = replace(match[0], host_port=int(host))
    return tuple(out)
