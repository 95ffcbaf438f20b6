"""The topology file end to end: up, dry run, incremental change, down; errors
with lines; rollback of a failed up; SIGKILL of the agent mid-up and at rest,
then convergence; reset removing exactly what podnet owns."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.kernel.netlink import Netlink
from podnet.lab import Lab

pytestmark = pytest.mark.root

WHOAMI = f"{sys.executable} -m podnet whoami --port 80"


def topology(replicas: int, *, port: str = "8080:80", command: str = WHOAMI) -> str:
    return f"""
name: shop
networks:
  front: {{subnet: 10.89.0.0/24}}
  back: {{internal: true}}
pods:
  web:
    replicas: {replicas}
    networks: [front, back]
    command: {command}
  edge:
    networks: [front]
    ports: ["{port}"]
    command: {command}
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def write(tmp_path: Path, text: str, name: str = "shop.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def pods(lab: Lab) -> dict[str, dict[str, object]]:
    return {p["name"]: p for p in json.loads(lab.podnet("ps", "--json").stdout)}


def converged(lab: Lab, expected: int) -> bool:
    """Every pod's netns has eth0 up with its address, and its process runs."""
    listed = pods(lab)
    if len(listed) != expected:
        return False
    for pod in listed.values():
        ns = str(pod["netns"])
        if ns not in lab.pod_namespaces():
            return False
        iface = pod["interfaces"][0]  # type: ignore[index]
        want = iface["addresses"][0]
        with Netlink(ns) as nl:
            link = nl.link("eth0")
            have = {str(a.interface) for a in nl.addresses("eth0")} if link else set()
        if link is None or not link.up or want not in have:
            return False
        if pod["status"]["state"] != "running":  # type: ignore[index]
            return False
    return True


def wait_converged(lab: Lab, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not converged(lab, expected):
        assert time.monotonic() < deadline, f"not converged: {lab.podnet('ps').stdout}"
        time.sleep(0.2)


def test_up_dry_run_change_and_down(lab: Lab, tmp_path: Path) -> None:
    path = write(tmp_path, topology(2))
    plan = lab.podnet("up", "-f", path, "--dry-run").stdout
    assert "+ pod web-1" in plan and "ip link add pn-front type bridge" in plan
    assert "nft -f -" in plan and "dnat ip to" in plan
    assert lab.podnet("ps", "-q").stdout.split() == []  # dry run made nothing
    assert not lab.pod_namespaces()

    out = lab.podnet("up", "-f", path).stdout
    assert "+ network front" in out and "+ pod edge" in out
    wait_converged(lab, 3)
    status, body = lab.wait_http(lab.external, lab.host_ip, 8080)
    assert status == 200 and "Hostname: edge" in body
    assert "(no changes)" in lab.podnet("up", "-f", path).stdout

    before = {n: p["interfaces"] for n, p in pods(lab).items()}
    out = lab.podnet("up", "-f", write(tmp_path, topology(3))).stdout
    assert out.split() == ["+", "pod", "web-3"]
    after = pods(lab)
    assert all(after[n]["interfaces"] == before[n] for n in before)  # untouched
    wait_converged(lab, 4)

    out = lab.podnet("up", "-f", write(tmp_path, topology(1))).stdout
    assert "- pod web-2" in out and "- pod web-3" in out
    wait_converged(lab, 2)

    lab.podnet("down", "-f", path)
    assert lab.podnet("ps", "-q").stdout.split() == []
    assert not lab.pod_namespaces()
    links = lab.run(["ip", "-br", "link"]).stdout
    assert "pn-" not in links and "pnv" not in links


def test_file_errors_name_line_and_fix(lab: Lab, tmp_path: Path) -> None:
    bad = """name: shop
networks:
  front: {subnet: 10.89.0.0/24}
  back: {subnet: 10.89.0.128/25}
pods:
  web:
    replicas: 2
    networks: [frnt]
    ports: ["8080:80"]
"""
    result = lab.podnet("up", "-f", write(tmp_path, bad, "bad.yaml"), check=False)
    assert result.returncode == 1
    err = result.stderr
    assert "bad.yaml:4:" in err and "overlap" in err
    assert (
        "bad.yaml:8:" in err and "unknown network 'frnt'" in err and "did you mean 'front'" in err
    )
    assert "8080/tcp is published by both web-1 and web-2" in err
    assert not lab.pod_namespaces()


def test_failed_up_rolls_back_what_it_made(lab: Lab, tmp_path: Path) -> None:
    lab.podnet("up", "-f", write(tmp_path, topology(1)))
    wait_converged(lab, 2)
    # A foreign link squats the bridge name the next network wants: up fails
    # mid-reconcile and must leave the running topology as it was.
    lab.run(["ip", "link", "add", "pn-extra", "type", "bridge"])
    grown = topology(1) + "  extra:\n    networks: [extra]\n"
    grown = grown.replace("networks:\n", "networks:\n  extra: {}\n", 1)
    result = lab.podnet("up", "-f", write(tmp_path, grown, "grown.yaml"), check=False)
    assert result.returncode == 1
    assert "pn-extra" in result.stderr and "not network 'extra'" in result.stderr
    assert set(pods(lab)) == {"web-1", "edge"}
    names = json.loads(lab.podnet("network", "ls", "--json").stdout)
    assert {n["name"] for n in names} == {"front", "back"}
    assert len(lab.pod_namespaces()) == 2
    lab.run(["ip", "link", "del", "pn-extra"])


def test_sigkill_mid_up_then_converge(lab: Lab, tmp_path: Path) -> None:
    lab.podnet("network", "ls")  # start the agent
    path = write(tmp_path, topology(30))
    up = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{lab.host}",
            sys.executable,
            "-m",
            "podnet",
            "up",
            "-f",
            path,
        ],
        env=lab.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(lab.pod_namespaces()) < 5:
        assert time.monotonic() < deadline and up.poll() is None, "up finished too soon"
        time.sleep(0.01)
    lab.stop_agent(signal.SIGKILL)
    up.wait(timeout=60)
    made = len(lab.pod_namespaces())
    assert made < 31, "the agent was killed after up had finished; nothing was tested"
    wait_converged(lab, 31, timeout=120)  # `podnet ps` started a new agent
    status, body = lab.wait_http(lab.external, lab.host_ip, 8080)
    assert status == 200 and "Hostname: edge" in body


def test_agent_restart_heals_kernel_and_adopts_processes(lab: Lab, tmp_path: Path) -> None:
    lab.podnet("up", "-f", write(tmp_path, topology(2)))
    wait_converged(lab, 3)
    before = {n: p["status"]["pid"] for n, p in pods(lab).items()}  # type: ignore[index]
    lab.stop_agent(signal.SIGKILL)
    web1 = next(ns for ns in lab.pod_namespaces() if ns.endswith("web-1"))
    with Netlink(web1) as nl:
        nl.delete_link("eth0")  # the host end goes with it
    lab.run(["nft", "delete", "table", "inet", "podnet"])
    wait_converged(lab, 3)
    after = {n: p["status"]["pid"] for n, p in pods(lab).items()}  # type: ignore[index]
    assert after == before, "running pod processes must be adopted, not restarted"
    status, body = lab.wait_http(lab.external, lab.host_ip, 8080)
    assert status == 200 and "Hostname: edge" in body
    ip = pods(lab)["web-1"]["interfaces"][0]["addresses"][0].split("/")[0]  # type: ignore[index]
    status, body = lab.wait_http(lab.host, ip, 80)
    assert status == 200 and "Hostname: web-1" in body


def test_down_all_removes_every_topology_and_cli_object(lab: Lab, tmp_path: Path) -> None:
    lab.podnet("up", "-f", write(tmp_path, topology(1)))
    lab.podnet("network", "create", "solo")
    lab.podnet("run", "--name", "loner", "--net", "solo")
    lab.podnet("down", "--all")
    assert lab.podnet("ps", "-q").stdout.split() == []
    assert lab.podnet("network", "ls", "-q").stdout.split() == []
    assert not lab.pod_namespaces()
    time.sleep(1.0)  # several turns of the agent's 0.2 s loop: nothing re-creates it
    assert "podnet" not in lab.run(["nft", "list", "tables"]).stdout


def test_reset_removes_exactly_what_podnet_owns(lab: Lab, tmp_path: Path) -> None:
    lab.run(["nft", "add", "table", "inet", "someone_else"])
    lab.run(["ip", "link", "add", "br-mine", "type", "bridge"])
    lab.run(["ip", "netns", "add", f"{lab.settings.netns_prefix}not-podnets"])
    lab.podnet("up", "-f", write(tmp_path, topology(2)))
    wait_converged(lab, 3)
    lab.podnet("reset")
    assert lab.pod_namespaces() == [f"{lab.settings.netns_prefix}not-podnets"]
    tables = lab.run(["nft", "list", "tables"]).stdout
    assert "someone_else" in tables and "podnet" not in tables
    links = lab.run(["ip", "-br", "link"]).stdout
    assert "br-mine" in links and "pn-" not in links and "pnv" not in links
    lab.run(["ip", "netns", "del", f"{lab.settings.netns_prefix}not-podnets"])
