"""The agent's HTTP+JSON API: Router matching, and ApiServer/ApiClient over a unix socket."""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from podnet import errors
from podnet.api.http import ApiClient, ApiServer, Request, Router
from podnet.store.base import StoreUnavailable

IO_TIMEOUT = 30.0  # seconds: bounds every socket operation and thread join here

KINDS: dict[str, tuple[type[errors.PodnetError], int]] = {
    "not-found": (errors.NotFound, 404),
    "already-exists": (errors.AlreadyExists, 409),
    "conflict": (errors.Conflict, 409),
    "store-conflict": (errors.StoreConflict, 409),
    "invalid": (errors.InvalidInput, 400),
    "kernel": (errors.KernelError, 500),
}


# -- Router ----------------------------------------------------------------


def handler_named(name: str) -> Any:
    def handler(req: Request) -> str:
        return name

    return handler


def test_router_matches_literal_paths() -> None:
    router = Router()
    info = handler_named("info")
    router.add("GET", "/v1/info", info)
    assert router.match("GET", "/v1/info") == (info, {}, False)


def test_router_extracts_parameters() -> None:
    router = Router()
    logs = handler_named("logs")
    router.add("GET", "/v1/pods/{name}/logs", logs)
    assert router.match("GET", "/v1/pods/web-1/logs") == (logs, {"name": "web-1"}, False)


def test_router_several_parameters() -> None:
    router = Router()
    h = handler_named("h")
    router.add("DELETE", "/v1/{kind}/{name}", h)
    assert router.match("DELETE", "/v1/pods/web") == (h, {"kind": "pods", "name": "web"}, False)


@pytest.mark.parametrize(
    "path", ["/v1/pods", "/v1/pods/", "/v1/pods/a/b", "/v1/pods/web/", "v1/pods/web", "/v2/pods/x"]
)
def test_router_parameter_is_exactly_one_segment(path: str) -> None:
    router = Router()
    router.add("GET", "/v1/pods/{name}", handler_named("pod"))
    assert router.match("GET", path) is None


def test_router_method_must_match() -> None:
    router = Router()
    router.add("GET", "/v1/networks", handler_named("list"))
    assert router.match("POST", "/v1/networks") is None
    assert router.match("get", "/v1/networks") is None


def test_router_same_path_different_methods() -> None:
    router = Router()
    get, post = handler_named("get"), handler_named("post")
    router.add("GET", "/v1/networks", get)
    router.add("POST", "/v1/networks", post)
    assert router.match("GET", "/v1/networks") == (get, {}, False)
    assert router.match("POST", "/v1/networks") == (post, {}, False)


def test_router_first_added_route_wins() -> None:
    router = Router()
    literal, pattern = handler_named("literal"), handler_named("pattern")
    router.add("GET", "/v1/pods/all", literal)
    router.add("GET", "/v1/pods/{name}", pattern)
    assert router.match("GET", "/v1/pods/all") == (literal, {}, False)
    assert router.match("GET", "/v1/pods/web") == (pattern, {"name": "web"}, False)


def test_router_empty() -> None:
    assert Router().match("GET", "/") is None


def test_router_literal_text_is_not_a_regex() -> None:
    router = Router()
    router.add("GET", "/v1/schema.json", handler_named("schema"))
    assert router.match("GET", "/v1/schemaXjson") is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"force": "1"}, True),
        ({"force": "true"}, True),
        ({"force": "Yes"}, True),
        ({"force": "0"}, False),
        ({"force": ""}, False),
        ({"force": "no"}, False),
        ({}, False),
    ],
)
def test_request_flag(query: dict[str, str], expected: bool) -> None:
    assert Request({}, query, None).flag("force") is expected


# -- a live server ---------------------------------------------------------


@dataclass
class Live:
    path: Path
    client: ApiClient
    reported: list[BaseException]


def _echo(req: Request) -> dict[str, Any]:
    return {"params": req.params, "query": req.query, "body": req.body, "force": req.flag("force")}


def _raise(req: Request) -> None:
    kind = req.params["kind"]
    if kind == "store-unavailable":
        raise StoreUnavailable("the store is closed", hint="restart the agent")
    if kind == "no-hint":
        raise errors.NotFound("pod 'x' does not exist")
    cls, _ = KINDS[kind]
    raise cls(f"{kind} happened", hint=f"hint for {kind}")


def _bug(req: Request) -> None:
    raise RuntimeError("boom")


def build_router() -> Router:
    router = Router()
    for method in ("GET", "POST", "PUT", "DELETE"):
        router.add(method, "/v1/echo/{name}", _echo)
    router.add("GET", "/v1/raise/{kind}", _raise)
    router.add("GET", "/v1/bug", _bug)
    router.add("GET", "/v1/none", lambda req: None)
    router.add("GET", "/v1/list", lambda req: [1, "two", {"three": 3}])
    return router


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    # A short directory: unix socket paths hold at most 107 bytes.
    path = tmp_path_factory.mktemp("api") / "agent.sock"
    reported: list[BaseException] = []
    server = ApiServer(path, build_router(), reported.append)
    server.start()
    try:
        yield Live(path, ApiClient(path, timeout=IO_TIMEOUT), reported)
    finally:
        server.stop()


def raw(path: Path, request: bytes) -> tuple[int, Any]:
    """Send one request as bytes; the status and the decoded JSON body."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(IO_TIMEOUT)
        sock.connect(str(path))
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(response.read())


def raw_request(method: str, target: str, body: bytes = b"") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def test_get_round_trip(live: Live) -> None:
    assert live.client.get("/v1/echo/web") == {
        "params": {"name": "web"},
        "query": {},
        "body": None,
        "force": False,
    }


def test_post_round_trip_with_body(live: Live) -> None:
    body = {"name": "front", "subnets": ["10.89.0.0/24"], "labels": {"ü": "ñ"}}
    got = live.client.post("/v1/echo/front", body)
    assert got["body"] == body
    assert got["params"] == {"name": "front"}


def test_post_without_body_sends_an_empty_object(live: Live) -> None:
    assert live.client.post("/v1/echo/x")["body"] == {}


def test_delete_and_other_methods(live: Live) -> None:
    assert live.client.delete("/v1/echo/gone")["params"] == {"name": "gone"}
    assert live.client.call("PUT", "/v1/echo/put", [1, 2])["body"] == [1, 2]


def test_query_parameters_last_value_wins(live: Live) -> None:
    got = live.client.get("/v1/echo/x?force=yes&tail=10&tail=20")
    assert got["query"] == {"force": "yes", "tail": "20"}
    assert got["force"] is True


def test_non_object_results(live: Live) -> None:
    assert live.client.get("/v1/none") is None
    assert live.client.get("/v1/list") == [1, "two", {"three": 3}]


def test_large_body(live: Live) -> None:
    big = "x" * (1 << 20)
    assert live.client.post("/v1/echo/big", {"data": big})["body"]["data"] == big


def test_several_requests_on_one_client(live: Live) -> None:
    for i in range(20):
        assert live.client.get(f"/v1/echo/n{i}")["params"] == {"name": f"n{i}"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_error_kinds_become_podnet_exceptions(live: Live, kind: str) -> None:
    cls, _ = KINDS[kind]
    with pytest.raises(errors.PodnetError) as info:
        live.client.get(f"/v1/raise/{kind}")
    assert type(info.value) is cls
    assert info.value.kind == kind
    assert info.value.message == f"{kind} happened"
    assert info.value.hint == f"hint for {kind}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_error_kinds_have_their_http_status(live: Live, kind: str) -> None:
    _, status = KINDS[kind]
    got_status, payload = raw(live.path, raw_request("GET", f"/v1/raise/{kind}"))
    assert got_status == status
    assert payload == {
        "error": {"kind": kind, "message": f"{kind} happened", "hint": f"hint for {kind}"}
    }


def test_error_without_hint(live: Live) -> None:
    status, payload = raw(live.path, raw_request("GET", "/v1/raise/no-hint"))
    assert (status, payload) == (
        404,
        {"error": {"kind": "not-found", "message": "pod 'x' does not exist"}},
    )
    with pytest.raises(errors.NotFound) as info:
        live.client.get("/v1/raise/no-hint")
    assert info.value.hint is None


def test_store_unavailable_is_503(live: Live) -> None:
    status, payload = raw(live.path, raw_request("GET", "/v1/raise/store-unavailable"))
    assert status == 503
    assert payload["error"]["kind"] == "store-unavailable"
    with pytest.raises(errors.PodnetError) as info:
        live.client.get("/v1/raise/store-unavailable")
    assert info.value.message == "the store is closed"
    assert info.value.hint == "restart the agent"


def test_store_unavailable_keeps_its_kind_in_the_client(live: Live) -> None:
    with pytest.raises(errors.PodnetError) as info:
        live.client.get("/v1/raise/store-unavailable")
    assert info.value.kind == "store-unavailable"


def test_unknown_route_is_not_found(live: Live) -> None:
    with pytest.raises(errors.NotFound) as info:
        live.client.get("/v1/nothing/here")
    assert info.value.message == "no API route GET /v1/nothing/here"
    status, payload = raw(live.path, raw_request("GET", "/v1/nothing/here?x=1"))
    assert status == 404
    assert payload["error"]["message"] == "no API route GET /v1/nothing/here"


def test_known_path_wrong_method_is_not_found(live: Live) -> None:
    with pytest.raises(errors.NotFound, match="no API route POST /v1/none"):
        live.client.post("/v1/none")


def test_bad_json_body_is_invalid(live: Live) -> None:
    status, payload = raw(live.path, raw_request("POST", "/v1/echo/x", b"{not json"))
    assert status == 400
    assert payload["error"]["kind"] == "invalid"
    assert payload["error"]["message"].startswith("request body is not JSON: ")


def test_non_utf8_body_is_invalid(live: Live) -> None:
    status, payload = raw(live.path, raw_request("POST", "/v1/echo/x", b"\xff\xfe\xfa"))
    assert status == 400
    assert payload["error"]["kind"] == "invalid"


def test_handler_bug_is_500_and_reported(live: Live) -> None:
    before = len(live.reported)
    with pytest.raises(errors.PodnetError) as info:
        live.client.get("/v1/bug")
    assert type(info.value) is errors.PodnetError
    assert info.value.message == "internal error: RuntimeError: boom"
    status, payload = raw(live.path, raw_request("GET", "/v1/bug"))
    assert status == 500
    assert payload["error"]["kind"] == "internal"
    reported = live.reported[before:]
    assert len(reported) == 2
    assert all(isinstance(e, RuntimeError) and str(e) == "boom" for e in reported)


def test_server_keeps_serving_after_errors(live: Live) -> None:
    with pytest.raises(errors.PodnetError):
        live.client.get("/v1/bug")
    assert live.client.get("/v1/echo/after")["params"] == {"name": "after"}


def test_concurrent_clients(live: Live) -> None:
    # Four at once, well within the listen backlog.
    results: dict[int, Any] = {}
    failures: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results[i] = ApiClient(live.path, timeout=IO_TIMEOUT).get(f"/v1/echo/c{i}?n={i}")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT)
    assert not failures
    assert {i: r["params"]["name"] for i, r in results.items()} == {i: f"c{i}" for i in range(4)}


def _pending_connects_accepted(path: Path, limit: int) -> int:
    """How many connects the listening socket queues before it refuses with EAGAIN."""
    pending: list[socket.socket] = []
    try:
        while len(pending) < limit:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(path))
            except BlockingIOError:
                sock.close()
                break
            pending.append(sock)
        return len(pending)
    finally:
        for sock in pending:
            sock.close()


def test_server_queues_a_burst_of_clients(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("burst") / "agent.sock"
    server = ApiServer(path, Router(), lambda exc: None)
    try:
        # Not started yet: nothing accepts, so every connect waits in the backlog.
        assert _pending_connects_accepted(path, 64) == 64
    finally:
        server.start()
        server.stop()


# -- server lifecycle ------------------------------------------------------


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_socket_is_private_and_umask_restored(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("mode") / "agent.sock"
    before = _current_umask()
    server = ApiServer(path, Router(), lambda exc: None)
    try:
        assert _current_umask() == before
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    finally:
        server.start()
        server.stop()


def test_server_creates_the_directory_and_replaces_a_stale_socket(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("life") / "run" / "agent.sock"
    path.parent.mkdir()
    path.write_text("left over by a crashed agent")
    server = ApiServer(path, build_router(), lambda exc: None)
    server.start()
    try:
        assert ApiClient(path, timeout=IO_TIMEOUT).get("/v1/none") is None
    finally:
        server.stop()
    assert not path.exists()


def test_server_makes_missing_parent_directories(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("mk") / "a" / "b" / "s"
    server = ApiServer(path, Router(), lambda exc: None)
    server.start()
    server.stop()
    assert path.parent.is_dir()


def test_client_without_server_raises_oserror(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("none") / "agent.sock"
    with pytest.raises(FileNotFoundError):
        ApiClient(path, timeout=IO_TIMEOUT).get("/v1/info")


def test_client_after_stop_raises_oserror(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("stop") / "agent.sock"
    server = ApiServer(path, build_router(), lambda exc: None)
    server.start()
    client = ApiClient(path, timeout=IO_TIMEOUT)
    assert client.get("/v1/none") is None
    server.stop()
    with pytest.raises(OSError):
        client.get("/v1/none")
