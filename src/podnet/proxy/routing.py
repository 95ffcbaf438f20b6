"""The proxy's routing table and endpoint choice for one Snapshot. Pure (a clock and an rng in).

Theory of operation. The engine builds a :class:`Router` from each Snapshot,
handing it the previous Router. Per request it calls :meth:`Router.match`
(the most specific route that takes the request) and :meth:`RouteRuntime.pick`
(a backend and an endpoint), brackets the upstream exchange with
:meth:`EndpointRuntime.start`/:meth:`EndpointRuntime.finish`, and asks again with
``tried`` for a retry.

Matching. Routes are ordered by :meth:`Match.specificity` (larger first), then
declaration order. For every exact host any route names, the Router keeps the
ordered routes that can take that host (its exact routes, the wildcards that
cover it, the host-less ones); any other host walks the wildcard and host-less
routes. So a request tests only routes its host allows, and host-less
single-route tables answer after one check.

Choice, in order: a pinning header/cookie naming a backend that has a usable
endpoint; a sticky cookie naming a usable endpoint (in a backend with weight
> 0); smooth weighted round robin over the backends with weight > 0 that have
a usable endpoint. Usable = healthy, weight > 0, not ejected. Backend shares
are exact over every window of sum(weights) picks; a backend whose endpoints
are all unhealthy in the snapshot is left out and the WRR restarts from zero,
so shares are exact again from the snapshot that brings it back. A retry
(``tried`` not empty) does not advance the WRR: it goes, by weighted random
choice, to a backend that still has an endpoint not tried, so retries do not
skew first-try shares. Inside a backend, the route's balancer picks among
usable endpoints not in ``tried`` (all usable ones if that leaves none).

State across snapshots. Endpoint objects (in-flight count, latency EWMA,
smooth-WRR value), each backend's circuit breaker and outlier detector, and
each route's retry budget are *the same objects* in the new Router when route
name / backend name / endpoint id match; requests still in flight on the old
Router therefore finish on the objects the new one counts. The backends' WRR
state is copied only when the route's usable backends and weights are
unchanged. Endpoints that leave are dropped.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from podnet.model.route import (
    BackendRef,
    ResolvedBackend,
    ResolvedRoute,
    RouteSpec,
    Snapshot,
    SnapshotEndpoint,
)
from podnet.proxy.balancers import (
    PeakEwma,
    SmoothWeighted,
    p2c_least_request,
    p2c_peak_ewma,
    smooth_pick,
)
from podnet.proxy.resilience import (
    CircuitBreakerRuntime,
    Outcome,
    OutlierDetector,
    RetryBudget,
)

__all__ = [
    "BackendRuntime",
    "EndpointRuntime",
    "Outcome",
    "Pick",
    "RequestInfo",
    "RouteRuntime",
    "Router",
    "sticky_token",
]

_NO_TRIES: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What routing reads of a request (the engine fills it from the parsed head)."""

    method: str  # "GET"
    host: str  # Host without port, lower-case ("" if absent)
    path: str  # path of the target, without query
    headers: Mapping[str, str]  # lower-case names -> first value
    cookies: Mapping[str, str]  # parsed Cookie header
    destination: str = ""  # sidecar: original destination "VIP:port" ("[v6]:port")

    @staticmethod
    def parse_cookies(values: Sequence[str]) -> dict[str, str]:
        """``name=value`` pairs of Cookie header values (RFC 6265 §5.4 / §4.2.1).

        The first occurrence of a name wins (browsers send the most specific
        cookie first); pieces without ``=`` are skipped; a DQUOTE-enclosed
        value loses its quotes.
        """
        cookies: dict[str, str] = {}
        for value in values:
            for piece in value.split(";"):
                name, eq, val = piece.partition("=")
                if not eq:
                    continue
                name = name.strip()
                if not name or name in cookies:
                    continue
                val = val.strip()
                if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
                    val = val[1:-1]
                cookies[name] = val
        return cookies


def sticky_token(endpoint_id: str) -> str:
    """The opaque sticky-cookie value of an endpoint: urlsafe base64 of its id, unpadded."""
    return base64.urlsafe_b64encode(endpoint_id.encode()).decode().rstrip("=")


class EndpointRuntime:
    """One endpoint of one backend of one route, with its live counters."""

    __slots__ = (
        "_clock",
        "_outlier",
        "address",
        "backend",
        "current_weight",
        "ewma",
        "healthy",
        "id",
        "in_flight",
        "labels",
        "port",
        "weight",
    )

    def __init__(
        self,
        endpoint: SnapshotEndpoint,
        backend: str,
        outlier: OutlierDetector,
        clock: Callable[[], float],
        initial_cost: float = 0.0,
    ) -> None:
        self.id = endpoint.id
        self.address = endpoint.address
        self.port = endpoint.port
        self.backend = backend
        self.weight = endpoint.weight
        self.healthy = endpoint.healthy
        self.labels = endpoint.labels
        self.in_flight = 0
        self.current_weight = 0
        self._outlier = outlier
        self._clock = clock
        self.ewma = PeakEwma(initial_cost, clock())

    def _refresh(self, endpoint: SnapshotEndpoint) -> None:
        self.weight = endpoint.weight
        self.healthy = endpoint.healthy
        self.labels = endpoint.labels

    def start(self) -> float:
        """Count a request to this endpoint; returns its start time for :meth:`finish`."""
        self.in_flight += 1
        return self._clock()

    def finish(self, started: float, outcome: Outcome) -> None:
        """Uncount it, feed its latency to the EWMA and its outcome to outlier detection.

        A failure never lowers the latency estimate (a fast connection refusal
        must not make a broken endpoint look cheap).
        """
        if self.in_flight > 0:
            self.in_flight -= 1
        now = self._clock()
        rtt = now - started
        ewma = self.ewma
        if outcome == "ok":
            ewma.observe(rtt, now)
        else:
            ewma.observe(max(rtt, ewma.value(now)), now)
        self._outlier.record(self.id, outcome)

    def __repr__(self) -> str:
        return f"EndpointRuntime({self.backend}/{self.id}, in_flight={self.in_flight})"


def _usable(ep: EndpointRuntime) -> bool:
    return ep.healthy and ep.weight > 0


class BackendRuntime:
    """One weighted backend of a route: its endpoints, breaker, detector and balancer."""

    __slots__ = (
        "_balancer",
        "_clock",
        "_picks",
        "_rng",
        "_rr",
        "_simple_rr",
        "_usable",
        "breaker",
        "by_id",
        "endpoints",
        "name",
        "outlier",
        "ref",
        "usable_ids",
        "weight",
    )

    def __init__(
        self,
        resolved: ResolvedBackend,
        spec: RouteSpec,
        previous: BackendRuntime | None,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        ref = resolved.ref
        self.ref: BackendRef = ref
        self.name = ref.name
        self.weight = ref.weight
        self._balancer = spec.balancer
        self._clock = clock
        self._rng = rng
        ids = [e.id for e in resolved.endpoints]
        if previous is None:
            self.breaker = CircuitBreakerRuntime(spec.circuit_breaker)
            self.outlier = OutlierDetector(spec.outlier, (), clock=clock)
            self._rr = 0
            old: Mapping[str, EndpointRuntime] = {}
        else:
            self.breaker = previous.breaker
            self.breaker.update(spec.circuit_breaker)
            self.outlier = previous.outlier
            self._rr = previous._rr
            old = previous.by_id
        neutral = _neutral_cost(old.values(), clock())
        endpoints: list[EndpointRuntime] = []
        for snap in resolved.endpoints:
            ep = old.get(snap.id)
            if ep is None:
                ep = EndpointRuntime(snap, self.name, self.outlier, clock, neutral)
            else:
                ep._refresh(snap)
            endpoints.append(ep)
        self.endpoints: Sequence[EndpointRuntime] = tuple(endpoints)
        self.by_id: dict[str, EndpointRuntime] = {ep.id: ep for ep in endpoints}
        self._usable: tuple[EndpointRuntime, ...] = tuple(ep for ep in endpoints if _usable(ep))
        self.usable_ids = frozenset(ep.id for ep in self._usable)
        self.outlier.update(spec.outlier, ids, self.usable_ids)
        # Equal weights under round_robin: a plain rotating index (no per-pick loop).
        self._simple_rr = (
            spec.balancer == "round_robin" and len({e.weight for e in self._usable}) <= 1
        )
        self._picks: dict[str, Pick] = {}

    def has_usable(self) -> bool:
        """Whether some endpoint may get traffic (the detector always leaves one in)."""
        return bool(self._usable)

    def usable(self, ep: EndpointRuntime) -> bool:
        return ep.id in self.usable_ids and not (
            self.outlier.ejected_until and self.outlier.ejected(ep.id)
        )

    def plain_pick(self, endpoint: EndpointRuntime) -> Pick:
        """The Pick of ``endpoint`` without a cookie, made once: a frozen dataclass
        costs more to build than the whole choice."""
        pick = self._picks.get(endpoint.id)
        if pick is None:
            pick = self._picks[endpoint.id] = Pick(self, endpoint, None)
        return pick

    def choose(self, tried: frozenset[str] = _NO_TRIES) -> EndpointRuntime | None:
        """An endpoint by the route's balancer: usable, not in ``tried`` if possible."""
        usable = self._usable
        if not usable:
            return None
        if tried or self.outlier.ejected_until:
            if self._simple_rr:
                return self._round_robin(tried)
            outlier = self.outlier
            cands = [e for e in usable if e.id not in tried and not outlier.ejected(e.id)]
            if not cands:
                cands = [e for e in usable if not outlier.ejected(e.id)]
            return self._balance(cands)
        if self._simple_rr:
            i = self._rr
            if i >= len(usable):
                i = 0
            self._rr = i + 1
            return usable[i]
        return self._balance(usable)

    def _round_robin(self, tried: frozenset[str]) -> EndpointRuntime | None:
        """Equal weights: the next endpoint in order that is allowed (untried first)."""
        usable = self._usable
        n = len(usable)
        outlier = self.outlier
        fallback: int = -1
        for step in range(n):
            i = (self._rr + step) % n
            ep = usable[i]
            if outlier.ejected_until and outlier.ejected(ep.id):
                continue
            if ep.id in tried:
                if fallback < 0:
                    fallback = i
                continue
            self._rr = i + 1
            return ep
        if fallback < 0:
            return None
        self._rr = fallback + 1
        return usable[fallback]

    def _balance(self, cands: Sequence[EndpointRuntime]) -> EndpointRuntime | None:
        balancer = self._balancer
        if balancer == "least_request":
            return p2c_least_request(cands, self._rng)
        if balancer == "peak_ewma":
            return p2c_peak_ewma(cands, self._rng, self._clock())
        return smooth_pick(cands)

    def __repr__(self) -> str:
        return f"BackendRuntime({self.name}, weight={self.weight}, endpoints={len(self.endpoints)})"


def _neutral_cost(endpoints: Iterable[EndpointRuntime], now: float) -> float:
    """A new endpoint's starting latency estimate: the mean of its measured peers'
    (so it gets a fair share at once), or 0 when none is measured yet."""
    costs = [c for c in (ep.ewma.value(now) for ep in endpoints) if c > 0.0]
    return sum(costs) / len(costs) if costs else 0.0


@dataclass(frozen=True, slots=True)
class Pick:
    """Where one attempt goes; ``set_cookie`` is a Set-Cookie value to add to the response."""

    backend: BackendRuntime
    endpoint: EndpointRuntime
    set_cookie: str | None


class _Matcher:
    """The non-host conditions of a Match, precompiled."""

    __slots__ = ("destinations", "headers", "methods", "prefix", "trivial")

    def __init__(self, spec: RouteSpec) -> None:
        match = spec.match
        self.destinations = frozenset(match.destinations)
        self.prefix = match.path_prefix.rstrip("/")  # "" for "/": every path
        self.methods = frozenset(m.upper() for m in match.methods)
        self.headers = tuple((k.lower(), v) for k, v in match.headers.items())
        self.trivial = not (self.destinations or self.prefix or self.methods or self.headers)

    def __call__(self, request: RequestInfo) -> bool:
        if self.trivial:
            return True
        if self.destinations and request.destination not in self.destinations:
            return False
        prefix = self.prefix
        if prefix:
            path = request.path
            if not path.startswith(prefix):
                return False
            if len(path) != len(prefix) and path[len(prefix)] != "/":
                return False
        if self.methods and request.method not in self.methods:
            return False
        headers = request.headers
        return all(headers.get(name) == value for name, value in self.headers)


class RouteRuntime:
    """One route of the table: how it matches, its backends and their shares."""

    __slots__ = (
        "_by_name",
        "_by_token",
        "_cookie_picks",
        "_eligible",
        "_eligible_key",
        "_matcher",
        "_mirror_fraction",
        "_pin_cookie",
        "_pin_header",
        "_rng",
        "_set_cookie",
        "_special",
        "_sticky_cookie",
        "_tokens",
        "_wrr",
        "backends",
        "budget",
        "mirror_backend",
        "plain",
        "spec",
    )

    def __init__(
        self,
        resolved: ResolvedRoute,
        previous: RouteRuntime | None,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        spec = resolved.spec
        self.spec = spec
        self._rng = rng
        self._matcher = _Matcher(spec)
        if previous is None:
            self.budget = RetryBudget(spec.retries, clock)
            old: Mapping[str, BackendRuntime] = {}
        else:
            self.budget = previous.budget
            self.budget.update(spec.retries)
            old = previous._by_name
        self.backends: Sequence[BackendRuntime] = tuple(
            BackendRuntime(rb, spec, old.get(rb.ref.name), clock, rng) for rb in resolved.backends
        )
        self._by_name: dict[str, BackendRuntime] = {b.name: b for b in self.backends}
        eligible = tuple(b for b in self.backends if b.weight > 0 and b.has_usable())
        self._eligible = eligible
        self._eligible_key = tuple((b.name, b.weight) for b in eligible)
        carried = None
        if previous is not None and previous._eligible_key == self._eligible_key:
            carried = previous._wrr.current
        self._wrr: SmoothWeighted = SmoothWeighted([b.weight for b in eligible], carried)
        self._pin_header = None if spec.pinning.header is None else spec.pinning.header.lower()
        self._pin_cookie = spec.pinning.cookie
        self._init_sticky(spec)
        self._special = (
            self._pin_header is not None
            or self._pin_cookie is not None
            or self._sticky_cookie is not None
        )
        self.mirror_backend: BackendRuntime | None = None
        self._mirror_fraction = 0.0
        if resolved.mirror is not None and spec.mirror is not None:
            old_mirror = None if previous is None else previous.mirror_backend
            if old_mirror is not None and old_mirror.name != resolved.mirror.ref.name:
                old_mirror = None
            self.mirror_backend = BackendRuntime(resolved.mirror, spec, old_mirror, clock, rng)
            self._mirror_fraction = spec.mirror.percent / 100.0
        #: No pinning, sticky cookie or mirror: a pick never adds a Set-Cookie or a copy.
        self.plain = not self._special and spec.mirror is None and self.mirror_backend is None

    def _init_sticky(self, spec: RouteSpec) -> None:
        sticky = spec.sticky
        self._sticky_cookie = None if sticky is None else sticky.cookie
        self._by_token: dict[str, tuple[BackendRuntime, EndpointRuntime]] = {}
        self._tokens: dict[str, str] = {}
        self._set_cookie: dict[str, str] = {}
        self._cookie_picks: dict[str, Pick] = {}
        if sticky is None:
            return
        for backend in self.backends:
            for ep in backend.endpoints:
                token = sticky_token(ep.id)
                self._by_token[token] = (backend, ep)
                self._tokens[ep.id] = token
                self._set_cookie[ep.id] = (
                    f"{sticky.cookie}={token}; Max-Age={sticky.ttl}; Path=/; HttpOnly"
                )

    @property
    def name(self) -> str:
        return self.spec.name

    def matches(self, request: RequestInfo) -> bool:
        """The route's conditions other than the host (the Router checks hosts)."""
        return self._matcher(request)

    def pick(self, request: RequestInfo, tried: frozenset[str] = _NO_TRIES) -> Pick | None:
        """Backend and endpoint for one attempt; None when no endpoint is usable (503).

        See the module docstring for the order (pinning > sticky > WRR) and
        what ``tried`` (endpoint ids of earlier attempts) changes.
        """
        if self._special:
            special = self._special_pick(request, tried)
            if special is not None:
                return special
        backend = self._retry_backend(tried) if tried else self._next_backend()
        if backend is None:
            return None
        endpoint = backend.choose(tried)
        if endpoint is None:  # cannot happen while the detector leaves one in
            return None
        if self._sticky_cookie is None:
            return backend.plain_pick(endpoint)
        return self._with_cookie(request, backend, endpoint)

    def first_pick(self) -> Pick | None:
        """:meth:`pick` for a first try on a :attr:`plain` route, which never needs to
        look at the request (the fast lane calls it before building a RequestInfo)."""
        assert self.plain
        backend = self._next_backend()
        if backend is None:
            return None
        endpoint = backend.choose()
        return None if endpoint is None else backend.plain_pick(endpoint)

    def _next_backend(self) -> BackendRuntime | None:
        """The backend of a first try, by smooth weighted round robin."""
        eligible = self._eligible
        if len(eligible) == 1:
            return eligible[0]
        index = self._wrr.next()
        return eligible[index] if index >= 0 else None

    def _special_pick(self, request: RequestInfo, tried: frozenset[str]) -> Pick | None:
        """Pinning, then the sticky cookie; None: neither applies."""
        if self._pin_header is not None:
            pick = self._pinned(request.headers.get(self._pin_header), request, tried)
            if pick is not None:
                return pick
        if self._pin_cookie is not None:
            pick = self._pinned(request.cookies.get(self._pin_cookie), request, tried)
            if pick is not None:
                return pick
        if self._sticky_cookie is not None:
            found = self._sticky(request, tried)
            if found is not None and found[0].weight > 0:
                return found[0].plain_pick(found[1])
        return None

    def _pinned(self, name: str | None, request: RequestInfo, tried: frozenset[str]) -> Pick | None:
        if name is None:
            return None
        backend = self._by_name.get(name)
        if backend is None or not backend.has_usable():
            return None
        if self._sticky_cookie is not None:
            found = self._sticky(request, tried)
            if found is not None and found[0] is backend:
                return backend.plain_pick(found[1])
        endpoint = backend.choose(tried)
        if endpoint is None:
            return None
        if self._sticky_cookie is None:
            return backend.plain_pick(endpoint)
        return self._with_cookie(request, backend, endpoint)

    def _sticky(
        self, request: RequestInfo, tried: frozenset[str]
    ) -> tuple[BackendRuntime, EndpointRuntime] | None:
        """The endpoint the request's sticky cookie names, if usable and not tried."""
        token = request.cookies.get(self._sticky_cookie)  # type: ignore[arg-type]
        if token is None:
            return None
        found = self._by_token.get(token)
        if found is None:
            return None
        backend, endpoint = found
        if endpoint.id in tried or not backend.usable(endpoint):
            return None
        return found

    def _with_cookie(
        self, request: RequestInfo, backend: BackendRuntime, endpoint: EndpointRuntime
    ) -> Pick:
        """Set the sticky cookie unless the request already names this endpoint."""
        eid = endpoint.id
        if request.cookies.get(self._sticky_cookie) == self._tokens.get(eid):  # type: ignore[arg-type]
            return backend.plain_pick(endpoint)
        pick = self._cookie_picks.get(eid)
        if pick is None or pick.endpoint is not endpoint:
            pick = Pick(backend, endpoint, self._set_cookie.get(eid))
            self._cookie_picks[eid] = pick
        return pick

    def _retry_backend(self, tried: frozenset[str]) -> BackendRuntime | None:
        """Weighted random over backends with an untried usable endpoint (else all)."""
        eligible = self._eligible
        fresh = [b for b in eligible if any(i not in tried for i in b.usable_ids)]
        pool = fresh or list(eligible)
        if len(pool) <= 1:
            return pool[0] if pool else None
        total = sum(b.weight for b in pool)
        point = self._rng.random() * total
        for backend in pool:
            point -= backend.weight
            if point < 0:
                return backend
        return pool[-1]

    def mirror(self, request: RequestInfo) -> Pick | None:
        """Where to copy this request, decided per request by the mirror percent; None: no copy."""
        backend = self.mirror_backend
        if backend is None:
            return None
        fraction = self._mirror_fraction
        if fraction < 1.0 and self._rng.random() >= fraction:
            return None
        endpoint = backend.choose()
        if endpoint is None:
            return None
        return backend.plain_pick(endpoint)

    def __repr__(self) -> str:
        return f"RouteRuntime({self.spec.name})"


def _wildcard_covers(suffix: str, host: str) -> bool:
    """``suffix`` is ".example.com" of "*.example.com": one or more labels in front."""
    return len(host) > len(suffix) and host.endswith(suffix)


# (route, wildcard suffixes to check or None, matcher or None when it takes everything)
_Entry = tuple[RouteRuntime, tuple[str, ...] | None, _Matcher | None]


class Router:
    """Routing table for one Snapshot. Runtime state (in-flight counts, EWMA, outlier and WRR
    state, circuit-breaker counters, retry budgets) is carried over from ``previous`` by route
    name / backend name / endpoint id, so a new snapshot never resets it or drops in-flight
    accounting."""

    __slots__ = ("_by_host", "_by_name", "_fallback", "_ordered", "only", "version")

    def __init__(
        self,
        snapshot: Snapshot,
        previous: Router | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.version = snapshot.version
        rng = rng if rng is not None else random.Random()
        old = {} if previous is None else previous._by_name
        runtimes = [RouteRuntime(r, old.get(r.spec.name), clock, rng) for r in snapshot.routes]
        # Stable sort: equal specificity keeps declaration order.
        self._ordered: tuple[RouteRuntime, ...] = tuple(
            sorted(runtimes, key=lambda rt: rt.spec.match.specificity(), reverse=True)
        )
        self._by_name: dict[str, RouteRuntime] = {rt.spec.name: rt for rt in runtimes}
        self._build_host_index()

    def _build_host_index(self) -> None:
        hosts_of = {id(rt): [h.lower() for h in rt.spec.match.hosts] for rt in self._ordered}
        exact_hosts = {h for hosts in hosts_of.values() for h in hosts if not h.startswith("*.")}
        by_host: dict[str, tuple[_Entry, ...]] = {}
        for host in exact_hosts:
            entries: list[_Entry] = []
            for rt in self._ordered:
                hosts = hosts_of[id(rt)]
                if (
                    not hosts
                    or host in hosts
                    or any(h.startswith("*.") and _wildcard_covers(h[1:], host) for h in hosts)
                ):
                    entries.append((rt, None, _matcher_or_none(rt)))
            by_host[host] = tuple(entries)
        fallback: list[_Entry] = []
        for rt in self._ordered:
            hosts = hosts_of[id(rt)]
            suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))
            if not hosts:
                fallback.append((rt, None, _matcher_or_none(rt)))
            elif suffixes:
                fallback.append((rt, suffixes, _matcher_or_none(rt)))
        self._by_host = by_host
        self._fallback: tuple[_Entry, ...] = tuple(fallback)
        #: The route :meth:`match` returns for every request, if the table is that simple
        #: (no host index, and its first route takes anything): no need to look at requests.
        self.only: RouteRuntime | None = None
        if not by_host and fallback and fallback[0][1] is None and fallback[0][2] is None:
            self.only = fallback[0][0]

    def match(self, request: RequestInfo) -> RouteRuntime | None:
        """The most specific route that takes ``request``, or None (the engine answers 404)."""
        host = request.host
        candidates = self._fallback
        if self._by_host:
            found = self._by_host.get(host)
            if found is None and not host.islower():
                host = host.lower()
                found = self._by_host.get(host)
            if found is not None:
                candidates = found
        for route, suffixes, matcher in candidates:
            if suffixes is not None:
                lowered = host.lower()
                if not any(_wildcard_covers(s, lowered) for s in suffixes):
                    continue
            if matcher is None or matcher(request):
                return route
        return None

    def routes(self) -> Sequence[RouteRuntime]:
        """Every route, most specific first (the order :meth:`match` tries them)."""
        return self._ordered

    def route(self, name: str) -> RouteRuntime | None:
        return self._by_name.get(name)


def _matcher_or_none(route: RouteRuntime) -> _Matcher | None:
    matcher = route._matcher
    return None if matcher.trivial else matcher
