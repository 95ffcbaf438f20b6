"""Services end to end in a lab: a VIP balanced in the kernel, reachable from
pods, from the host and (published) from the external test host; policies,
endpoints following the selector, no endpoints -> refused, the endpoint watch."""

from __future__ import annotations

import collections
import json
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.lab import Lab

pytestmark = pytest.mark.root

WHOAMI = [sys.executable, "-m", "podnet", "whoami", "--port", "8080"]
REQUESTS = 90


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        lab.podnet("network", "create", "front", "--subnet", "10.89.0.0/24")
        for i in (1, 2, 3):
            lab.podnet(
                "run", "--name", f"web-{i}", "--net", "front", "-l", "app=web", "--", *WHOAMI
            )
        lab.podnet("run", "--name", "client", "--net", "front", "--", "sleep", "3600")
        for i in (1, 2, 3):
            lab.wait_http(ns(lab, "client"), ip(lab, f"web-{i}"), 8080)
        yield lab


def ns(lab: Lab, pod: str) -> str:
    return lab.settings.netns_prefix + pod


def ip(lab: Lab, pod: str) -> str:
    data = json.loads(lab.podnet("inspect", pod).stdout)[0]
    return str(data["interfaces"][0]["addresses"][0]).split("/")[0]


def service(lab: Lab, name: str) -> dict[str, Any]:
    return json.loads(lab.podnet("service", "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def hostnames(
    lab: Lab, where: str, host: str, port: int, n: int = REQUESTS
) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        _, body = lab.wait_http(where, host, port)
        seen[body.splitlines()[0].removeprefix("Hostname: ")] += 1
    return seen


def test_vip_from_pod_host_and_published_port(lab: Lab) -> None:
    out = lab.podnet(
        "service",
        "create",
        "web",
        "--port",
        "http=80:8080",
        "--selector",
        "app=web",
        "--health",
        "none",
        "-p",
        "9090:80",
    ).stdout
    vip = service(lab, "web")["vips"][0]
    assert out.split() == ["web", vip] and vip.startswith("10.96.")
    from_pod = hostnames(lab, ns(lab, "client"), vip, 80)
    assert set(from_pod) == {"web-1", "web-2", "web-3"}
    assert min(from_pod.values()) >= 10, from_pod  # ~30 each; bound is ~6 sigma below
    assert set(hostnames(lab, lab.host, vip, 80, 30)) <= {"web-1", "web-2", "web-3"}
    status, body = lab.wait_http(lab.external, lab.host_ip, 9090)
    assert status == 200 and body.startswith("Hostname: web-")
    table = lab.podnet("service", "ls").stdout
    assert "9090->80:8080/tcp" in table and "3/3" in table


def test_hairpin_a_pod_reaching_its_own_service(lab: Lab) -> None:
    vip = service(lab, "web")["vips"][0]
    seen = hostnames(lab, ns(lab, "web-1"), vip, 80, 30)
    assert "web-1" in seen  # it picked itself at least once, and that worked


def test_roundrobin_is_even(lab: Lab) -> None:
    lab.podnet(
        "service",
        "create",
        "rr",
        "--port",
        "81:8080",
        "-l",
        "app=web",
        "--lb",
        "roundrobin",
        "--health",
        "none",
    )
    seen = hostnames(lab, ns(lab, "client"), service(lab, "rr")["vips"][0], 81, 30)
    assert sorted(seen.values()) == [10, 10, 10], seen
    lab.podnet("service", "rm", "rr")


def test_affinity_keeps_a_client_on_one_endpoint(lab: Lab) -> None:
    lab.podnet(
        "service",
        "create",
        "sticky",
        "--port",
        "82:8080",
        "-l",
        "app=web",
        "--affinity",
        "client-ip:60",
        "--health",
        "none",
    )
    seen = hostnames(lab, ns(lab, "client"), service(lab, "sticky")["vips"][0], 82, 20)
    assert len(seen) == 1, seen
    lab.podnet("service", "rm", "sticky")


def flow(lab: Lab, where: str, vip: str, port: int, sport: int) -> str:
    """Which endpoint answers the flow from source port ``sport``."""

    def get() -> str:
        with socket.create_connection((vip, port), timeout=3, source_address=("", sport)) as c:
            c.sendall(f"GET / HTTP/1.1\r\nHost: {vip}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := c.recv(65536):
                data += chunk
        return data.split(b"Hostname: ", 1)[1].split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode()

    return lab.in_ns(where, get)


def test_maglev_flows_stay_when_an_unrelated_endpoint_leaves(lab: Lab) -> None:
    lab.podnet(
        "service",
        "create",
        "mg",
        "--port",
        "83:8080",
        "-l",
        "app=web",
        "--lb",
        "maglev",
        "--health",
        "none",
    )
    vip, client = service(lab, "mg")["vips"][0], ns(lab, "client")
    ports = range(41001, 41031)
    before = {p: flow(lab, client, vip, 83, p) for p in ports}
    assert flow(lab, client, vip, 83, 41001) == before[41001]  # one flow, one endpoint
    assert len(set(before.values())) >= 2, before
    lab.podnet("stop", "web-3")  # leaves the endpoints: its flows move, others must not
    try:
        after = {p: flow(lab, client, vip, 83, p) for p in ports}
        assert "web-3" not in after.values()
        kept = {p: after[p] == before[p] for p in ports if before[p] != "web-3"}
        assert all(kept.values()), (before, after)
    finally:
        lab.podnet("start", "web-3")
        lab.podnet("service", "rm", "mg")


def test_endpoints_follow_the_selector_and_no_endpoint_is_refused(lab: Lab) -> None:
    lab.podnet(
        "service", "create", "solo", "--port", "84:8080", "-l", "app=solo", "--health", "none"
    )
    vip = service(lab, "solo")["vips"][0]
    assert not lab.can_connect(ns(lab, "client"), vip, 84)  # rejected, not hanging
    lab.podnet("run", "--name", "solo-1", "--net", "front", "-l", "app=solo", "--", *WHOAMI)
    status, body = lab.wait_http(ns(lab, "client"), vip, 84)
    assert status == 200 and body.startswith("Hostname: solo-1")
    lab.podnet("rm", "-f", "solo-1")
    deadline = time.monotonic() + 10
    while lab.can_connect(ns(lab, "client"), vip, 84) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not lab.can_connect(ns(lab, "client"), vip, 84)
    lab.podnet("service", "rm", "solo")


def test_endpoint_watch_answers_on_change(lab: Lab) -> None:
    lab.podnet("service", "create", "w", "--port", "85:8080", "-l", "app=w", "--health", "none")
    first = json.loads(lab.podnet("service", "endpoints", "w", "--json").stdout)
    assert first["endpoints"] == []
    lab.podnet("run", "--name", "w-1", "--net", "front", "-l", "app=w")
    # a long-poll with the old etag answers as soon as the set differs
    import urllib.parse

    from podnet.api.http import ApiClient

    client = ApiClient(lab.settings.socket_path)
    query = urllib.parse.urlencode({"wait": first["etag"], "timeout": 10})
    answer = client.get(f"/v1/services/w/endpoints?{query}")
    assert [e["pod"] for e in answer["endpoints"]] == ["w-1"]
    lab.podnet("rm", "-f", "w-1")
    lab.podnet("service", "rm", "w")


def test_rm_removes_the_vip_and_the_route_with_the_last_service(lab: Lab) -> None:
    vip = service(lab, "web")["vips"][0]
    lab.podnet("service", "rm", "web")
    assert lab.podnet("service", "ls", "-q").stdout.split() == []
    assert "pnvip0" not in lab.run(["ip", "-br", "link"]).stdout
    assert not lab.can_connect(ns(lab, "client"), vip, 80)
