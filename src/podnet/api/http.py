"""HTTP+JSON over a unix socket: the agent's server and the CLI's client.

A deliberately small surface: JSON bodies, errors as
``{"error": {"kind", "message", "hint"}}`` with an HTTP status per kind, one
thread per connection (requests are short and the agent serialises mutations
behind one lock anyway).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from podnet import errors

__all__ = ["ApiClient", "ApiServer", "RawResponse", "Request", "Router"]

_STATUS = {
    "not-found": 404,
    "already-exists": 409,
    "conflict": 409,
    "store-conflict": 409,
    "invalid": 400,
    "store-unavailable": 503,
}
_KINDS = {
    "not-found": errors.NotFound,
    "already-exists": errors.AlreadyExists,
    "conflict": errors.Conflict,
    "store-conflict": errors.StoreConflict,
    "invalid": errors.InvalidInput,
    "kernel": errors.KernelError,
    "store-unavailable": errors.StoreUnavailable,
}


class Request:
    """What a handler sees: path parameters, query, JSON body (raw routes: bytes)."""

    def __init__(
        self, params: dict[str, str], query: dict[str, str], body: Any, raw: bytes = b""
    ) -> None:
        self.params = params
        self.query = query
        self.body = body
        self.raw = raw

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in {"1", "true", "yes"}


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A non-JSON answer (the CNI forwarder's protocol): status, headers, bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Request], Any]


class Router:
    """Maps (method, path pattern) to handlers; ``{name}`` matches one segment."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler, bool]] = []

    def add(self, method: str, pattern: str, handler: Handler, *, raw: bool = False) -> None:
        """Route ``method pattern`` to ``handler``; ``raw`` routes get the body as bytes."""
        parts = re.split(r"\{(\w+)\}", pattern)
        regex = "".join(
            f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
        )
        self._routes.append((method, re.compile(f"^{regex}$"), handler, raw))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str], bool] | None:
        for m, regex, handler, raw in self._routes:
            found = regex.match(path)
            if found and m == method:
                return handler, found.groupdict(), raw
        return None


class _Handler(BaseHTTPRequestHandler):
    server: _UnixServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            found = self.server.router.match(self.command, url.path)
            if found is None:
                raise errors.NotFound(f"no API route {self.command} {url.path}")
            handler, params, is_raw = found
            try:
                body = None if is_raw or not raw else json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise errors.InvalidInput(f"request body is not JSON: {exc}") from None
            answer = handler(Request(params, query, body, raw))
            if isinstance(answer, RawResponse):
                self._send_raw(answer)
            else:
                self._send(200, answer)
        except errors.PodnetError as exc:
            self._send(_STATUS.get(exc.kind, 500), {"error": exc.to_dict()})
        except Exception as exc:  # a bug: report it rather than drop the connection
            self.server.on_error(exc)
            message = f"internal error: {type(exc).__name__}: {exc}"
            self._send(500, {"error": {"kind": "internal", "message": message}})

    do_GET = do_POST = do_DELETE = do_PUT = _handle  # noqa: N815 - http.server names

    def _send_raw(self, answer: RawResponse) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN  # bursts of CNI calls must queue, not fail
    router: Router
    on_error: Callable[[BaseException], None]


class ApiServer:
    """Serves a Router on a unix socket (mode 0600: the API is root's)."""

    def __init__(
        self, path: Path, router: Router, on_error: Callable[[BaseException], None]
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = _UnixServer(str(path), _Handler)
        finally:
            os.umask(old_umask)
        self._server.router = router
        self._server.on_error = on_error
        self._thread: threading.Thread | None = None
        self.path = path

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._path)  # blocking: a full backlog waits instead of EAGAIN
        except BaseException:
            sock.close()
            raise
        sock.settimeout(self.timeout)
        self.sock = sock


class ApiClient:
    """Calls the agent; re-raises its errors as podnet's own exception types."""

    def __init__(self, path: Path, timeout: float = 300.0) -> None:
        self.path = path
        self.timeout = timeout

    def call(self, method: str, url: str, body: Any = None) -> Any:
        conn = _UnixConnection(str(self.path), self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data else {}
            conn.request(method, url, body=data, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read() or b"null")
        finally:
            conn.close()
        if response.status >= 400:
            err = payload.get("error", {}) if isinstance(payload, dict) else {}
            cls = _KINDS.get(err.get("kind", ""), errors.PodnetError)
            raise cls(err.get("message", f"agent answered {response.status}"), hint=err.get("hint"))
        return payload

    def get(self, url: str) -> Any:
        return self.call("GET", url)

    def post(self, url: str, body: Any = None) -> Any:
        return self.call("POST", url, body if body is not None else {})

    def delete(self, url: str) -> Any:
        return self.call("DELETE", url)
