"""``podnet-cni`` next to podnet's own pods: network mode (``{"network": ...}``),
one IPAM for pods and containers, the portMappings capability and host-port
conflicts, and a conflist chaining podnet with the reference portmap, tuning,
bandwidth and firewall plugins. Runs on both paths: the fast path (agent up)
and standalone (the lab's agent set things up, then was stopped)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from cni_runtime import Runtime, attachments, host_links, inside, leases

from podnet.controller.state import Repository
from podnet.lab import Lab
from podnet.store import open_store

pytestmark = pytest.mark.root

WHOAMI = [sys.executable, "-m", "podnet", "whoami"]
FRONT = ipaddress.ip_network("10.89.0.0/24")
POD_PORT = 8090  # published by pod "web"
OUTSIDE_PORT = 9000


@pytest.fixture(scope="module", params=["fast", "standalone"])
def rt(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """Network "front" with pod "web" publishing 8090; then, for the
    standalone path, the agent is stopped and every plugin run works alone."""
    with Lab() as lab:
        lab.podnet("network", "create", "front", "--subnet", str(FRONT))
        lab.podnet(
            "run", "--name", "web", "--net", "front", "-p", f"{POD_PORT}:80", "--",
            *WHOAMI, "--port", "80",
        )  # fmt: skip
        lab.spawn([*WHOAMI, "--port", str(OUTSIDE_PORT), "--name", "outside"], where=lab.external)
        lab.wait_http(lab.external, lab.host_ip, POD_PORT)
        if request.param == "standalone":
            lab.stop_agent()
        yield Runtime(lab)
        assert (lab.agent_pid() is not None) == (request.param == "fast")


def pod_addresses(lab: Lab) -> dict[str, str]:
    """Pod name -> its address on front, from podnet's store."""
    store = open_store(lab.settings.store_url)
    try:
        pods = Repository(store).pods()
    finally:
        store.close()
    return {
        name: str(addr.ip)
        for name, pod in pods.items()
        for iface in pod.interfaces
        for addr in iface.addresses
    }


def ip_of(result: dict[str, Any]) -> str:
    return str(result["ips"][0]["address"]).split("/")[0]


def host_end(result: dict[str, Any]) -> str:
    (name,) = [i["name"] for i in result["interfaces"] if i["name"].startswith("pnc")]
    return str(name)


def ports(*host_ports: int) -> dict[str, Any]:
    mappings = [{"hostPort": p, "containerPort": 80, "protocol": "tcp"} for p in host_ports]
    return {"portMappings": mappings}


# -- network mode and shared IPAM ---------------------------------------------------


def test_network_mode_joins_the_podnet_network(rt: Runtime) -> None:
    lab = rt.lab
    pod_ns = lab.pod_namespaces()
    conf = rt.conf("front-cni", network="front")
    ctr = rt.container()
    result = rt.add(conf, ctr)
    assert result["interfaces"][0]["name"] == "pn-front"
    assert ipaddress.ip_address(ip_of(result)) in FRONT
    assert result["ips"][0]["gateway"] == "10.89.0.1"
    seen = inside(ctr)
    assert seen is not None and seen.default_gateways == {"10.89.0.1"}
    assert lab.pod_namespaces() == pod_ns, "a CNI ADD must leave pods' namespaces alone"
    status, body = lab.wait_http(ctr.ns, pod_addresses(lab)["web"], 80, timeout=5)
    assert status == 200 and "Hostname: web" in body
    rt.delete(conf, ctr)
    assert lab.pod_namespaces() == pod_ns
    assert host_end(result) not in host_links(lab)


def test_containers_never_get_a_pods_address(rt: Runtime) -> None:
    conf = rt.conf("front-cni", network="front")
    ctrs = [rt.container() for _ in range(4)]
    results = [rt.add(conf, ctr) for ctr in ctrs]
    given = [ip_of(r) for r in results] + list(pod_addresses(rt.lab).values())
    assert len(given) == len(set(given)) == 5
    assert set(given) == set(leases(rt.lab, "front"))
    for ctr in ctrs:
        rt.delete(conf, ctr)
    assert set(leases(rt.lab, "front")) == set(pod_addresses(rt.lab).values())


def test_pods_and_containers_share_ipam_across_paths() -> None:
    """Agent up, agent down, agent up again: one set of leases throughout."""
    with Lab() as lab:
        rt = Runtime(lab)
        lab.podnet("network", "create", "front", "--subnet", "10.89.0.0/28")
        lab.podnet("run", "--name", "p1", "--net", "front")
        conf = rt.conf("front-cni", network="front")
        ctrs = [rt.container() for _ in range(4)]
        given = [ip_of(rt.add(conf, ctrs[0]))]  # fast path
        lab.stop_agent()
        given += [ip_of(rt.add(conf, c)) for c in ctrs[1:3]]  # standalone
        lab.podnet("run", "--name", "p2", "--net", "front")  # starts the agent again
        given.append(ip_of(rt.add(conf, ctrs[3])))  # fast path
        given += pod_addresses(lab).values()
        assert len(given) == len(set(given)) == 6, given
        assert set(given) == set(leases(lab, "front"))
        assert len(lab.pod_namespaces()) == 2
        for ctr in ctrs:
            rt.delete(conf, ctr)
        assert set(leases(lab, "front")) == set(pod_addresses(lab).values())


# -- published ports -------------------------------------------------------------------


def test_port_mappings_publish_and_conflict(rt: Runtime) -> None:
    lab = rt.lab
    conf = rt.conf("front-cni", network="front")
    holder, rival, late = rt.container(), rt.container(), rt.container()
    result = rt.add({**conf, "runtimeConfig": ports(8081)}, holder)
    lab.spawn([*WHOAMI, "--port", "80", "--name", holder.id], where=holder.ns)
    status, body = lab.wait_http(lab.external, lab.host_ip, 8081)
    assert status == 200 and f"Hostname: {holder.id}" in body
    assert f"RemoteAddr: {lab.external_ip}:" in body  # DNAT keeps the client's address
    status, body = lab.wait_http(lab.host, "127.0.0.1", 8081)  # and from the host itself
    assert status == 200 and f"Hostname: {holder.id}" in body

    err = rt.exec("ADD", {**conf, "runtimeConfig": ports(8081)}, rival).error()
    assert "host port 8081/tcp is already published" in err["msg"]
    assert holder.id in err["msg"], "the message names the container holding the port"
    err = rt.exec("ADD", {**conf, "runtimeConfig": ports(POD_PORT)}, late).error()
    assert f"host port {POD_PORT}/tcp is already published by pod 'web'" in err["msg"]
    for ctr in (rival, late):  # a refused ADD leaves nothing
        assert inside(ctr) is None
    assert {a.container_id for a in attachments(lab, "front")} == {holder.id}

    rt.delete(conf, holder)
    assert host_end(result) not in host_links(lab)
    assert not lab.can_connect(lab.external, lab.host_ip, 8081)
    rt.add({**conf, "runtimeConfig": ports(8081)}, rival)  # free again
    rt.delete(conf, rival)
    assert attachments(lab, "front") == []


def test_pod_cannot_take_a_containers_port(rt: Runtime) -> None:
    if rt.lab.agent_pid() is None:
        pytest.skip("pods are the agent's: the standalone lab has none running")
    conf = rt.conf("front-cni", network="front")
    ctr = rt.container()
    rt.add({**conf, "runtimeConfig": ports(8082)}, ctr)
    refused = rt.lab.podnet("run", "--name", "dup", "--net", "front", "-p", "8082:80", check=False)
    assert refused.returncode == 1
    assert f"host port 8082/tcp is already published by container {ctr.id}" in refused.stderr
    rt.delete(conf, ctr)


# -- chaining with the reference plugins --------------------------------------------------


def _iptables_usable(lab: Lab) -> str | None:
    """Why the reference portmap/firewall plugins (iptables) cannot run, or None."""
    try:
        probe = lab.run(["iptables", "-w", "5", "-t", "nat", "-S"], check=False, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"iptables cannot run: {exc}"
    return None if probe.returncode == 0 else f"iptables fails here: {probe.stderr.strip()}"


def _chain(rt: Runtime) -> dict[str, Any]:
    podnet = rt.conf(subnet="10.90.20.0/24", isDefaultGateway=True, ipMasq=True)
    del podnet["cniVersion"], podnet["name"]  # the list's, as libcni sets them
    return {
        "cniVersion": "1.0.0",  # the newest the reference plugins here speak
        "name": "chained",
        "plugins": [
            podnet,
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "tuning", "mtu": 1400, "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}},
            {
                "type": "bandwidth",
                "ingressRate": 200_000_000,
                "ingressBurst": 4_000_000,
                "egressRate": 200_000_000,
                "egressBurst": 4_000_000,
            },
            {"type": "firewall", "backend": "iptables"},
        ],
    }


def _host(lab: Lab, *argv: str) -> str:
    return lab.run(list(argv), timeout=20).stdout


def _ifbs(lab: Lab) -> str:
    return _host(lab, "ip", "-o", "link", "show", "type", "ifb")


def test_chain_with_reference_plugins(rt: Runtime) -> None:
    lab = rt.lab
    reason = _iptables_usable(lab)
    if reason:
        pytest.skip(f"reference portmap/firewall need iptables: {reason}")
    conflist = _chain(rt)
    ctr = rt.container()
    result = rt.chain("ADD", conflist, ctr, runtime_config=ports(8088))
    assert result is not None and result["cniVersion"] == "1.0.0"
    ip, veth = ip_of(result), host_end(result)
    lab.spawn([*WHOAMI, "--port", "80", "--name", ctr.id], where=ctr.ns)

    # portmap: the external host reaches the container on host_ip:8088
    status, body = lab.wait_http(lab.external, lab.host_ip, 8088)
    assert status == 200 and f"Hostname: {ctr.id}" in body
    # podnet's masquerade still takes the container out
    status, body = lab.wait_http(ctr.ns, lab.external_ip, OUTSIDE_PORT)
    assert status == 200 and f"RemoteAddr: {lab.host_ip}:" in body
    # tuning
    seen = inside(ctr)
    assert seen is not None and seen.mtu == 1400
    rp_filter = lab.run(["cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter"], where=ctr.ns)
    assert rp_filter.stdout.strip() == "2"
    # bandwidth: tbf on the host end for ingress, an ifb for egress
    assert "tbf" in _host(lab, "tc", "qdisc", "show", "dev", veth)
    assert _ifbs(lab).strip()
    # firewall
    assert ip in _host(lab, "iptables", "-w", "5", "-S", "CNI-FORWARD")
    # podnet's CHECK accepts the chain's final result as prevResult
    check = {**conflist["plugins"][0], "cniVersion": "1.0.0", "name": "chained"}
    assert rt.exec("CHECK", {**check, "prevResult": result}, ctr).code == 0

    rt.chain("DEL", conflist, ctr, runtime_config=ports(8088), cached=result)
    assert veth not in host_links(lab) and inside(ctr) is None
    assert not _ifbs(lab).strip()
    for table in ("filter", "nat"):
        rules = _host(lab, "iptables-save", "-t", table)
        assert ip not in rules and ctr.id not in rules and "8088" not in rules, rules
    assert ip not in leases(lab, "chained") and attachments(lab, "chained") == []
    assert not lab.can_connect(lab.external, lab.host_ip, 8088)


def test_nothing_left_behind(rt: Runtime) -> None:
    assert host_links(rt.lab) == set()
    assert attachments(rt.lab) == []
    assert set(leases(rt.lab, "front")) == set(pod_addresses(rt.lab).values())
