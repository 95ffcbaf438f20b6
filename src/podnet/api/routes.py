"""The agent's API: URL routes bound to the service layer."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from podnet.agent import topology_ops
from podnet.agent.cni_ops import CniOps
from podnet.agent.registry import Registry
from podnet.agent.routes import RouteOps
from podnet.agent.service import Service
from podnet.api.http import RawResponse, Request, Router
from podnet.errors import InvalidInput
from podnet.model.network import NetworkRequest
from podnet.model.pod import PodSpec
from podnet.model.route import ProxySpec, RouteSpec
from podnet.model.service import ServiceSpec
from podnet.topology import loads

__all__ = ["build_router"]


def _body(req: Request) -> dict[str, Any]:
    if not isinstance(req.body, dict):
        raise InvalidInput("request body must be a JSON object")
    return req.body


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode(errors="replace")
    if lines <= 0:
        return text
    return "".join(text.splitlines(keepends=True)[-lines:])


def build_router(service: Service, info: dict[str, Any], routes: RouteOps | None = None) -> Router:
    """Every route of API v1. ``routes``: the agent's one RouteOps (it keeps
    snapshot versions); a fresh one when not given."""
    r = Router()
    r.add("GET", "/v1/info", lambda req: info)
    for add_routes in (_networks, _pods, _topology, _services, _cni, _admin):
        add_routes(r, service)
    ops = routes or RouteOps(service)
    _l7_routes(r, ops)
    _proxies(r, ops)
    return r


def _networks(r: Router, service: Service) -> None:
    def network_view(name: str) -> dict[str, Any]:
        net = service.network(name).to_dict()
        net["pods"] = sorted(
            p.name
            for p in service.repo.pods().values()
            if any(a.network == name for a in p.attachments)
        )
        return net

    r.add("GET", "/v1/networks", lambda req: [network_view(n) for n in service.repo.networks()])
    r.add("GET", "/v1/networks/{name}", lambda req: network_view(req.params["name"]))
    r.add(
        "POST",
        "/v1/networks",
        lambda req: service.create_network(NetworkRequest.from_dict(_body(req))).to_dict(),
    )
    r.add(
        "DELETE",
        "/v1/networks/{name}",
        lambda req: {"removed": service.remove_network(req.params["name"])},
    )


def _pods(r: Router, service: Service) -> None:
    r.add(
        "GET", "/v1/pods", lambda req: [service.pod_view(p) for p in service.repo.pods().values()]
    )
    r.add("GET", "/v1/pods/{name}", lambda req: service.pod_view(service.pod(req.params["name"])))
    r.add(
        "POST",
        "/v1/pods",
        lambda req: service.pod_view(service.run_pod(PodSpec.from_dict(_body(req)))),
    )
    r.add(
        "DELETE",
        "/v1/pods/{name}",
        lambda req: {"removed": service.remove_pod(req.params["name"], force=req.flag("force"))},
    )
    r.add(
        "POST",
        "/v1/pods/{name}/stop",
        lambda req: service.pod_view(service.set_running(req.params["name"], False)),
    )
    r.add(
        "POST",
        "/v1/pods/{name}/start",
        lambda req: service.pod_view(service.set_running(req.params["name"], True)),
    )

    def logs(req: Request) -> dict[str, str]:
        view = service.pod_view(service.pod(req.params["name"]))
        return {"log": _tail(view["log_path"], int(req.query.get("tail", "0")))}

    r.add("GET", "/v1/pods/{name}/logs", logs)


def _topology(r: Router, service: Service) -> None:
    def up(req: Request) -> dict[str, Any]:
        body = _body(req)
        topo = loads(str(body.get("text", "")), str(body.get("filename", "<api>")))
        return topology_ops.up(service, topo, dry_run=bool(body.get("dry_run")))

    def down(req: Request) -> dict[str, Any]:
        body = _body(req)
        if body.get("all"):
            return topology_ops.down(service, None)
        topo = loads(str(body.get("text", "")), str(body.get("filename", "<api>")))
        return topology_ops.down(service, topo.owner)

    r.add("POST", "/v1/up", up)
    r.add("POST", "/v1/down", down)


def _services(r: Router, service: Service) -> None:
    registry = Registry(service)

    def service_view(name: str) -> dict[str, Any]:
        return registry.view(registry.get(name))

    r.add(
        "GET",
        "/v1/services",
        lambda req: [registry.view(s) for s in service.repo.services().values()],
    )
    r.add("GET", "/v1/services/{name}", lambda req: service_view(req.params["name"]))
    r.add(
        "POST",
        "/v1/services",
        lambda req: registry.view(registry.create(ServiceSpec.from_dict(_body(req)))),
    )
    r.add(
        "DELETE",
        "/v1/services/{name}",
        lambda req: {"removed": registry.remove(req.params["name"])},
    )

    def endpoints(req: Request) -> dict[str, Any]:
        """The service's endpoints with an ``etag``; with ``?wait=ETAG`` a
        long-poll that answers when they differ from that (or at ``timeout``)."""
        name = req.params["name"]
        wait = req.query.get("wait", "")
        deadline = time.monotonic() + min(float(req.query.get("timeout", "30")), 300.0)
        while True:
            revision = service.store.revision()
            eps = service_view(name)["endpoints"]
            etag = hashlib.sha256(json.dumps(eps, sort_keys=True).encode()).hexdigest()[:16]
            left = deadline - time.monotonic()
            if not wait or etag != wait or left <= 0:
                return {"service": name, "etag": etag, "revision": revision, "endpoints": eps}
            service.store.watch("/", revision, timeout=min(left, 5.0))

    r.add("GET", "/v1/services/{name}/endpoints", endpoints)


def _l7_routes(r: Router, ops: RouteOps) -> None:
    def put(req: Request) -> dict[str, Any]:
        body = _body(req)
        name = req.params["name"]
        if body.get("name", name) != name:
            raise InvalidInput(f"route body names {body.get('name')!r}, the URL {name!r}")
        return ops.route_view(ops.set_route(RouteSpec.from_dict({**body, "name": name})))

    def weights(req: Request) -> dict[str, Any]:
        raw = _body(req).get("weights")
        if not isinstance(raw, dict):
            raise InvalidInput('weights must be an object {"BACKEND": WEIGHT}')
        try:
            parsed = {str(k): int(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            raise InvalidInput("weights must be whole numbers", hint="e.g. web-v2=50") from None
        return ops.route_view(ops.set_weights(req.params["name"], parsed))

    r.add("GET", "/v1/routes", lambda req: [ops.route_view(s) for s in ops.repo.routes().values()])
    r.add("GET", "/v1/routes/{name}", lambda req: ops.route_view(ops.route(req.params["name"])))
    r.add("PUT", "/v1/routes/{name}", put)
    r.add("POST", "/v1/routes/{name}/weights", weights)
    r.add(
        "DELETE", "/v1/routes/{name}", lambda req: {"removed": ops.remove_route(req.params["name"])}
    )


#: How long a snapshot long-poll waits before answering 304 (the contract's ~25 s).
SNAPSHOT_WAIT = 25.0


def _proxies(r: Router, ops: RouteOps) -> None:
    def snapshot(req: Request) -> dict[str, Any] | RawResponse:
        """``?wait=VERSION``: answer when the version differs, or 304 after ~25 s."""
        wait = req.query.get("wait")
        try:
            version = None if wait is None else int(wait)
            timeout = min(float(req.query.get("timeout", SNAPSHOT_WAIT)), 300.0)
        except ValueError:
            raise InvalidInput("wait must be a snapshot version, timeout seconds") from None
        snap = ops.wait_snapshot(req.params["name"], version, timeout)
        if snap is None:
            return RawResponse(304, {}, b"")
        return snap.to_dict()

    r.add(
        "GET", "/v1/proxies", lambda req: [ops.proxy_view(p) for p in ops.repo.proxies().values()]
    )
    r.add("GET", "/v1/proxies/{name}", lambda req: ops.proxy_view(ops.proxy(req.params["name"])))
    r.add(
        "POST",
        "/v1/proxies",
        lambda req: ops.proxy_view(ops.create_proxy(ProxySpec.from_dict(_body(req)))),
    )
    r.add(
        "DELETE",
        "/v1/proxies/{name}",
        lambda req: {"removed": ops.remove_proxy(req.params["name"])},
    )
    r.add("GET", "/v1/proxies/{name}/snapshot", snapshot)


def _cni(r: Router, service: Service) -> None:
    cni = CniOps(service)

    def cni_request(req: Request) -> dict[str, Any]:
        """The CNI fast path: podnet-cni forwards its environment and stdin."""
        body = _body(req)
        env = {str(k): str(v) for k, v in dict(body.get("env", {})).items()}
        code, out = cni.run_cni(env, base64.b64decode(str(body.get("stdin", ""))))
        return {"exit": code, "stdout": out}

    def cni_raw(req: Request) -> RawResponse:
        """The native forwarder's protocol: body = CNI_* variables as ``K=V\\0``
        entries, an empty entry, then stdin; the exit status comes back in a
        header and stdout as the body. No JSON to build or parse in C."""
        env_block, _, stdin = req.raw.partition(b"\0\0")
        env = dict(
            item.decode(errors="surrogateescape").partition("=")[::2]
            for item in env_block.split(b"\0")
            if item
        )
        code, out = cni.run_cni(env, stdin)
        return RawResponse(200, {"Cni-Exit": str(code)}, out.encode())

    r.add("POST", "/v1/cni", cni_request)
    r.add("POST", "/v1/cni/raw", cni_raw, raw=True)


def _admin(r: Router, service: Service) -> None:
    def reset(req: Request) -> dict[str, bool]:
        service.reset()
        return {"reset": True}

    def reconcile(req: Request) -> dict[str, Any]:
        steps = service.reconciler.reconcile()
        return {"steps": [s.describe() for s in steps]}

    r.add("POST", "/v1/reset", reset)
    r.add("POST", "/v1/reconcile", reconcile)
