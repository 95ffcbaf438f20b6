"""The ``routes:`` and ``proxies:`` sections of a topology file.

Routes are RouteSpecs in YAML form, by name: ``match``, ``backends``,
``balancer``, ``pinning``, ``sticky``, ``mirror``, ``timeouts``, ``retries``,
``circuit_breaker``, ``outlier``, ``proxies`` (the fields of
:class:`~podnet.model.route.RouteSpec`). A backend is a mapping
(``service``, ``subset``, ``weight``, ``name``, ``port``) or the CLI's text form
``SERVICE[:k=v[,k=v]][@WEIGHT][=NAME]`` (:func:`parse_backend`), so a file and
``podnet route set --backend`` read the same. ``sticky: true`` means the default
cookie.

Proxies are ProxySpecs by name: ``mode`` (edge, default, or sidecar),
``host_port`` (edge), ``pod`` (sidecar), ``listen_port``, ``admin_port``,
``workers``. Which services, pods and proxies exist is the agent's to check at
``up`` (services are not part of topology files); here each entry is checked
by the model's own rules, reported at its line, and routes naming a proxy that
neither the file nor the node has are caught by the agent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from podnet.errors import InvalidInput
from podnet.model.route import BackendRef, ProxySpec, RouteSpec
from podnet.topology.fields import mapping, name_ok
from podnet.topology.problems import Path, Problems

__all__ = ["BACKEND_HINT", "build_proxies", "build_routes", "parse_backend"]

BACKEND_HINT = "write SERVICE[:k=v[,k=v]][@WEIGHT][=NAME], e.g. web:version=v2@10"
_BACKEND = re.compile(r"(?P<body>[^@]+)(?:@(?P<weight>[0-9]+)(?:=(?P<name>[^=@]+))?)?")

T = TypeVar("T", RouteSpec, ProxySpec)


def _subset(text: str, original: str) -> tuple[dict[str, str], str | None]:
    """``k=v,k=v`` (the last item may carry ``=NAME``): labels and the name."""
    subset: dict[str, str] = {}
    name = None
    items = text.split(",")
    for i, item in enumerate(items):
        parts = item.split("=")
        if i == len(items) - 1 and len(parts) == 3:
            name = parts.pop()
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise InvalidInput(f"backend {original!r}: {item!r} is not k=v", hint=BACKEND_HINT)
        subset[parts[0]] = parts[1]
    return subset, name


def parse_backend(text: str) -> BackendRef:
    """``SERVICE[:k=v[,k=v]][@WEIGHT][=NAME]``: ``web@90``, ``web:version=v2@10``,
    ``web@10=canary``; with a subset and no weight the name goes on the last
    label (``web:version=v2=canary``). Default name: the service, then the
    subset's values (``web-v2``).

    Raises:
        InvalidInput: the text does not follow the grammar.
    """
    found = _BACKEND.fullmatch(text.strip())
    if not found:
        raise InvalidInput(f"backend {text!r} is not valid", hint=BACKEND_HINT)
    service, colon, rest = found["body"].partition(":")
    name = found["name"]
    subset: dict[str, str] = {}
    if colon:
        subset, label_name = _subset(rest, text)
        if label_name is not None and name is not None:
            raise InvalidInput(f"backend {text!r} is named twice", hint=BACKEND_HINT)
        name = name or label_name
    elif "=" in service:
        if name is not None:
            raise InvalidInput(f"backend {text!r} is named twice", hint=BACKEND_HINT)
        service, name = service.split("=", 1)
    if not service:
        raise InvalidInput(f"backend {text!r} names no service", hint=BACKEND_HINT)
    weight = int(found["weight"]) if found["weight"] is not None else 1
    data: dict[str, Any] = {"service": service, "subset": subset, "weight": weight, "name": name}
    return BackendRef.from_dict(data)


def _backend(item: object) -> dict[str, Any]:
    if isinstance(item, str):
        return parse_backend(item).to_dict()
    return mapping(item)


def _backends_ok(spec: dict[str, Any], path: Path, problems: Problems) -> bool:
    """Report each text backend that does not parse at its own line."""
    items = [((*path, "backends", i), b) for i, b in enumerate(spec.get("backends") or [])]
    mirror = spec.get("mirror")
    if isinstance(mirror, dict):
        items.append(((*path, "mirror", "backend"), mirror.get("backend")))
    ok = True
    for where, item in items:
        if isinstance(item, str):
            try:
                parse_backend(item)
            except InvalidInput as exc:
                problems.add(where, exc.message, exc.hint)
                ok = False
    return ok


def _route_data(name: str, spec: dict[str, Any], owner: str) -> dict[str, Any]:
    data = {**spec, "name": name, "owner": owner}
    data["backends"] = [_backend(b) for b in spec.get("backends") or []]
    mirror = spec.get("mirror")
    if isinstance(mirror, dict) and isinstance(mirror.get("backend"), str):
        data["mirror"] = {**mirror, "backend": _backend(mirror["backend"])}
    if spec.get("sticky") is True:
        data["sticky"] = {}
    elif spec.get("sticky") is False:
        data["sticky"] = None
    return data


def _build(
    section: object,
    kind: str,
    problems: Problems,
    make: Callable[[str, dict[str, Any], bool], T],
    check: bool,
) -> list[T]:
    out: list[T] = []
    for name, spec in mapping(section).items():
        path: Path = (f"{kind}s" if kind == "route" else "proxies", name)
        if not name_ok(kind, name, path, problems):
            continue
        if kind == "route" and not _backends_ok(mapping(spec), path, problems):
            continue
        try:
            out.append(make(name, mapping(spec), check))
        except InvalidInput as exc:
            problems.add(path, exc.message, exc.hint, key=True)
        except (TypeError, ValueError, KeyError) as exc:  # shapes the schema let through
            problems.add(path, f"{kind} {name!r} is not valid: {exc}", None, key=True)
    return out


def _checked(spec: T, check: bool) -> T:
    return spec.validate() if check else spec


def build_routes(
    section: object, owner: str, problems: Problems, *, check: bool = True
) -> list[RouteSpec]:
    """Every route of the ``routes:`` section, owned by ``owner``; ``check``: run
    the model's own checks too (the loader does once the file's shape passed)."""
    return _build(
        section,
        "route",
        problems,
        lambda name, spec, check: _checked(
            RouteSpec.from_dict(_route_data(name, spec, owner)), check
        ),
        check,
    )


def build_proxies(
    section: object, owner: str, problems: Problems, *, check: bool = True
) -> list[ProxySpec]:
    """Every proxy of the ``proxies:`` section, owned by ``owner`` (``check``: as
    for :func:`build_routes`)."""
    return _build(
        section,
        "proxy",
        problems,
        lambda name, spec, check: _checked(
            ProxySpec.from_dict({**spec, "name": name, "owner": owner}), check
        ),
        check,
    )
