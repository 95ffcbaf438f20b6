"""`podnet proxy run` end to end on 127.0.0.1: whoami backends and the proxy as processes.

Each test writes a snapshot file, starts the backends and the proxy it needs
(ephemeral ports, stopped by pid) and talks HTTP to the proxy. Load is a few
client threads for a bounded number of requests; no timing thresholds beyond
"the timeout fired before the slow answer would have come".
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from podnet.model.route import (
    BackendRef,
    CircuitBreaker,
    Mirror,
    OutlierDetection,
    ResolvedBackend,
    ResolvedRoute,
    RetryPolicy,
    RouteSpec,
    Snapshot,
    SnapshotEndpoint,
    Sticky,
    Timeouts,
)
from podnet.workload.special import frame

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC)}
IO_TIMEOUT = 10.0


# -- processes -------------------------------------------------------------------------


def read_line(stream: IO[bytes], timeout: float) -> str:
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert box and box[0], "the process printed no line in time"
    return box[0].decode().strip()


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    port: int
    admin: int = 0
    name: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        return self.popen.returncode


@dataclass
class Harness:
    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    version: int = 0

    def whoami(self, name: str, *extra: str) -> Proc:
        argv = [sys.executable, "-m", "podnet.workload.whoami", "--host", "127.0.0.1"]
        argv += ["--port", "0", "--name", name, *extra]
        popen = subprocess.Popen(argv, stdout=subprocess.PIPE, env=ENV)
        assert popen.stdout is not None
        line = read_line(popen.stdout, IO_TIMEOUT)
        proc = Proc(popen, int(line.split()[3].rpartition(":")[2]), name=name)
        self.procs.append(proc)
        return proc

    @property
    def snapshot_path(self) -> Path:
        return self.tmp / "snapshot.json"

    def write(self, routes: Sequence[ResolvedRoute]) -> None:
        self.version += 1
        snapshot = Snapshot("p1", self.version, tuple(routes))
        tmp = self.tmp / "snapshot.tmp"
        tmp.write_text(json.dumps(snapshot.to_dict()))
        tmp.replace(self.snapshot_path)

    def proxy(self, *extra: str) -> Proc:
        argv = [sys.executable, "-m", "podnet.cli.proxy", "--name", "p1"]
        argv += ["--snapshot", str(self.snapshot_path), "--listen", "127.0.0.1:0"]
        argv += ["--admin", "127.0.0.1:0", *extra]
        popen = subprocess.Popen(argv, stdout=subprocess.PIPE, env=ENV)
        assert popen.stdout is not None
        line = read_line(popen.stdout, IO_TIMEOUT)
        match = re.search(r"listening on 127\.0\.0\.1:(\d+) admin 127\.0\.0\.1:(\d+)", line)
        assert match, line
        proc = Proc(popen, int(match[1]), int(match[2]), name="proxy")
        self.procs.append(proc)
        return proc


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        for proc in reversed(h.procs):
            proc.stop(signal.SIGKILL)


def backend(name: str, procs: Sequence[Proc], weight: int = 1) -> ResolvedBackend:
    endpoints = tuple(SnapshotEndpoint("127.0.0.1", p.port) for p in procs)
    return ResolvedBackend(BackendRef(name=name, service=name, weight=weight), endpoints)


def route(*backends: ResolvedBackend, name: str = "r1", **spec: Any) -> ResolvedRoute:
    refs = tuple(b.ref for b in backends)
    mirror = spec.pop("mirror_backend", None)
    if mirror is not None:
        spec["mirror"] = Mirror(mirror.ref, 100.0)
    return ResolvedRoute(RouteSpec(name=name, backends=refs, **spec), tuple(backends), mirror)


# -- clients ---------------------------------------------------------------------------


def get(port: int, path: str = "/", **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT)
    with contextlib.closing(conn):
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()


def hostname(body: bytes) -> str:
    return body.split(b"\n", 1)[0].removeprefix(b"Hostname: ").decode()


def count(proc: Proc) -> int:
    return int(get(proc.port, "/count")[2])


def metrics(proxy: Proc) -> str:
    return get(proxy.admin, "/metrics")[2].decode()


def raw(port: int, data: bytes, *, wait: float = IO_TIMEOUT) -> bytes:
    """Send ``data`` and read until the proxy closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer[9:12])


class Load:
    """``threads`` keep-alive clients sending GETs until stopped; every answer recorded."""

    def __init__(self, port: int, threads: int = 4, path: str = "/") -> None:
        self.port, self.path = port, path
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.hosts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)
        for _ in range(100_000):
            if self.stop.is_set():
                break
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as error:
                with self.lock:
                    self.errors.append(repr(error))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)
                continue
            with self.lock:
                self.statuses[response.status] += 1
                self.hosts[hostname(body)] += 1
        conn.close()

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(IO_TIMEOUT)

    def total(self) -> int:
        with self.lock:
            return sum(self.statuses.values()) + len(self.errors)

    def wait_for(self, more: int) -> None:
        target = self.total() + more
        deadline = time.monotonic() + 30
        while self.total() < target and time.monotonic() < deadline:
            time.sleep(0.02)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# -- forwarding ------------------------------------------------------------------------------


def test_forwarding_removes_hop_by_hop_adds_via_and_forwarded_and_keeps_host(
    harness: Harness,
) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]))])
    proxy = harness.proxy()
    status, headers, body = get(
        proxy.port,
        "/api",
        Host="shop.example:8443",
        Connection="keep-alive, X-Secret",
        **{
            "X-Secret": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "X-Forwarded-For": "10.9.9.9",
        },
    )
    assert status == 200
    assert headers["Via"] == "1.1 podnet"
    seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert seen["host"] == ["shop.example:8443"]
    for hop in ("connection", "keep-alive", "te", "x-secret"):
        assert hop not in seen
    assert seen["x-forwarded-for"] == ["10.9.9.9, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["shop.example:8443"]
    assert seen["via"] == ["1.1 podnet"]


def test_http10_client_without_host_is_served(harness: Harness) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]))])
    proxy = harness.proxy()
    answer = raw(proxy.port, b"GET /api HTTP/1.0\r\n\r\n")
    assert status_of(answer) == 200
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["host"] == f"127.0.0.1:{web.port}"


def test_no_route_is_404_and_no_endpoint_is_503(harness: Harness) -> None:
    web = harness.whoami("web")
    down = ResolvedBackend(BackendRef(name="down", service="down"), ())
    harness.write(
        [
            route(backend("web", [web]), name="shop", match=_match(hosts=("shop",))),
            route(down, name="empty", match=_match(hosts=("empty",))),
        ]
    )
    proxy = harness.proxy()
    assert get(proxy.port, "/", Host="other")[0] == 404
    assert get(proxy.port, "/", Host="empty")[0] == 503
    assert get(proxy.port, "/", Host="shop")[0] == 200


def _match(**fields: Any) -> Any:
    from podnet.model.route import Match

    return Match(**fields)


# -- balancing and configuration ---------------------------------------------------------------


def test_canary_split_90_10_over_2000_requests(harness: Harness) -> None:
    v1, v2 = harness.whoami("v1"), harness.whoami("v2")
    harness.write([route(backend("v1", [v1], 90), backend("v2", [v2], 10))])
    proxy = harness.proxy()
    with Load(proxy.port, threads=4) as load:
        load.wait_for(2000)
    assert not load.errors and set(load.statuses) == {200}
    share = load.hosts["v2"] / sum(load.hosts.values())
    assert 0.07 <= share <= 0.13, load.hosts  # 10 % +- ~5 sigma of a binomial over 2,000


def test_weight_change_in_the_snapshot_file_applies_live_without_failures(
    harness: Harness,
) -> None:
    v1, v2 = harness.whoami("v1"), harness.whoami("v2")
    harness.write([route(backend("v1", [v1], 100), backend("v2", [v2], 0))])
    proxy = harness.proxy()
    with Load(proxy.port, threads=3) as load:
        load.wait_for(300)
        assert load.hosts["v2"] == 0
        harness.write([route(backend("v1", [v1], 0), backend("v2", [v2], 100))])
        eventually(lambda: load.hosts["v2"] > 0)
        before = load.hosts["v1"]
        load.wait_for(300)
        assert load.hosts["v1"] - before <= 3  # requests already in flight at the swap
    assert not load.errors and set(load.statuses) == {200}


def test_killing_one_of_three_backends_under_load_loses_no_get(harness: Harness) -> None:
    webs = [harness.whoami(f"w{i}") for i in range(3)]
    retries = RetryPolicy(attempts=3, backoff_base=0.001, backoff_max=0.005)
    harness.write([route(backend("web", webs), retries=retries)])
    proxy = harness.proxy()
    with Load(proxy.port, threads=4) as load:
        load.wait_for(300)
        webs[0].stop(signal.SIGKILL)
        time.sleep(0.2)  # an answer w0 sent just before it died may still be on its way
        killed_at = load.hosts["w0"]
        load.wait_for(600)
    assert load.hosts["w0"] == killed_at
    assert not load.errors and set(load.statuses) == {200}, (load.statuses, load.errors[:3])
    assert load.hosts["w1"] > 100 and load.hosts["w2"] > 100


def test_outlier_is_ejected_and_comes_back(harness: Harness) -> None:
    good, bad = harness.whoami("good"), harness.whoami("bad", "--status", "500")
    outlier = OutlierDetection(consecutive_5xx=3, base_ejection=1.0, max_ejection_percent=50)
    retries = RetryPolicy(attempts=1)
    harness.write([route(backend("web", [good, bad]), outlier=outlier, retries=retries)])
    proxy = harness.proxy()
    statuses = [get(proxy.port)[0] for _ in range(10)]
    assert statuses.count(500) == 3  # round robin: the third 500 ejects it
    assert [get(proxy.port)[0] for _ in range(10)] == [200] * 10
    assert 'podnet_proxy_ejections_total{backend="web"' in metrics(proxy)
    time.sleep(1.2)
    assert 500 in [get(proxy.port)[0] for _ in range(4)]  # back after its ejection time


def test_circuit_breaker_overflow_is_503_at_once(harness: Harness) -> None:
    slow = harness.whoami("slow")
    limits = CircuitBreaker(max_connections=1, max_pending=1, max_requests=1)
    harness.write([route(backend("web", [slow]), circuit_breaker=limits)])
    proxy = harness.proxy()
    slow_answer: list[int] = []
    thread = threading.Thread(target=lambda: slow_answer.append(get(proxy.port, "/delay/1.5")[0]))
    thread.start()
    time.sleep(0.4)
    assert get(proxy.port)[0] == 503  # queued behind the slow request, it would be a 200
    assert not slow_answer  # ... and the slow one is still going: the 503 came at once
    thread.join(IO_TIMEOUT)
    assert slow_answer == [200]
    assert 'podnet_proxy_overflow_total{route="r1",backend="web"} 1' in metrics(proxy)


# -- timeouts and retries ------------------------------------------------------------------------


def test_connect_timeout_gives_up_on_an_endpoint_that_never_accepts(harness: Harness) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):  # fill the accept queue: later SYNs are dropped
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(listener.getsockname())
        fillers.append(filler)
    time.sleep(0.2)
    ep = ResolvedBackend(
        BackendRef(name="web", service="web"),
        (SnapshotEndpoint("127.0.0.1", listener.getsockname()[1]),),
    )
    timeouts = Timeouts(connect=0.3, per_try=5, request=5)
    harness.write([route(ep, timeouts=timeouts, retries=RetryPolicy(attempts=1))])
    proxy = harness.proxy()
    try:  # without the connect timeout the client's own (IO_TIMEOUT) would fire first
        assert get(proxy.port)[0] == 503
        assert 'kind="connect"' in metrics(proxy)
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def test_per_try_timeout_is_504(harness: Harness) -> None:
    web = harness.whoami("web")
    timeouts = Timeouts(per_try=0.3, request=5)
    harness.write(
        [route(backend("web", [web]), timeouts=timeouts, retries=RetryPolicy(attempts=1))]
    )
    proxy = harness.proxy()
    assert get(proxy.port, "/delay/3")[0] == 504  # the backend would answer 200 after 3 s


def test_request_timeout_bounds_every_try_together(harness: Harness) -> None:
    web = harness.whoami("web")
    timeouts = Timeouts(per_try=0.4, request=1.0)
    retries = RetryPolicy(attempts=10, on=("timeout",), backoff_base=0.001, backoff_max=0.001)
    harness.write([route(backend("web", [web]), timeouts=timeouts, retries=retries)])
    proxy = harness.proxy()
    assert get(proxy.port, "/delay/3")[0] == 504
    retried = re.search(r"podnet_proxy_retries_total\{[^}]*\} (\d+)", metrics(proxy))
    assert retried and 1 <= int(retried[1]) <= 2  # 1.0 s holds at most 3 tries of 0.4 s, not 10


def test_retries_go_to_another_endpoint(harness: Harness) -> None:
    bad, good = harness.whoami("bad", "--status", "503"), harness.whoami("good")
    retries = RetryPolicy(attempts=2, on=("503",), backoff_base=0.001, backoff_max=0.001)
    outlier = OutlierDetection(consecutive_5xx=1000)
    harness.write([route(backend("web", [bad, good]), retries=retries, outlier=outlier)])
    proxy = harness.proxy()
    answers = [get(proxy.port) for _ in range(20)]
    assert [a[0] for a in answers] == [200] * 20
    assert {hostname(a[2]) for a in answers} == {"good"}
    assert count(bad) >= 5  # half the first tries went there, and were retried


def test_an_empty_retry_budget_stops_retries_except_after_connect_failures(
    harness: Harness,
) -> None:
    bad, good = harness.whoami("bad", "--status", "503"), harness.whoami("good")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    dead = SnapshotEndpoint("127.0.0.1", closed.getsockname()[1])
    none = RetryPolicy(
        attempts=3, on=("connect-failure", "503"), backoff_base=0.001, backoff_max=0.001,
        budget_percent=0, budget_min_per_second=0,
    )  # fmt: skip
    outlier = OutlierDetection(consecutive_5xx=1000, consecutive_errors=1000)
    flaky = backend("flaky", [bad, good])
    refused = ResolvedBackend(
        BackendRef(name="refused", service="refused"),
        (dead, SnapshotEndpoint("127.0.0.1", good.port)),
    )
    harness.write(
        [
            route(flaky, name="r1", retries=none, outlier=outlier, match=_match(path_prefix="/a")),
            route(
                refused, name="r2", retries=none, outlier=outlier, match=_match(path_prefix="/b")
            ),
        ]
    )
    proxy = harness.proxy()
    try:
        statuses = [get(proxy.port, "/a")[0] for _ in range(20)]
        assert statuses.count(503) == 10  # round robin: every other try hits bad, never retried
        assert [get(proxy.port, "/b")[0] for _ in range(20)] == [200] * 20  # refusals are free
        text = metrics(proxy)
        assert 'podnet_proxy_retries_total{route="r1"' not in text
        assert re.search(r'podnet_proxy_retries_total\{route="r2"[^}]*\} (\d+)', text)
    finally:
        closed.close()


def test_bad_upstream_response_is_502_and_that_connection_closed(harness: Harness) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    closed: list[bool] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
            conn.settimeout(IO_TIMEOUT)
            closed.append(conn.recv(1) == b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ep = ResolvedBackend(
        BackendRef(name="web", service="web"),
        (SnapshotEndpoint("127.0.0.1", server.getsockname()[1]),),
    )
    harness.write([route(ep, retries=RetryPolicy(attempts=1))])
    proxy = harness.proxy()
    try:
        assert get(proxy.port)[0] == 502
        thread.join(IO_TIMEOUT)
        assert closed == [True]
    finally:
        server.close()


def test_header_read_timeout_answers_408_to_a_slow_client(harness: Harness) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]), timeouts=Timeouts(header_read=0.5))])
    proxy = harness.proxy()
    answer = raw(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert status_of(answer) == 408
    assert count(web) == 0


def test_idle_keep_alive_connections_are_closed(harness: Harness) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]), timeouts=Timeouts(idle=0.5))])
    proxy = harness.proxy()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok\n"):
            answer += sock.recv(65536)
        assert status_of(answer) == 200
        assert sock.recv(65536) == b""  # closed by the proxy once idle (no request sent)


# -- messages ------------------------------------------------------------------------------------


def test_expect_100_continue_head_and_sticky_cookie(harness: Harness) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]), sticky=Sticky(cookie="stick"))])
    proxy = harness.proxy()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        answer = b""
        while not answer.endswith(b"\r\n\r\n5\n"):
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert status_of(answer) == 200 and answer.endswith(b"\r\n\r\n5\n")
    assert b"\r\nSet-Cookie: stick=" in answer
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=IO_TIMEOUT)
    with contextlib.closing(conn):
        conn.request("HEAD", "/")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        assert int(response.getheader("Content-Length") or 0) > 0


def test_mirror_gets_a_copy_and_its_failures_are_invisible(harness: Harness) -> None:
    web, shadow = harness.whoami("web"), harness.whoami("shadow", "--status", "500")
    harness.write([route(backend("web", [web]), mirror_backend=backend("shadow", [shadow]))])
    proxy = harness.proxy()
    for _ in range(5):
        status, _, body = get(proxy.port, "/")
        assert status == 200 and hostname(body) == "web"
    eventually(lambda: count(shadow) == 5)


def test_websocket_echo_through_the_proxy(harness: Harness) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]))])
    proxy = harness.proxy()
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        payload = os.urandom(100_000)
        sock.sendall(frame(0x2, payload, mask=b"abcd") + frame(0x1, b"hi", mask=b"wxyz"))
        expected = frame(0x2, payload) + frame(0x1, b"hi")
        got = b""
        while len(got) < len(expected):
            got += sock.recv(65536)
        assert got == expected
        sock.sendall(frame(0x8, b"\x03\xe8", mask=b"abcd"))
        assert sock.recv(100) == frame(0x8, b"\x03\xe8")


# -- framing attacks ---------------------------------------------------------------------------

ATTACKS = {
    "cl-and-te": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "two-differing-cl": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        400,
    ),
    "malformed-cl": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", 400),
    "te-not-chunked-last": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
    ),
    "bad-chunk-size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "missing-host": (b"GET / HTTP/1.1\r\nX-A: a\r\n\r\n", 400),
    "repeated-host": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "long-request-line": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "big-headers": (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 40000 + b"\r\n\r\n",
        431,
    ),
}


def test_framing_attacks_get_their_status_and_never_reach_the_backend(harness: Harness) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]))])
    proxy = harness.proxy()
    for name, (attack, status) in ATTACKS.items():
        answer = raw(proxy.port, attack)
        assert status_of(answer) == status, name
        assert b"\r\nConnection: close\r\n" in answer, name
    assert count(web) == 0


# -- bodies --------------------------------------------------------------------------------------


def test_chunked_upload_and_download_are_streamed(harness: Harness) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]))])
    proxy = harness.proxy()
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=IO_TIMEOUT)
    with contextlib.closing(conn):
        conn.request("POST", "/upload", body=iter([b"a" * 1000, b"b" * 70000, b"c"]))
        response = conn.getresponse()
        assert response.read() == b"71001\n"
        conn.request("GET", "/bytes/300000")
        response = conn.getresponse()
        assert len(response.read()) == 300000


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_200mb_upload_and_download_keep_the_proxy_rss_bounded(harness: Harness) -> None:
    size = 200 * 1024 * 1024
    web = harness.whoami("web", "--max-body", str(2 * size))
    timeouts = Timeouts(per_try=60, request=60)
    harness.write([route(backend("web", [web]), timeouts=timeouts)])
    proxy = harness.proxy()
    get(proxy.port)
    before = vm_rss_kib(proxy.pid)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
    with contextlib.closing(conn):
        block = bytes(256 * 1024)
        conn.request("POST", "/upload", body=(block for _ in range(size // len(block))))
        assert conn.getresponse().read() == b"%d\n" % size
        conn.request("GET", f"/bytes/{size}")
        response = conn.getresponse()
        received = 0
        while chunk := response.read(1 << 20):
            received += len(chunk)
        assert received == size
    growth = vm_rss_kib(proxy.pid) - before
    assert growth < 64 * 1024, f"proxy RSS grew {growth} KiB while moving 2 x 200 MB"


# -- process -------------------------------------------------------------------------------------


def test_sigterm_drains_an_in_flight_slow_request_and_exits_0(harness: Harness) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]))])
    proxy = harness.proxy()
    answer: list[tuple[int, dict[str, str], bytes]] = []
    thread = threading.Thread(target=lambda: answer.append(get(proxy.port, "/delay/1.5")))
    thread.start()
    time.sleep(0.5)
    proxy.popen.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    thread.join(IO_TIMEOUT)
    assert answer and answer[0][0] == 200
    assert answer[0][1].get("Connection") == "close"
    assert proxy.popen.wait(timeout=IO_TIMEOUT) == 0


def test_two_workers_share_the_port_and_both_serve(harness: Harness) -> None:
    web = harness.whoami("web")
    harness.write([route(backend("web", [web]))])
    log = harness.tmp / "access.log"
    proxy = harness.proxy("--workers", "2", "--access-log", str(log))
    for _ in range(40):
        assert get(proxy.port)[0] == 200  # a new connection each: the kernel spreads them

    def workers() -> set[int]:
        lines = log.read_text().splitlines() if log.exists() else []
        return {json.loads(line)["worker"] for line in lines}

    eventually(lambda: len(workers()) == 2)
    assert proxy.pid not in workers()
    # One admin port for all: /metrics sums the workers' counters, whichever served.
    pattern = r'podnet_proxy_requests_total\{route="r1",[^}]*code_class="2xx"\} (\d+)'
    total = re.search(pattern, metrics(proxy))
    assert total and int(total[1]) == 40
    assert get(proxy.admin, "/healthz")[0] == 200
    assert proxy.stop() == 0
