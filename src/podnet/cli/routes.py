"""``podnet route set|ls|inspect|rm``: L7 routes of the proxies.

``route set NAME --backend ...`` creates or replaces a route; ``route set NAME
--weight BACKEND=W ...`` on an existing route changes only weights (the canary
shift), in one store write that every proxy picks up at once.

Backend grammar (shared with topology files,
:func:`podnet.topology.routes.parse_backend`): ``SERVICE[:k=v[,k=v]][@WEIGHT][=NAME]``,
e.g. ``web@90``, ``web:version=v2@10``, ``web@10=canary``. The default name is
the service, then the subset's values (``web-v2``); pinning headers and
``--weight`` use it.
"""

from __future__ import annotations

import argparse
from typing import Any

from podnet.api.http import ApiClient
from podnet.cli.args import key_values
from podnet.cli.render import print_json, table
from podnet.errors import InvalidInput
from podnet.model.route import (
    BALANCERS,
    CircuitBreaker,
    Match,
    Mirror,
    OutlierDetection,
    Pinning,
    RetryPolicy,
    RouteSpec,
    Sticky,
    Timeouts,
)
from podnet.topology.routes import BACKEND_HINT, parse_backend

__all__ = ["add_parser", "parse_backend", "parse_mirror", "parse_weights", "route_spec", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    route = sub.add_parser("route", help="L7 routes: HTTP requests to weighted backends")
    verbs = route.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("set", help="create or replace a route, or change its weights")
    s.add_argument("name")
    m = s.add_argument_group("match")
    m.add_argument("--host", action="append", default=[], help="Host (also *.example.com)")
    m.add_argument("--path", default="/", help="path prefix, segment-aware (default /)")
    m.add_argument("--method", action="append", default=[], help="e.g. GET")
    m.add_argument("--header", action="append", default=[], help="NAME=VALUE, exact")
    b = s.add_argument_group("backends")
    b.add_argument("--backend", action="append", default=[], help=BACKEND_HINT)
    b.add_argument("--weight", action="append", default=[], help="BACKEND=W: change weights only")
    b.add_argument("--balancer", choices=BALANCERS, default="round_robin")
    b.add_argument("--pin-header", help="a request naming a backend in this header goes there")
    b.add_argument("--pin-cookie", help="... or in this cookie")
    b.add_argument("--sticky", nargs="?", const="podnet-sticky", help="sticky cookie [NAME]")
    b.add_argument("--mirror", help="SERVICE[:k=v]@PERCENT: copy requests, answers dropped")
    t = s.add_argument_group("timeouts (seconds)")
    for name in ("connect", "try", "request", "idle"):
        t.add_argument(f"--timeout-{name}", type=float)
    r = s.add_argument_group("retries and limits")
    r.add_argument("--retries", type=int, help="retries after the first try (0: none)")
    r.add_argument("--retry-on", help="conditions: connect-failure,reset,timeout,503,...")
    r.add_argument("--retry-non-idempotent", action="store_true")
    for name in ("connections", "pending", "requests"):
        r.add_argument(f"--max-{name}", type=int, help="circuit breaker, per backend")
    r.add_argument("--eject-after-5xx", type=int, help="consecutive 5xx that eject an endpoint")
    r.add_argument("--eject-after-errors", type=int, help="consecutive connect/reset errors")
    r.add_argument("--eject-time", type=float, help="base ejection seconds")
    s.add_argument("--proxy", action="append", default=[], help="serve on these proxies only")
    ls = verbs.add_parser("ls", help="list routes")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("-q", "--quiet", action="store_true")
    inspect = verbs.add_parser("inspect", help="routes with resolved endpoints and health")
    inspect.add_argument("names", nargs="+")
    inspect.add_argument("--json", action="store_true", help="(always JSON)")
    rm = verbs.add_parser("rm", help="remove routes (missing ones are fine)")
    rm.add_argument("names", nargs="+")


def parse_mirror(text: str) -> Mirror:
    """``SERVICE[:k=v]@PERCENT``."""
    body, at, percent = text.rpartition("@")
    try:
        value = float(percent)
    except ValueError:
        value = -1.0
    if not at or not 0 < value <= 100:
        raise InvalidInput(
            f"mirror {text!r} is not valid", hint="write SERVICE[:k=v]@PERCENT, e.g. web-v2@10"
        )
    return Mirror(parse_backend(body), value)


def parse_weights(items: list[str]) -> dict[str, int]:
    """Repeated ``--weight BACKEND=W``."""
    out: dict[str, int] = {}
    for item in items:
        name, eq, weight = item.partition("=")
        if not eq or not name or not weight.isdigit():
            raise InvalidInput(
                f"weight {item!r} is not valid", hint="write BACKEND=W, e.g. web-v2=50"
            )
        out[name] = int(weight)
    return out


def _timeouts(args: argparse.Namespace) -> Timeouts:
    base = Timeouts()
    per_try = args.timeout_try if args.timeout_try is not None else base.per_try
    request = args.timeout_request if args.timeout_request is not None else base.request
    if args.timeout_request is None and per_try > request:
        request = per_try  # a long per-try timeout alone raises the whole-request one
    return Timeouts(
        connect=args.timeout_connect if args.timeout_connect is not None else base.connect,
        per_try=per_try,
        request=request,
        idle=args.timeout_idle if args.timeout_idle is not None else base.idle,
    )


def _retries(args: argparse.Namespace) -> RetryPolicy:
    base = RetryPolicy()
    if args.retries is not None and args.retries < 0:
        raise InvalidInput(f"--retries {args.retries} is negative", hint="0 means no retries")
    on = tuple(c.strip() for c in args.retry_on.split(",") if c.strip()) if args.retry_on else None
    return RetryPolicy(
        attempts=base.attempts if args.retries is None else args.retries + 1,
        on=base.on if on is None else on,
        non_idempotent=args.retry_non_idempotent,
    )


def _given(value: int | float | None, default: int | float) -> Any:
    return default if value is None else value


def route_spec(args: argparse.Namespace) -> RouteSpec:
    """The RouteSpec a ``route set`` with ``--backend`` describes, validated."""
    breaker, outlier = CircuitBreaker(), OutlierDetection()
    eject = _given(args.eject_time, outlier.base_ejection)
    return RouteSpec(
        name=args.name,
        match=Match.from_dict(
            {
                "hosts": args.host,
                "path_prefix": args.path,
                "methods": args.method,
                "headers": key_values(args.header, "header"),
            }
        ),
        backends=tuple(parse_backend(b) for b in args.backend),
        balancer=args.balancer,
        pinning=Pinning.from_dict({"header": args.pin_header, "cookie": args.pin_cookie}),
        sticky=None if args.sticky is None else Sticky(cookie=args.sticky),
        mirror=None if args.mirror is None else parse_mirror(args.mirror),
        timeouts=_timeouts(args),
        retries=_retries(args),
        circuit_breaker=CircuitBreaker(
            max_connections=_given(args.max_connections, breaker.max_connections),
            max_pending=_given(args.max_pending, breaker.max_pending),
            max_requests=_given(args.max_requests, breaker.max_requests),
        ),
        outlier=OutlierDetection(
            consecutive_5xx=_given(args.eject_after_5xx, outlier.consecutive_5xx),
            consecutive_errors=_given(args.eject_after_errors, outlier.consecutive_errors),
            base_ejection=eject,
            max_ejection=max(outlier.max_ejection, eject),
        ),
        proxies=tuple(args.proxy),
    ).validate()


def _set(client: ApiClient, args: argparse.Namespace) -> dict[str, Any]:
    if args.weight and args.backend:
        raise InvalidInput(
            "--weight changes an existing route's weights; --backend replaces the route",
            hint="give one or the other",
        )
    if args.weight:
        weights = parse_weights(args.weight)
        answer: dict[str, Any] = client.post(
            f"/v1/routes/{args.name}/weights", {"weights": weights}
        )
        return answer
    if not args.backend:
        raise InvalidInput(
            f"route {args.name!r}: give --backend to create or replace it, or --weight",
            hint="e.g. podnet route set shop --host shop.example --backend web-v1@90 "
            "--backend web-v2@10",
        )
    spec = route_spec(args)
    answer = client.call("PUT", f"/v1/routes/{args.name}", spec.to_dict())
    return answer


def _backend_text(route: dict[str, Any]) -> str:
    out = []
    for ref, resolved in zip(route["backends"], route["resolved"], strict=True):
        eps = resolved["endpoints"]
        healthy = sum(1 for e in eps if e["healthy"] and e["weight"] > 0)
        out.append(f"{ref['name']}@{ref['weight']} ({healthy}/{len(eps)})")
    return ", ".join(out)


def _match_text(match: dict[str, Any]) -> str:
    hosts = ",".join(match["hosts"]) or "*"
    extra = [f"{k}={v}" for k, v in match["headers"].items()] + list(match["methods"])
    return f"{hosts}{match['path_prefix']}" + (f" [{' '.join(extra)}]" if extra else "")


def _ls(client: ApiClient, args: argparse.Namespace) -> None:
    routes = sorted(client.get("/v1/routes"), key=lambda r: r["name"])
    if args.json:
        print_json(routes)
        return
    if args.quiet:
        for r in routes:
            print(r["name"])
        return
    rows = [
        (
            r["name"],
            _match_text(r["match"]),
            _backend_text(r),
            r["balancer"],
            ",".join(r["proxies"]) or "(all)",
        )
        for r in routes
    ]
    table(["ROUTE", "MATCH", "BACKENDS (HEALTHY/ENDPOINTS)", "BALANCER", "PROXIES"], rows)


def run(client: ApiClient, args: argparse.Namespace) -> int:
    if args.verb == "set":
        route = _set(client, args)
        print(f"{route['name']}: {_backend_text(route)}")
    elif args.verb == "ls":
        _ls(client, args)
    elif args.verb == "inspect":
        print_json([client.get(f"/v1/routes/{n}") for n in args.names])
    elif args.verb == "rm":
        for name in args.names:
            client.delete(f"/v1/routes/{name}")
            print(name)
    return 0
