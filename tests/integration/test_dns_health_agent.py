"""The agent's DNS server and health checks end to end, inside a Lab.

Pods run ``podnet whoami``; a service is written straight into the agent's store
(the registry API is not what is tested here), and the agent notices the store's
revision change. Queries go from inside pods to their gateway, port 53, over UDP
and TCP, IPv4 and IPv6. Endpoints are made to fail by killing their process (the
pod stays "running", so the endpoint stays and its checks fail) and brought back
with ``podnet start``. Traffic goes only to lab addresses; every wait is bounded.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

import podnet.controller.reconciler
from podnet.controller.state import Keys
from podnet.health import expected_detection_time, expected_recovery_time
from podnet.lab import Lab, leftovers
from podnet.model.service import HealthCheck, ServicePort, ServiceSpec
from podnet.settings import Settings
from podnet.store import open_store

pytestmark = pytest.mark.root

WHOAMI = [sys.executable, "-m", "podnet", "whoami", "--port", "80"]
GATEWAY, GATEWAY6, BACK_GATEWAY = "10.89.0.1", "fd00:89::1", "10.89.1.1"
VIP = "10.96.0.10"
CHECK = HealthCheck(
    kind="http",
    path="/health",
    interval=0.5,
    timeout=0.4,
    healthy_threshold=2,
    unhealthy_threshold=2,
)
#: Beyond the model's bound: the store write, the agent noticing it, our polling.
SLACK = 3.0
#: Starting a pod's Python process before its first check can pass.
STARTUP = 10.0
NETNS_ETC = Settings().netns_etc


def spec(name: str, **kw: Any) -> ServiceSpec:
    return ServiceSpec(
        name, (ServicePort(80, 80, "tcp", "http"),), selector={"app": "web"}, **kw
    ).validate()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    had_netns_etc = NETNS_ETC.exists()
    with Lab() as lab:
        lab.podnet(
            "network", "create", "front", "--subnet", "10.89.0.0/24", "--ipv6", "fd00:89::/64"
        )
        for name in ("web-1", "web-2"):
            lab.podnet("run", "--name", name, "--net", "front", "-l", "app=web", "--", *WHOAMI)
        lab.podnet("run", "--name", "client", "--net", "front")
        with open_store(lab.settings.store_url) as store:
            store.put(Keys.service("web"), spec("web", headless=True, health=CHECK).to_dict())
            store.put(
                Keys.service("vip"),
                spec("vip", vips=(ipaddress.ip_address(VIP),), health=CHECK).to_dict(),
            )
        yield lab
        pod_ns = lab.pod_namespaces()
    assert pod_ns, "the lab had pods"
    assert leftovers([lab.id]) == []
    assert NETNS_ETC.exists() == had_netns_etc  # the agent made it, and removed it


def pod(lab: Lab, name: str) -> dict[str, Any]:
    return json.loads(lab.podnet("inspect", name).stdout)[0]  # type: ignore[no-any-return]


def ip_of(lab: Lab, name: str, version: int = 4) -> str:
    for iface in pod(lab, name)["interfaces"]:
        for addr in iface["addresses"]:
            ip = addr.split("/")[0]
            if (":" in ip) == (version == 6):
                return str(ip)
    raise AssertionError(f"{name} has no IPv{version} address")


def query(
    lab: Lab, where: str, name: str, rdtype: str = "A", *, server: str = GATEWAY, tcp: bool = False
) -> tuple[int, set[str]]:
    """Ask the agent's DNS from inside pod ``where``: (rcode, answer addresses)."""
    netns = pod(lab, where)["netns"]
    message = dns.message.make_query(name, rdtype)

    def ask() -> dns.message.Message:
        if tcp:
            return dns.query.tcp(message, server, port=53, timeout=2.0)
        return dns.query.udp(message, server, port=53, timeout=2.0)

    reply = lab.in_ns(netns, ask)
    return reply.rcode(), {r.to_text() for rrset in reply.answer for r in rrset}


def wait_until(what: str, predicate: Callable[[], bool], timeout: float) -> float:
    """Poll ``predicate`` until true; seconds it took. Fails after ``timeout``."""
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except (OSError, dns.exception.DNSException):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.1f}s: {what}")
        time.sleep(0.05)


def health(lab: Lab, service: str, address: str) -> dict[str, Any] | None:
    with open_store(lab.settings.store_url) as store:
        entry = store.get(Keys.health(service, ipaddress.ip_address(address)))
    return entry.value if entry else None


def state(lab: Lab, service: str, address: str) -> str | None:
    value = health(lab, service, address)
    return None if value is None else str(value["state"])


def test_pods_resolve_from_inside_pods(lab: Lab) -> None:
    web1 = ip_of(lab, "web-1")
    wait_until("DNS answers", lambda: query(lab, "client", "web-1.podnet.")[1] == {web1}, 20)
    assert query(lab, "client", "web-1.podnet.", tcp=True) == (dns.rcode.NOERROR, {web1})
    assert query(lab, "client", "web-1.podnet.", "AAAA") == (
        dns.rcode.NOERROR,
        {ip_of(lab, "web-1", 6)},
    )
    assert query(lab, "client", "web-2.podnet.", server=GATEWAY6)[1] == {ip_of(lab, "web-2")}
    assert query(lab, "client", "nope.podnet.")[0] == dns.rcode.NXDOMAIN
    assert query(lab, "client", "nope.web-1.podnet.")[0] == dns.rcode.NXDOMAIN


def test_services_answer_healthy_endpoints_and_their_vip(lab: Lab) -> None:
    both = {ip_of(lab, "web-1"), ip_of(lab, "web-2")}
    wait_until("both endpoints healthy", lambda: query(lab, "client", "web.podnet.")[1] == both, 30)
    for address in both:
        value = health(lab, "web", address)
        assert value is not None and value["state"] == "healthy" and value["changed_at"] > 0
    assert query(lab, "client", "vip.podnet.") == (dns.rcode.NOERROR, {VIP})


def test_a_dead_endpoint_leaves_dns_within_the_detection_time_and_comes_back(lab: Lab) -> None:
    web1, web2 = ip_of(lab, "web-1"), ip_of(lab, "web-2")
    wait_until("web-2 healthy", lambda: state(lab, "web", web2) == "healthy", 30)
    pid = pod(lab, "web-2")["status"]["pid"]
    os.killpg(pid, signal.SIGKILL)  # its shim and whoami: the pod stays "running"
    _, slowest = expected_detection_time(CHECK)
    took = wait_until(
        "web-2 unhealthy", lambda: state(lab, "web", web2) == "unhealthy", slowest + SLACK
    )
    value = health(lab, "web", web2)
    assert value is not None and value["reason"], value
    wait_until("web-2 out of DNS", lambda: query(lab, "client", "web.podnet.")[1] == {web1}, 5)
    assert state(lab, "web", web1) == "healthy"
    assert took <= slowest + SLACK

    lab.podnet("start", "web-2")
    _, recovery = expected_recovery_time(CHECK)
    wait_until(
        "web-2 healthy again",
        lambda: state(lab, "web", web2) == "healthy",
        STARTUP + recovery + SLACK,
    )
    wait_until(
        "web-2 back in DNS",
        lambda: query(lab, "client", "web.podnet.")[1] == {web1, web2},
        5,
    )


def test_a_stopped_pod_is_no_endpoint_and_loses_its_health_key(lab: Lab) -> None:
    web1, web2 = ip_of(lab, "web-1"), ip_of(lab, "web-2")
    wait_until("web-1 healthy", lambda: state(lab, "web", web1) == "healthy", 30)
    lab.podnet("stop", "web-1")
    wait_until("web-1 out of DNS", lambda: query(lab, "client", "web.podnet.")[1] == {web2}, 10)
    wait_until("web-1's health key removed", lambda: health(lab, "web", web1) is None, 10)
    assert query(lab, "client", "web-1.podnet.")[1] == {web1}  # the pod keeps its name
    lab.podnet("start", "web-1")
    wait_until(
        "web-1 back in DNS",
        lambda: query(lab, "client", "web.podnet.")[1] == {web1, web2},
        STARTUP + SLACK,
    )


def test_dns_follows_networks_added_later(lab: Lab) -> None:
    lab.podnet("network", "create", "back", "--subnet", "10.89.1.0/24")
    lab.podnet("run", "--name", "other", "--net", "back")
    web1 = ip_of(lab, "web-1")
    wait_until(
        "DNS on the new gateway",
        lambda: query(lab, "other", "web-1.podnet.", server=BACK_GATEWAY)[1] == {web1},
        20,
    )
    # the first network's server still answers
    assert query(lab, "client", "web-1.podnet.")[1] == {web1}


def resolv_conf(lab: Lab, name: str) -> str:
    return lab.podnet("exec", name, "--", "cat", "/etc/resolv.conf").stdout


def test_exec_sees_the_pods_resolv_conf(lab: Lab) -> None:
    wait_until("resolv.conf", lambda: f"nameserver {GATEWAY}\n" in resolv_conf(lab, "client"), 10)
    text = resolv_conf(lab, "client")
    assert text == f"nameserver {GATEWAY}\nnameserver {GATEWAY6}\nsearch podnet\noptions ndots:1\n"
    # the search domain makes short names work with the system's resolver
    out = lab.podnet("exec", "client", "--", "getent", "hosts", "web-1").stdout
    assert ip_of(lab, "web-1") in out or ip_of(lab, "web-1", 6) in out


def test_removed_pods_lose_their_resolv_conf(lab: Lab) -> None:
    lab.podnet("run", "--name", "brief", "--net", "front")
    directory = NETNS_ETC / pod(lab, "brief")["netns"]
    wait_until("resolv.conf written", (directory / "resolv.conf").exists, 10)
    lab.podnet("rm", "-f", "brief")
    wait_until("resolv.conf removed", lambda: not directory.exists(), 10)


def _reconciler_writes_resolv_conf() -> bool:
    return "write_resolv_conf" in inspect.getsource(podnet.controller.reconciler)


@pytest.mark.skipif(
    not _reconciler_writes_resolv_conf(),
    reason="the reconciler does not call podnet.dns.resolv.write_resolv_conf before starting "
    "pod processes yet; the agent's runtime writes it moments later, which `podnet exec` "
    "sees (tested above) but a pod's first process may not",
)
def test_a_pods_own_process_starts_with_the_resolv_conf(lab: Lab) -> None:
    lab.podnet("run", "--name", "reader", "--net", "front", "--", "cat", "/etc/resolv.conf")
    wait_until(
        "the pod's process printed its resolv.conf",
        lambda: f"nameserver {GATEWAY}" in lab.podnet("logs", "reader").stdout,
        10,
    )


def test_resolv_conf_files_live_under_the_netns_names(lab: Lab) -> None:
    netns = pod(lab, "client")["netns"]
    assert Path(NETNS_ETC / netns / "resolv.conf").read_text().startswith("nameserver ")
    assert sorted(os.listdir(NETNS_ETC / netns)) == ["resolv.conf"]
