"""L7 routes, proxies and the snapshot a proxy serves from. Types only, no I/O.

A :class:`RouteSpec` is what users declare (topology file, ``podnet route set``,
the API): which HTTP requests it takes (:class:`Match`), where they go
(weighted :class:`BackendRef` s naming a service or a labelled subset of one)
and how failures are handled (:class:`Timeouts`, :class:`RetryPolicy`,
:class:`CircuitBreaker`, :class:`OutlierDetection`).

A :class:`ProxySpec` is one proxy instance: an edge proxy published on a host
port, or a pod's sidecar.

The agent resolves routes against the registry (services, pods, health) into a
:class:`Snapshot`: the same routes with each backend's current endpoints. A
proxy worker needs nothing else; snapshots are JSON (``to_dict``/``from_dict``)
so they cross process boundaries unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from podnet.errors import InvalidInput
from podnet.model.names import check_name

__all__ = [
    "BALANCERS",
    "PROXY_MODES",
    "RETRY_CONDITIONS",
    "BackendRef",
    "CircuitBreaker",
    "Match",
    "Mirror",
    "OutlierDetection",
    "Pinning",
    "ProxySpec",
    "ResolvedBackend",
    "ResolvedRoute",
    "RetryPolicy",
    "RouteSpec",
    "Snapshot",
    "SnapshotEndpoint",
    "Sticky",
    "Timeouts",
]

BALANCERS = ("round_robin", "least_request", "peak_ewma")
PROXY_MODES = ("edge", "sidecar")
#: What a retry may follow: no connection, a reset/closed connection before a
#: response, a per-try timeout, or any listed 3-digit status (as a string).
RETRY_CONDITIONS = ("connect-failure", "reset", "timeout")
_STATUS = re.compile(r"[1-5][0-9][0-9]")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_METHOD = re.compile(r"[A-Z]+")
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def _positive(owner: str, what: str, value: float, hint: str) -> None:
    if not value > 0:
        raise InvalidInput(f"{what} of {owner} must be above 0 (got {value})", hint=hint)


def _pick(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``cls`` (unknown keys are refused)."""
    unknown = set(data) - set(cls.__slots__)  # type: ignore[attr-defined]
    if unknown:
        raise InvalidInput(
            f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}",
            hint="known fields: " + ", ".join(cls.__slots__),  # type: ignore[attr-defined]
        )
    return dict(data)


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a route takes. Every given condition must hold.

    ``hosts``: Host header values (without port; ``*.example.com`` matches one
    or more labels in front). ``path_prefix``: segment-aware prefix (``/api``
    matches ``/api`` and ``/api/x``, not ``/apix``). ``methods``: upper case.
    ``headers``: exact values (names case-insensitive). ``destinations``:
    original destinations ``VIP:port`` (``[v6]:port``) a sidecar intercepted;
    the agent writes these into sidecar snapshots, users rarely do.
    """

    hosts: tuple[str, ...] = ()
    path_prefix: str = "/"
    methods: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    destinations: tuple[str, ...] = ()

    def validate(self, owner: str) -> Match:
        if not self.path_prefix.startswith("/"):
            raise InvalidInput(
                f"path prefix {self.path_prefix!r} of {owner} does not start with '/'",
                hint="e.g. --path /api",
            )
        for method in self.methods:
            if not _METHOD.fullmatch(method):
                raise InvalidInput(
                    f"method {method!r} of {owner} is not an upper-case token",
                    hint="e.g. --method GET",
                )
        for name in self.headers:
            if not _HEADER_NAME.fullmatch(name):
                raise InvalidInput(f"header name {name!r} of {owner} is not a token")
        for host in self.hosts:
            if not host or ":" in host or "/" in host:
                raise InvalidInput(
                    f"host {host!r} of {owner} is not a host name",
                    hint="give the name without port or path, e.g. shop.example.com",
                )
        return self

    def specificity(self) -> tuple[int, int, int, int]:
        """Sort key: more specific routes are tried first (larger is more specific)."""
        exact_hosts = any(not h.startswith("*.") for h in self.hosts)
        return (
            3 if self.destinations else 2 if exact_hosts else 1 if self.hosts else 0,
            len(self.path_prefix),
            len(self.headers),
            1 if self.methods else 0,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": list(self.hosts),
            "path_prefix": self.path_prefix,
            "methods": list(self.methods),
            "headers": dict(self.headers),
            "destinations": list(self.destinations),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Match:
        data = _pick(Match, data)
        return Match(
            hosts=tuple(str(h).lower() for h in data.get("hosts", ())),
            path_prefix=str(data.get("path_prefix", "/")),
            methods=tuple(str(m).upper() for m in data.get("methods", ())),
            headers={str(k).lower(): str(v) for k, v in data.get("headers", {}).items()},
            destinations=tuple(str(d) for d in data.get("destinations", ())),
        )


@dataclass(frozen=True, slots=True)
class BackendRef:
    """A weighted target of a route: a service, or the endpoints of it whose
    labels include ``subset`` (e.g. ``{"version": "v2"}``). ``name`` is what
    pinning headers/cookies and metrics call it (default: ``service`` or
    ``service-v2``-style from the subset)."""

    name: str
    service: str
    subset: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    port: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "subset": dict(self.subset),
            "weight": self.weight,
            "port": self.port,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> BackendRef:
        data = _pick(BackendRef, data)
        service = str(data["service"])
        subset = {str(k): str(v) for k, v in data.get("subset", {}).items()}
        default = "-".join([service, *subset.values()])
        return BackendRef(
            name=str(data.get("name") or default),
            service=service,
            subset=subset,
            weight=int(data.get("weight", 1)),
            port=None if data.get("port") is None else int(data["port"]),
        )


@dataclass(frozen=True, slots=True)
class Pinning:
    """A request naming a backend in this header or cookie goes to that backend."""

    header: str | None = None
    cookie: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"header": self.header, "cookie": self.cookie}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Pinning:
        data = _pick(Pinning, data)
        header = data.get("header")
        return Pinning(
            header=None if header is None else str(header).lower(), cookie=data.get("cookie")
        )


@dataclass(frozen=True, slots=True)
class Sticky:
    """Sticky sessions: the proxy sets ``cookie`` to an opaque endpoint id and
    sends later requests carrying it to that endpoint while it is usable."""

    cookie: str = "podnet-sticky"
    ttl: int = 3600

    def to_dict(self) -> dict[str, Any]:
        return {"cookie": self.cookie, "ttl": self.ttl}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Sticky:
        return Sticky(**_pick(Sticky, data))


@dataclass(frozen=True, slots=True)
class Mirror:
    """Copy ``percent`` of requests to ``backend`` (a BackendRef, weight ignored);
    its answers are discarded and its failures never reach the client."""

    backend: BackendRef
    percent: float = 100.0

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend.to_dict(), "percent": self.percent}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Mirror:
        data = _pick(Mirror, data)
        return Mirror(BackendRef.from_dict(data["backend"]), float(data.get("percent", 100.0)))


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``connect``: TCP connect to an endpoint. ``per_try``: one attempt
    until the response head. ``request``: the whole request including retries
    until the response head. ``idle``: no bytes either way on a client or pooled
    upstream connection. ``header_read``: a client's request head must arrive
    within this (slow-loris defence)."""

    connect: float = 1.0
    per_try: float = 15.0
    request: float = 30.0
    idle: float = 60.0
    header_read: float = 10.0

    def validate(self, owner: str) -> Timeouts:
        for name in self.__slots__:
            _positive(owner, f"timeout {name}", getattr(self, name), "give seconds, e.g. 0.5")
        if self.per_try > self.request:
            raise InvalidInput(
                f"per-try timeout {self.per_try}s of {owner} exceeds its request timeout "
                f"{self.request}s",
                hint="the request timeout covers every try; raise it or lower per_try",
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Timeouts:
        return Timeouts(**{k: float(v) for k, v in _pick(Timeouts, data).items()})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts the first try (1 = no retry). ``on`` holds
    RETRY_CONDITIONS and/or status codes as strings ("503"). Non-idempotent
    methods are retried only with ``non_idempotent`` (connect failures are
    always safe: nothing was sent). Backoff before retry n (1-based) is a
    uniformly random time in [0, min(backoff_max, backoff_base * 2**(n-1))].
    The budget (Finagle's and Linkerd's): over the last 10 s, retries may be at
    most ``budget_percent`` of requests, plus ``budget_min_per_second`` a
    second so light traffic can retry at all; retries after a connect failure
    are free (nothing reached a backend). So retries add at most 20% to an
    outage's load by default, yet the burst of resets when an endpoint dies
    under load is retried in full."""

    attempts: int = 3
    on: tuple[str, ...] = ("connect-failure", "reset", "502", "503", "504")
    non_idempotent: bool = False
    backoff_base: float = 0.025
    backoff_max: float = 0.25
    budget_percent: float = 20.0
    budget_min_per_second: float = 10.0

    def validate(self, owner: str) -> RetryPolicy:
        if not 1 <= self.attempts <= 10:
            raise InvalidInput(
                f"retry attempts {self.attempts} of {owner} is out of range",
                hint="use 1 (no retries) to 10",
            )
        for cond in self.on:
            if cond not in RETRY_CONDITIONS and not _STATUS.fullmatch(cond):
                raise InvalidInput(
                    f"retry condition {cond!r} of {owner} is unknown",
                    hint="use " + ", ".join(RETRY_CONDITIONS) + " or a status such as 503",
                )
        if self.backoff_base < 0 or self.backoff_max < self.backoff_base:
            raise InvalidInput(f"retry backoff of {owner} must satisfy 0 <= base <= max")
        if not 0 <= self.budget_percent <= 100:
            raise InvalidInput(f"retry budget {self.budget_percent}% of {owner} is out of range")
        if self.budget_min_per_second < 0:
            raise InvalidInput(
                f"retry budget minimum {self.budget_min_per_second}/s of {owner} is negative"
            )
        return self

    def retries_status(self, status: int) -> bool:
        return str(status) in self.on

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "on": list(self.on),
            "non_idempotent": self.non_idempotent,
            "backoff_base": self.backoff_base,
            "backoff_max": self.backoff_max,
            "budget_percent": self.budget_percent,
            "budget_min_per_second": self.budget_min_per_second,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> RetryPolicy:
        data = _pick(RetryPolicy, data)
        if "on" in data:
            data["on"] = tuple(str(c) for c in data["on"])
        return RetryPolicy(**data)


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """Limits per backend (all its endpoints together); past them a request is
    answered 503 at once. ``max_pending``: requests waiting for a connection."""

    max_connections: int = 1024
    max_pending: int = 1024
    max_requests: int = 1024

    def validate(self, owner: str) -> CircuitBreaker:
        for name in self.__slots__:
            if getattr(self, name) < 1:
                raise InvalidInput(f"circuit breaker {name} of {owner} must be at least 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> CircuitBreaker:
        return CircuitBreaker(**{k: int(v) for k, v in _pick(CircuitBreaker, data).items()})


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Passive health: ``consecutive_5xx`` 5xx answers or ``consecutive_errors``
    connect/reset errors eject an endpoint for ``base_ejection * n`` seconds
    (n = times ejected so far, capped at ``max_ejection``); at most
    ``max_ejection_percent`` of a backend's endpoints are out at once, and never
    all of them."""

    consecutive_5xx: int = 5
    consecutive_errors: int = 3
    base_ejection: float = 10.0
    max_ejection: float = 300.0
    max_ejection_percent: float = 50.0

    def validate(self, owner: str) -> OutlierDetection:
        if self.consecutive_5xx < 1 or self.consecutive_errors < 1:
            raise InvalidInput(f"outlier thresholds of {owner} must be at least 1")
        _positive(owner, "base ejection time", self.base_ejection, "e.g. 10")
        if self.max_ejection < self.base_ejection:
            raise InvalidInput(f"max ejection time of {owner} is below its base ejection time")
        if not 0 <= self.max_ejection_percent <= 100:
            raise InvalidInput(f"max ejection percent of {owner} is out of range")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> OutlierDetection:
        return OutlierDetection(**_pick(OutlierDetection, data))


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One L7 route. ``proxies`` names the proxies serving it (empty: all)."""

    name: str
    match: Match = field(default_factory=Match)
    backends: tuple[BackendRef, ...] = ()
    balancer: str = "round_robin"
    pinning: Pinning = field(default_factory=Pinning)
    sticky: Sticky | None = None
    mirror: Mirror | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    outlier: OutlierDetection = field(default_factory=OutlierDetection)
    proxies: tuple[str, ...] = ()
    owner: str = ""

    def validate(self) -> RouteSpec:
        check_name("route", self.name)
        owner = f"route {self.name!r}"
        if not self.backends:
            raise InvalidInput(
                f"{owner} has no backend", hint="give --backend SERVICE[:k=v][@WEIGHT]"
            )
        names = [b.name for b in self.backends]
        if len(names) != len(set(names)):
            raise InvalidInput(f"{owner} names a backend twice: {names}")
        for backend in self.backends:
            check_name("service", backend.service)
            if backend.weight < 0:
                raise InvalidInput(f"weight of backend {backend.name!r} of {owner} is negative")
            if backend.port is not None and not 1 <= backend.port <= 65535:
                raise InvalidInput(f"port {backend.port} of backend {backend.name!r} is invalid")
        if not any(b.weight for b in self.backends):
            raise InvalidInput(f"every backend of {owner} has weight 0", hint="give one a weight")
        if self.balancer not in BALANCERS:
            raise InvalidInput(
                f"balancer {self.balancer!r} of {owner} is unknown",
                hint="use " + ", ".join(BALANCERS),
            )
        if self.mirror is not None and not 0 < self.mirror.percent <= 100:
            raise InvalidInput(f"mirror percent of {owner} must be in (0, 100]")
        self.match.validate(owner)
        self.timeouts.validate(owner)
        self.retries.validate(owner)
        self.circuit_breaker.validate(owner)
        self.outlier.validate(owner)
        return self

    def with_weights(self, weights: Mapping[str, int]) -> RouteSpec:
        """The same route with some backends' weights replaced (by backend name)."""
        unknown = set(weights) - {b.name for b in self.backends}
        if unknown:
            raise InvalidInput(
                f"route {self.name!r} has no backend {', '.join(sorted(unknown))}",
                hint="backends: " + ", ".join(b.name for b in self.backends),
            )
        backends = tuple(replace(b, weight=weights.get(b.name, b.weight)) for b in self.backends)
        return replace(self, backends=backends).validate()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "match": self.match.to_dict(),
            "backends": [b.to_dict() for b in self.backends],
            "balancer": self.balancer,
            "pinning": self.pinning.to_dict(),
            "sticky": None if self.sticky is None else self.sticky.to_dict(),
            "mirror": None if self.mirror is None else self.mirror.to_dict(),
            "timeouts": self.timeouts.to_dict(),
            "retries": self.retries.to_dict(),
            "circuit_breaker": self.circuit_breaker.to_dict(),
            "outlier": self.outlier.to_dict(),
            "proxies": list(self.proxies),
            "owner": self.owner,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> RouteSpec:
        data = _pick(RouteSpec, data)
        sticky = data.get("sticky")
        mirror = data.get("mirror")
        return RouteSpec(
            name=str(data["name"]),
            match=Match.from_dict(data.get("match") or {}),
            backends=tuple(BackendRef.from_dict(b) for b in data.get("backends", ())),
            balancer=str(data.get("balancer", "round_robin")),
            pinning=Pinning.from_dict(data.get("pinning") or {}),
            sticky=None if sticky is None else Sticky.from_dict(sticky),
            mirror=None if mirror is None else Mirror.from_dict(mirror),
            timeouts=Timeouts.from_dict(data.get("timeouts") or {}),
            retries=RetryPolicy.from_dict(data.get("retries") or {}),
            circuit_breaker=CircuitBreaker.from_dict(data.get("circuit_breaker") or {}),
            outlier=OutlierDetection.from_dict(data.get("outlier") or {}),
            proxies=tuple(str(p) for p in data.get("proxies", ())),
            owner=str(data.get("owner", "")),
        )


@dataclass(frozen=True, slots=True)
class ProxySpec:
    """One proxy instance. Edge: listens on the node's ``host_port`` (all
    addresses, published like a pod port). Sidecar: runs in ``pod``'s netns and
    takes the pod's outbound connections to service VIPs (nft redirect to
    ``listen_port``). ``admin_port``: Prometheus metrics on /metrics (edge: on
    the node's loopback; sidecar: on the pod's loopback)."""

    name: str
    mode: str = "edge"
    host_port: int | None = None
    pod: str | None = None
    listen_port: int = 15001
    admin_port: int | None = None
    workers: int = 1
    owner: str = ""

    def validate(self) -> ProxySpec:
        check_name("proxy", self.name)
        owner = f"proxy {self.name!r}"
        if self.mode not in PROXY_MODES:
            raise InvalidInput(
                f"mode {self.mode!r} of {owner} is unknown", hint="use edge or sidecar"
            )
        if self.mode == "edge" and self.host_port is None:
            raise InvalidInput(f"edge {owner} has no host port", hint="give --port 8080")
        if self.mode == "sidecar" and not self.pod:
            raise InvalidInput(f"sidecar {owner} names no pod", hint="give --pod NAME")
        for what, port in (
            ("host port", self.host_port),
            ("listen port", self.listen_port),
            ("admin port", self.admin_port),
        ):
            if port is not None and not 1 <= port <= 65535:
                raise InvalidInput(f"{what} {port} of {owner} is out of range")
        if not 1 <= self.workers <= 64:
            raise InvalidInput(f"workers {self.workers} of {owner} is out of range", hint="1-64")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> ProxySpec:
        return ProxySpec(**_pick(ProxySpec, data))


@dataclass(frozen=True, slots=True)
class SnapshotEndpoint:
    """An endpoint as a proxy sees it. ``id`` is stable across snapshots
    (``address:port``) and is what sticky cookies and metrics carry."""

    address: str
    port: int
    weight: int = 1
    healthy: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else f"{self.address}:{self.port}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "weight": self.weight,
            "healthy": self.healthy,
            "labels": dict(self.labels),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> SnapshotEndpoint:
        return SnapshotEndpoint(**_pick(SnapshotEndpoint, data))


@dataclass(frozen=True, slots=True)
class ResolvedBackend:
    """A BackendRef with the endpoints it stands for right now."""

    ref: BackendRef
    endpoints: tuple[SnapshotEndpoint, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref.to_dict(), "endpoints": [e.to_dict() for e in self.endpoints]}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> ResolvedBackend:
        return ResolvedBackend(
            BackendRef.from_dict(data["ref"]),
            tuple(SnapshotEndpoint.from_dict(e) for e in data.get("endpoints", ())),
        )


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    spec: RouteSpec
    backends: tuple[ResolvedBackend, ...]
    mirror: ResolvedBackend | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "backends": [b.to_dict() for b in self.backends],
            "mirror": None if self.mirror is None else self.mirror.to_dict(),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> ResolvedRoute:
        mirror = data.get("mirror")
        return ResolvedRoute(
            RouteSpec.from_dict(data["spec"]),
            tuple(ResolvedBackend.from_dict(b) for b in data.get("backends", ())),
            None if mirror is None else ResolvedBackend.from_dict(mirror),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one proxy serves from. ``version`` grows with every change
    (the store revision it was built at); a proxy swaps snapshots atomically
    between requests and keeps in-flight requests on the one they started with."""

    proxy: str
    version: int
    routes: tuple[ResolvedRoute, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy,
            "version": self.version,
            "routes": [r.to_dict() for r in self.routes],
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Snapshot:
        return Snapshot(
            proxy=str(data["proxy"]),
            version=int(data["version"]),
            routes=tuple(ResolvedRoute.from_dict(r) for r in data.get("routes", ())),
        )
