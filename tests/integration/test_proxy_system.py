"""The L7 proxy as a system, in a lab: the agent runs edge proxies and sidecars
that it feeds by long-poll, and the CLI drives routes and proxies.

Edge proxy published on a host port, reached from the external test host and
from the host; a 90/10 canary over 1,000 requests, then a weight shift to 50/50
that the next 1,000 requests follow; endpoints following pods coming and going;
a crashed proxy restarted and a restarted agent adopting its proxies; a pod's
sidecar taking its connections to a service VIP (seen in the sidecar's access
log) and removed with its table; topology files with routes and proxies; and
nothing left behind. Traffic goes only to lab addresses; every wait is bounded.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from podnet.controller.processes import process_start_ticks
from podnet.lab import Lab, LabCommandError, leftovers
from podnet.rules.sidecar import SIDECAR_TABLE

pytestmark = pytest.mark.root

WHOAMI = [sys.executable, "-m", "podnet", "whoami", "--port", "8080"]
EDGE_PORT = 8088
HOST = "shop.example"
CANARY = ["--backend", "web:version=v1@90=web-v1", "--backend", "web:version=v2@10=web-v2"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        lab.podnet("network", "create", "front", "--subnet", "10.89.0.0/24", "--ipv6")
        for name, version in (("web-a", "v1"), ("web-b", "v1"), ("web-c", "v2")):
            lab.podnet(
                "run", "--name", name, "--net", "front",
                "-l", "app=web", "-l", f"version={version}", "--", *WHOAMI,
            )  # fmt: skip
        lab.podnet("run", "--name", "client", "--net", "front", "--", "sleep", "3600")
        lab.podnet("service", "create", "web", "--port", "80:8080", "-l", "app=web")
        for pod in ("web-a", "web-b", "web-c"):
            lab.wait_http(ns(lab, "client"), ip(lab, pod), 8080)
        wait_for("endpoints healthy", lambda: ready(lab) == 3, 30)
        lab.podnet("proxy", "create", "edge", "--port", str(EDGE_PORT))
        lab.podnet("route", "set", "shop", "--host", HOST, *CANARY)
        yield lab
        pids = [p["status"]["pid"] for p in proxies(lab)]
        lab.podnet("reset")
        assert not [pid for pid in pids if process_start_ticks(pid)], "reset stops proxies"
    assert leftovers([lab.id]) == []


def ns(lab: Lab, pod: str) -> str:
    return lab.settings.netns_prefix + pod


def ip(lab: Lab, pod: str) -> str:
    data = json.loads(lab.podnet("inspect", pod).stdout)[0]
    return str(data["interfaces"][0]["addresses"][0]).split("/")[0]


def ready(lab: Lab) -> int:
    """Pods of service web with every address ready (dual stack: two each)."""
    svc = json.loads(lab.podnet("service", "inspect", "web").stdout)[0]
    pods = {e["pod"] for e in svc["endpoints"]}
    return sum(all(e["ready"] for e in svc["endpoints"] if e["pod"] == p) for p in pods)


def proxies(lab: Lab) -> list[dict[str, Any]]:
    return json.loads(lab.podnet("proxy", "ls", "--json").stdout)  # type: ignore[no-any-return]


def proxy(lab: Lab, name: str) -> dict[str, Any]:
    return json.loads(lab.podnet("proxy", "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def hits(
    lab: Lab, where: str, addr: str, port: int, n: int, *, host: str = HOST, path: str = "/"
) -> collections.Counter[str]:
    """``n`` GETs on one keep-alive connection: who answered (or the status)."""

    def run() -> collections.Counter[str]:
        seen: collections.Counter[str] = collections.Counter()
        conn = http.client.HTTPConnection(addr, port, timeout=10)
        try:
            for _ in range(n):
                conn.request("GET", path, headers={"Host": host})
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                first = body.splitlines()[0] if body else ""
                ok = resp.status == 200 and first.startswith("Hostname: ")
                seen[first.removeprefix("Hostname: ") if ok else f"status {resp.status}"] += 1
        finally:
            conn.close()
        return seen

    return lab.in_ns(where, run)


def serving(lab: Lab, where: str, addr: str, port: int, **kw: Any) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return all(k.startswith("web-") for k in hits(lab, where, addr, port, 3, **kw))
        except (OSError, http.client.HTTPException):
            return False

    return check


def test_edge_proxy_published_on_a_host_port(lab: Lab) -> None:
    wait_for("the edge proxy", serving(lab, lab.external, lab.host_ip, EDGE_PORT))
    assert set(hits(lab, lab.host, "127.0.0.1", EDGE_PORT, 30)) <= {"web-a", "web-b", "web-c"}
    assert hits(lab, lab.external, lab.host_ip, EDGE_PORT, 2, host="other.example") == {
        "status 404": 2
    }  # no route matches
    edge = proxy(lab, "edge")
    assert edge["status"]["state"] == "running" and edge["routes"] == ["shop"]
    assert "--agent" in edge["argv"] and f"0.0.0.0:{EDGE_PORT}" in edge["argv"]


def test_host_port_conflicts_name_the_holder(lab: Lab) -> None:
    failed = lab.podnet("proxy", "create", "again", "--port", str(EDGE_PORT), check=False)
    assert failed.returncode == 1 and "proxy 'edge'" in failed.stderr
    lab.podnet("run", "--name", "pub", "--net", "front", "-p", "8099:8080")
    failed = lab.podnet("proxy", "create", "again", "--port", "8099", check=False)
    assert failed.returncode == 1 and "pod 'pub'" in failed.stderr
    lab.podnet("rm", "-f", "pub")
    assert "again" not in {p["name"] for p in proxies(lab)}


def test_canary_split_then_weight_shift(lab: Lab) -> None:
    ext = lab.external
    seen = hits(lab, ext, lab.host_ip, EDGE_PORT, 1000)
    v1, v2 = seen["web-a"] + seen["web-b"], seen["web-c"]
    assert v1 + v2 == 1000, seen
    assert 50 <= v2 <= 150, seen  # 10% = 100; binomial sd ~9.5, so ~5 sd each way
    out = lab.podnet("route", "set", "shop", "--weight", "web-v1=50", "--weight", "web-v2=50")
    assert "web-v1@50" in out.stdout and "web-v2@50" in out.stdout
    seen = hits(lab, ext, lab.host_ip, EDGE_PORT, 1000)
    assert 400 <= seen["web-c"] <= 600 and sum(seen.values()) == 1000, seen
    shown = json.loads(lab.podnet("route", "inspect", "shop").stdout)[0]
    assert [b["weight"] for b in shown["backends"]] == [50, 50]
    v1_eps = [e["address"] for e in shown["resolved"][0]["endpoints"]]
    assert sorted(v1_eps) == sorted([ip(lab, "web-a"), ip(lab, "web-b")])
    assert "web-v1@50 (2/2)" in lab.podnet("route", "ls").stdout


def test_endpoints_follow_pods(lab: Lab) -> None:
    lab.podnet(
        "run", "--name", "web-d", "--net", "front", "-l", "app=web", "-l", "version=v2",
        "--", *WHOAMI,
    )  # fmt: skip
    try:
        wait_for(
            "web-d to get traffic",
            lambda: "web-d" in hits(lab, lab.host, "127.0.0.1", EDGE_PORT, 20),
            30,
        )
    finally:
        lab.podnet("rm", "-f", "web-d")

    def gone() -> bool:
        seen = hits(lab, lab.host, "127.0.0.1", EDGE_PORT, 40)
        return "web-d" not in seen and set(seen) <= {"web-a", "web-b", "web-c"}

    wait_for("web-d to leave without errors", gone)


def test_a_crashed_proxy_restarts_and_a_new_agent_adopts_it(lab: Lab) -> None:
    before = proxy(lab, "edge")["status"]
    os.killpg(before["pid"], signal.SIGKILL)
    wait_for(
        "a restart",
        lambda: (
            proxy(lab, "edge")["status"]["pid"] not in (0, before["pid"])
            and proxy(lab, "edge")["status"]["state"] == "running"
        ),
    )
    wait_for("the restarted proxy", serving(lab, lab.external, lab.host_ip, EDGE_PORT))
    after = proxy(lab, "edge")["status"]
    assert after["restarts"] == before["restarts"] + 1
    lab.stop_agent()
    assert serving(lab, lab.external, lab.host_ip, EDGE_PORT)()  # serves its last snapshot
    adopted = proxy(lab, "edge")["status"]  # the CLI starts a new agent
    assert adopted["pid"] == after["pid"] and adopted["state"] == "running"
    lab.podnet("route", "set", "shop", "--weight", "web-v1=0")  # the new agent feeds it
    wait_for(
        "the new agent's snapshot",
        lambda: set(hits(lab, lab.host, "127.0.0.1", EDGE_PORT, 10)) == {"web-c"},
    )
    lab.podnet("route", "set", "shop", "--weight", "web-v1=90", "--weight", "web-v2=10")


def sidecar_table(lab: Lab, pod: str) -> bool:
    listed = lab.run(
        ["nft", "list", "table", "inet", SIDECAR_TABLE], where=ns(lab, pod), check=False
    )
    return listed.returncode == 0


def test_sidecar_takes_the_pods_vip_traffic(lab: Lab) -> None:
    vips = json.loads(lab.podnet("service", "inspect", "web").stdout)[0]["vips"]
    vip, vip6 = (next(v for v in vips if (":" in v) == six) for six in (False, True))
    lab.podnet("proxy", "create", "side", "--sidecar", "--pod", "client")
    side = proxy(lab, "side")
    assert side["netns"] == ns(lab, "client")
    wait_for("the sidecar's table (once it has its snapshot)", lambda: sidecar_table(lab, "client"))
    probe = f"/sidecar-probe-{secrets.token_hex(4)}"
    log = Path(side["log_path"])

    def logged() -> bool:
        seen = hits(lab, ns(lab, "client"), vip, 80, 3, host="web", path=probe)
        assert set(seen) <= {"web-a", "web-b", "web-c"}, seen
        return log.exists() and probe in log.read_text(errors="replace")

    wait_for("the sidecar's access log to show the probe", logged, 30)
    probe6 = f"/sidecar-probe6-{secrets.token_hex(4)}"  # the IPv6 VIP: redirected to [::1]
    seen = hits(lab, ns(lab, "client"), vip6, 80, 3, host="web", path=probe6)
    assert set(seen) <= {"web-a", "web-b", "web-c"}, seen
    wait_for("the IPv6 probe in the access log", lambda: probe6 in log.read_text(errors="replace"))
    pid = proxy(lab, "side")["status"]["pid"]
    assert lab.podnet("proxy", "rm", "side").stdout.split() == ["side"]
    assert process_start_ticks(pid) is None
    assert not sidecar_table(lab, "client")
    assert set(hits(lab, ns(lab, "client"), vip, 80, 5, host="web")) <= {"web-a", "web-b", "web-c"}
    lab.podnet("proxy", "rm", "side")  # idempotent


def test_topology_file_with_routes_and_proxies(lab: Lab, tmp_path: Path) -> None:
    topo = tmp_path / "l7.yaml"
    text = """
name: l7
proxies:
  edge2: {host_port: 8090}
routes:
  api:
    match: {hosts: [api.example]}
    backends:
      - web:version=v2@1
    proxies: [edge2]
"""
    topo.write_text(text)
    dry = lab.podnet("up", "-f", str(topo), "--dry-run").stdout
    assert "+ proxy edge2" in dry and "+ route api" in dry
    assert "edge2" not in {p["name"] for p in proxies(lab)}
    lab.podnet("up", "-f", str(topo))
    wait_for("edge2", serving(lab, lab.external, lab.host_ip, 8090, host="api.example"))
    assert set(hits(lab, lab.external, lab.host_ip, 8090, 10, host="api.example")) == {"web-c"}
    topo.write_text(text.replace("v2@1", "v2@1\n      - web:version=v1@1"))
    assert "~ route api" in lab.podnet("up", "-f", str(topo), "--dry-run").stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: l7b\nproxies:\n  edge3: {{host_port: {EDGE_PORT}}}\n")
    with pytest.raises(LabCommandError, match="proxy 'edge'"):
        lab.podnet("up", "-f", str(bad))
    pid = proxy(lab, "edge2")["status"]["pid"]
    lab.podnet("down", "-f", str(topo))
    assert "edge2" not in {p["name"] for p in proxies(lab)}
    assert "api" not in lab.podnet("route", "ls", "-q").stdout.split()
    assert process_start_ticks(pid) is None


def test_one_topology_file_declares_pods_a_service_a_route_and_a_proxy(
    lab: Lab, tmp_path: Path
) -> None:
    topo = tmp_path / "whole.yaml"
    text = """
name: whole
networks:
  wholenet: {subnet: 10.89.5.0/24}
pods:
  solo:
    networks: [wholenet]
    labels: {app: solo}
    command: podnet whoami --port 8080
services:
  solo:
    ports: ["80:8080"]
    selector: {app: solo}
    lb: random
    health: {kind: tcp, interval: 0.5, timeout: 0.4, healthy_threshold: 1}
routes:
  solo:
    match: {hosts: [solo.example]}
    backends: [solo]
proxies:
  edge4: {host_port: 8094}
"""
    topo.write_text(text)
    dry = lab.podnet("up", "-f", str(topo), "--dry-run").stdout
    assert "+ service solo" in dry and "+ route solo" in dry and "+ proxy edge4" in dry
    lab.podnet("up", "-f", str(topo))
    vip = json.loads(lab.podnet("service", "inspect", "solo").stdout)[0]["vips"][0]

    def serving_solo() -> bool:
        try:
            return set(hits(lab, lab.external, lab.host_ip, 8094, 1, host="solo.example")) == {
                "solo"
            }
        except (OSError, http.client.HTTPException):
            return False

    wait_for("edge4 serving solo", serving_solo, 30)
    assert set(hits(lab, lab.external, lab.host_ip, 8094, 5, host="solo.example")) == {"solo"}
    # A changed service keeps its VIP; an unchanged file changes nothing.
    topo.write_text(text.replace("lb: random", "lb: maglev"))
    assert "~ service solo" in lab.podnet("up", "-f", str(topo)).stdout
    again = json.loads(lab.podnet("service", "inspect", "solo").stdout)[0]
    assert again["vips"][0] == vip and again["lb"] == "maglev"
    assert "service" not in lab.podnet("up", "-f", str(topo)).stdout
    # A file may not take over a service someone else made.
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nservices:\n  web: {ports: [80], selector: {app: web}}\n")
    with pytest.raises(LabCommandError, match="exist already"):
        lab.podnet("up", "-f", str(other))
    lab.podnet("down", "-f", str(topo))
    assert "solo" not in lab.podnet("service", "ls", "-q").stdout.split()
    assert "solo" not in lab.podnet("route", "ls", "-q").stdout.split()
    assert "edge4" not in {p["name"] for p in proxies(lab)}
