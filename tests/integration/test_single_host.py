"""Single-host networking end to end: networks, pods, NAT, isolation, published
ports, run/ps/exec/logs, conflicts. Everything runs inside a Lab (throwaway
"host" and "external" namespaces); traffic goes only to lab addresses."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from podnet.lab import Lab

pytestmark = pytest.mark.root

WHOAMI = [sys.executable, "-m", "podnet", "whoami"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        lab.podnet(
            "network", "create", "front", "--subnet", "10.89.0.0/24", "--ipv6", "fd00:89::/64"
        )
        lab.podnet("network", "create", "back", "--subnet", "10.89.1.0/24")
        lab.podnet("network", "create", "priv", "--subnet", "10.89.2.0/24", "--internal")
        for name, net, extra in (
            ("web-1", "front", ["-p", "8080:80", "-p", "8053:53/udp"]),
            ("web-2", "front", []),
            ("other", "back", []),
            ("secret", "priv", []),
        ):
            lab.podnet(
                "run",
                "--name",
                name,
                "--net",
                net,
                *extra,
                "-l",
                "app=web",
                "--",
                *WHOAMI,
                "--port",
                "80",
            )
        yield lab


def pod(lab: Lab, name: str) -> dict[str, object]:
    return json.loads(lab.podnet("inspect", name).stdout)[0]  # type: ignore[no-any-return]


def ip_of(lab: Lab, name: str, version: int = 4) -> str:
    for iface in pod(lab, name)["interfaces"]:  # type: ignore[attr-defined]
        for addr in iface["addresses"]:
            ip = addr.split("/")[0]
            if (":" in ip) == (version == 6):
                return str(ip)
    raise AssertionError(f"{name} has no IPv{version} address")


def ns_of(lab: Lab, name: str) -> str:
    return str(pod(lab, name)["netns"])


def test_ps_shows_pods_with_addresses_and_ports(lab: Lab) -> None:
    out = lab.podnet("ps").stdout
    assert out.splitlines()[0].split()[:5] == ["POD", "NETWORKS", "IPS", "PORTS", "STATE"]
    assert "8080:80/tcp" in out and "web-2" in out
    data = json.loads(lab.podnet("ps", "--json").stdout)
    assert {p["name"] for p in data} == {"web-1", "web-2", "other", "secret"}
    assert all(p["status"]["state"] == "running" for p in data)


def test_pod_netns_visible_with_eth0_and_default_route(lab: Lab) -> None:
    assert ns_of(lab, "web-1") in lab.pod_namespaces()
    out = lab.podnet("exec", "web-1", "--", "ip", "-o", "addr").stdout
    assert "eth0" in out and ip_of(lab, "web-1") in out and "lo" in out
    routes = lab.podnet("exec", "web-1", "--", "ip", "route").stdout
    assert "default via 10.89.0.1 dev eth0" in routes


def test_pod_to_pod_on_one_network(lab: Lab) -> None:
    status, body = lab.wait_http(ns_of(lab, "web-1"), ip_of(lab, "web-2"), 80)
    assert status == 200 and "Hostname: web-2" in body


def test_dual_stack_pod_to_pod(lab: Lab) -> None:
    status, body = lab.wait_http(ns_of(lab, "web-1"), ip_of(lab, "web-2", 6), 80)
    assert status == 200 and "Hostname: web-2" in body


def test_isolation_between_networks(lab: Lab) -> None:
    lab.wait_http(ns_of(lab, "other"), ip_of(lab, "other"), 80)  # server is up
    assert not lab.can_connect(ns_of(lab, "other"), ip_of(lab, "web-2"), 80)
    assert not lab.can_connect(ns_of(lab, "web-2"), ip_of(lab, "other"), 80)


def test_masquerade_external_sees_host_address(lab: Lab) -> None:
    lab.spawn([*WHOAMI, "--port", "9000", "--name", "outside"], where=lab.external)
    status, body = lab.wait_http(ns_of(lab, "web-2"), lab.external_ip, 9000)
    assert status == 200
    assert f"RemoteAddr: {lab.host_ip}:" in body


def test_internal_network_has_no_way_out(lab: Lab) -> None:
    lab.spawn([*WHOAMI, "--port", "9001", "--name", "outside"], where=lab.external)
    lab.wait_http(lab.external, lab.external_ip, 9001)
    assert not lab.can_connect(ns_of(lab, "secret"), lab.external_ip, 9001)
    routes = lab.podnet("exec", "secret", "--", "ip", "route").stdout
    assert "default" not in routes


def test_published_port_from_outside_keeps_client_address(lab: Lab) -> None:
    status, body = lab.wait_http(lab.external, lab.host_ip, 8080)
    assert status == 200 and "Hostname: web-1" in body
    assert f"RemoteAddr: {lab.external_ip}:" in body


def test_published_port_over_ipv6_from_outside(lab: Lab) -> None:
    status, body = lab.wait_http(lab.external, lab.host_ip6, 8080)
    assert status == 200 and "Hostname: web-1" in body


def test_published_port_from_host_localhost(lab: Lab) -> None:
    status, body = lab.wait_http(lab.host, "127.0.0.1", 8080)
    assert status == 200 and "Hostname: web-1" in body


def test_published_port_hairpin_from_sibling_and_self(lab: Lab) -> None:
    for client in ("web-2", "web-1"):
        status, body = lab.wait_http(ns_of(lab, client), lab.host_ip, 8080)
        assert status == 200 and "Hostname: web-1" in body


def test_published_port_reachable_from_other_network(lab: Lab) -> None:
    status, body = lab.wait_http(ns_of(lab, "other"), lab.host_ip, 8080)
    assert status == 200 and "Hostname: web-1" in body


def test_port_lists_mappings(lab: Lab) -> None:
    out = lab.podnet("port", "web-1").stdout.splitlines()
    assert "80/tcp -> 0.0.0.0:8080" in out and "53/udp -> 0.0.0.0:8053" in out


def test_second_claim_of_host_port_names_holder(lab: Lab) -> None:
    result = lab.podnet("run", "--name", "dup", "--net", "front", "-p", "8080:81", check=False)
    assert result.returncode == 1
    assert "host port 8080/tcp is already published by pod 'web-1'" in result.stderr
    assert "dup" not in lab.podnet("ps", "-q").stdout.split()


def test_host_port_bound_by_process_is_refused(lab: Lab) -> None:
    lab.spawn([*WHOAMI, "--port", "8181", "--name", "squatter"])
    lab.wait_http(lab.host, "127.0.0.1", 8181)
    result = lab.podnet("run", "--name", "dup2", "--net", "front", "-p", "8181:80", check=False)
    assert result.returncode == 1
    assert "host port 8181/tcp is in use by process" in result.stderr


def test_overlapping_subnet_is_refused_with_what_it_overlaps(lab: Lab) -> None:
    result = lab.podnet("network", "create", "clash", "--subnet", "10.89.0.128/25", check=False)
    assert result.returncode == 1
    assert "overlaps network 'front'" in result.stderr
    result = lab.podnet("network", "create", "clash2", "--subnet", "198.18.0.0/16", check=False)
    assert "overlaps the host's route 198.18.0.0/24" in result.stderr


def test_auto_subnet_avoids_used_ranges(lab: Lab) -> None:
    lab.podnet("network", "create", "auto1")
    nets = {n["name"]: n for n in json.loads(lab.podnet("network", "ls", "--json").stdout)}
    assert nets["auto1"]["subnets"] == ["10.89.3.0/24"]
    lab.podnet("network", "rm", "auto1")


def test_network_rm_in_use_names_pods(lab: Lab) -> None:
    result = lab.podnet("network", "rm", "front", check=False)
    assert result.returncode == 1
    assert "in use by pod(s) web-1, web-2" in result.stderr


def test_logs_show_the_command_output(lab: Lab) -> None:
    assert "whoami listening" in lab.podnet("logs", "web-2").stdout


def test_stop_start_and_rm(lab: Lab) -> None:
    lab.podnet("run", "--name", "tmp", "--net", "front", "--", *WHOAMI, "--port", "80")
    lab.wait_http(ns_of(lab, "tmp"), ip_of(lab, "tmp"), 80)
    lab.podnet("stop", "tmp")
    assert pod(lab, "tmp")["status"]["state"] == "stopped"  # type: ignore[index]
    assert not lab.can_connect(ns_of(lab, "tmp"), ip_of(lab, "tmp"), 80)
    lab.podnet("start", "tmp")
    lab.wait_http(ns_of(lab, "tmp"), ip_of(lab, "tmp"), 80)
    refused = lab.podnet("rm", "tmp", check=False)
    assert refused.returncode == 1 and "is running" in refused.stderr
    netns = ns_of(lab, "tmp")
    lab.podnet("rm", "-f", "tmp")
    assert netns not in lab.pod_namespaces()
    lab.podnet("rm", "-f", "tmp", check=False)  # idempotent enough: no crash


def test_exit_status_shown_and_restart_on_failure(lab: Lab) -> None:
    lab.podnet("run", "--name", "fails", "--net", "back", "--", "sh", "-c", "exit 3")
    lab.podnet(
        "run",
        "--name",
        "again",
        "--net",
        "back",
        "--restart",
        "on-failure",
        "--",
        "sh",
        "-c",
        "echo started; exit 1",
    )
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        fails, again = pod(lab, "fails"), pod(lab, "again")
        if fails["status"]["state"] == "exited" and again["status"]["restarts"] >= 2:  # type: ignore[index]
            break
        time.sleep(0.2)
    assert fails["status"]["exit_code"] == 3  # type: ignore[index]
    assert "exited (3)" in lab.podnet("ps").stdout
    assert again["status"]["restarts"] >= 2  # type: ignore[index]
    lab.podnet("rm", "-f", "fails", "again")
