"""``podnet-cni`` driven exactly as a container runtime drives it: an exec in
the lab's host netns with a clean environment, the configuration on stdin, the
result or the spec's error JSON on stdout. Every test runs on both paths: the
fast path (an agent answers on its socket) and standalone (no agent).

Covers VERSION, the ADD result in every version podnet speaks, the container's
interface and traffic, delegated IPAM, the spec's error codes, DEL's
idempotence, CHECK, GC and STATUS."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cni_runtime import (
    CNI_VERSIONS,
    PYTHON_PLUGIN,
    Container,
    Runtime,
    attachments,
    host_links,
    inside,
    leases,
)

from podnet.kernel import netns
from podnet.kernel.netlink import Netlink
from podnet.lab import Lab

pytestmark = pytest.mark.root

WHOAMI = [sys.executable, "-m", "podnet", "whoami"]
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
LEGACY = {"0.3.0", "0.3.1", "0.4.0"}  # results whose ips carry "version"
OUTSIDE_PORT = 9000


@pytest.fixture(scope="module", params=["fast", "standalone"])
def rt(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """One lab per path; the fast path's agent is started by a CLI call."""
    with Lab() as lab:
        if request.param == "fast":
            lab.podnet("network", "ls")
        lab.spawn([*WHOAMI, "--port", str(OUTSIDE_PORT), "--name", "outside"], where=lab.external)
        lab.wait_http(lab.external, lab.external_ip, OUTSIDE_PORT)
        yield Runtime(lab)
        # The path did not change under the tests: no agent appeared, none died.
        assert (lab.agent_pid() is not None) == (request.param == "fast")


def host_end(result: dict[str, Any]) -> str:
    (name,) = [i["name"] for i in result["interfaces"] if i["name"].startswith("pnc")]
    return str(name)


def address(result: dict[str, Any]) -> str:
    return str(result["ips"][0]["address"])


def ip_of(result: dict[str, Any]) -> str:
    return address(result).split("/")[0]


def leased(rt: Runtime, network: str) -> set[str]:
    return set(leases(rt.lab, network))


# -- VERSION and ADD ------------------------------------------------------------


def test_version_echoes_the_request(rt: Runtime) -> None:
    reply = rt.exec("VERSION", {"cniVersion": "0.4.0"}).ok()
    assert reply == {"cniVersion": "0.4.0", "supportedVersions": list(CNI_VERSIONS)}
    assert rt.exec("VERSION", b"").ok()["cniVersion"] == "1.1.0"


@pytest.mark.parametrize("version", CNI_VERSIONS)
def test_add_result_shape_and_interface(rt: Runtime, version: str) -> None:
    conf = rt.conf("shapes", version, subnet="10.90.1.0/24", isDefaultGateway=True)
    ctr = rt.container()
    result = rt.add(conf, ctr)
    try:
        assert set(result) == {"cniVersion", "interfaces", "ips", "routes", "dns"}
        assert result["cniVersion"] == version
        ifaces = result["interfaces"]
        (index,) = [i for i, iface in enumerate(ifaces) if "sandbox" in iface]
        eth0 = ifaces[index]
        assert eth0["name"] == "eth0" and eth0["sandbox"] == ctr.netns
        assert MAC.fullmatch(eth0["mac"])
        assert "sandbox" not in ifaces[0] and ifaces[0]["name"] == "pn-shapes"
        assert host_end(result) in host_links(rt.lab)
        (ip,) = result["ips"]
        if version in LEGACY:
            assert ip["version"] == "4"
        else:
            assert "version" not in ip
        assert ipaddress.ip_interface(ip["address"]).network == ipaddress.ip_network("10.90.1.0/24")
        assert ip["gateway"] == "10.90.1.1" and ip["interface"] == index
        assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.90.1.1"}]

        seen = inside(ctr)
        assert seen is not None and seen.up and seen.mac == eth0["mac"]
        assert ip["address"] in seen.addresses
        assert seen.default_gateways == {"10.90.1.1"}
    finally:
        rt.delete(conf, ctr)


def test_traffic_from_host_and_masquerade_to_external(rt: Runtime) -> None:
    conf = rt.conf("traffic", subnet="10.90.2.0/24", isDefaultGateway=True, ipMasq=True)
    ctr = rt.container()
    result = rt.add(conf, ctr)
    lab = rt.lab
    lab.spawn([*WHOAMI, "--port", "80", "--name", ctr.id], where=ctr.ns)
    status, body = lab.wait_http(lab.host, ip_of(result), 80)
    assert status == 200 and f"Hostname: {ctr.id}" in body
    status, body = lab.wait_http(ctr.ns, lab.external_ip, OUTSIDE_PORT)
    assert status == 200 and f"RemoteAddr: {lab.host_ip}:" in body
    rt.delete(conf, ctr)
    assert not lab.can_connect(lab.host, ip_of(result), 80)


def test_delegated_ipam_host_local(rt: Runtime, tmp_path: Path) -> None:
    data_dir = tmp_path / "host-local"
    conf = rt.conf(
        "hostlocal",
        ipMasq=True,
        ipam={
            "type": "host-local",
            "ranges": [[{"subnet": "10.90.6.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(data_dir),
        },
    )
    ctr = rt.container()
    result = rt.add(conf, ctr)
    ip = ip_of(result)
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.90.6.0/24")
    lease = data_dir / "hostlocal" / ip
    assert lease.exists() and ctr.id in lease.read_text()
    seen = inside(ctr)
    assert seen is not None and address(result) in seen.addresses
    assert leased(rt, "hostlocal") == set()  # host-local owns these addresses, not podnet
    rt.delete(conf, ctr)
    assert not lease.exists()
    assert host_end(result) not in host_links(rt.lab)


def test_delegated_ipam_default_route_uses_the_gateway(rt: Runtime, tmp_path: Path) -> None:
    """A route without "gw" goes via the IPAM result's gateway, as the
    reference plugins do (ipam.ConfigureIface), so the container gets out."""
    conf = rt.conf(
        "hostlocal2",
        ipMasq=True,
        ipam={
            "type": "host-local",
            "ranges": [[{"subnet": "10.90.7.0/24", "gateway": "10.90.7.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(tmp_path),
        },
    )
    ctr = rt.container()
    rt.add(conf, ctr)
    try:
        seen = inside(ctr)
        assert seen is not None and seen.default_gateways == {"10.90.7.1"}
        status, body = rt.lab.wait_http(ctr.ns, rt.lab.external_ip, OUTSIDE_PORT, timeout=5)
        assert status == 200 and f"RemoteAddr: {rt.lab.host_ip}:" in body
    finally:
        rt.delete(conf, ctr)


# -- errors --------------------------------------------------------------------


def _files(directory: Path) -> dict[str, int]:
    if not directory.is_dir():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def test_bad_json_is_code_6_and_touches_no_state(rt: Runtime) -> None:
    default_state = Path("/var/lib/podnet")
    before = _files(default_state)
    err = rt.exec("ADD", b'{"cniVersion": "1.0.0", "name": ', rt.container()).error()
    assert err["code"] == 6 and "decode" in err["msg"]
    assert err["details"]
    # Unreadable config: no stateDir known, so no state may be opened at all.
    assert _files(default_state) == before


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("no-container-id", 4, ["CNI_CONTAINERID"]),
        ("version-0.2.0", 1, ["incompatible CNI version", "0.2.0"]),
        ("network-and-subnet", 7, ["subnet", "network"]),
        ("unknown-network", 7, ["nonexistent", "does not exist"]),
    ],
)
def test_errors_carry_spec_code_and_actionable_message(
    rt: Runtime, case: str, code: int, words: list[str]
) -> None:
    ctr = rt.container()
    conf = rt.conf("errors", subnet="10.90.8.0/24")
    env = None
    if case == "no-container-id":
        env = rt.env("ADD", ctr)
        del env["CNI_CONTAINERID"]
    elif case == "version-0.2.0":
        conf["cniVersion"] = "0.2.0"
    elif case == "network-and-subnet":
        conf["network"] = "front"
    else:
        conf = rt.conf("errors", network="nonexistent")
    reply = rt.exec("ADD", conf, ctr, env=env)
    err = reply.error()
    assert err["code"] == code, err
    assert all(w in err["msg"] for w in words), err
    assert err["details"], "the details say how to fix it"
    assert "Traceback" not in reply.stdout + reply.stderr
    assert inside(ctr) is None and not attachments(rt.lab, "errors")


# -- DEL -----------------------------------------------------------------------


def test_del_is_idempotent_and_frees_the_lease(rt: Runtime) -> None:
    conf = rt.conf("dels", subnet="10.90.3.0/24", isDefaultGateway=True)
    first = rt.container()
    result = rt.add(conf, first)
    assert ip_of(result) in leased(rt, "dels")
    rt.delete(conf, first)
    rt.delete(conf, first)
    assert host_end(result) not in host_links(rt.lab)
    assert inside(first) is None
    assert ip_of(result) not in leased(rt, "dels") and not attachments(rt.lab, "dels")

    again = rt.container()  # the freed address can be handed out again
    reused = rt.add(conf, again, args=f"IgnoreUnknown=1;IP={ip_of(result)}")
    assert address(reused) == address(result)
    rt.delete(conf, again)


def test_del_after_netns_is_gone(rt: Runtime) -> None:
    conf = rt.conf("dels", subnet="10.90.3.0/24", isDefaultGateway=True)
    ctr = rt.container()
    result = rt.add(conf, ctr)
    netns.delete(ctr.ns)
    rt.delete(conf, ctr)
    env = rt.env("DEL", ctr)
    env["CNI_NETNS"] = ""  # a runtime may no longer know it
    assert rt.exec("DEL", conf, env=env).code == 0
    assert host_end(result) not in host_links(rt.lab)
    assert ip_of(result) not in leased(rt, "dels") and not attachments(rt.lab, "dels")


def test_del_of_unknown_container_succeeds(rt: Runtime) -> None:
    ctr = rt.container()
    conf = rt.conf("dels", subnet="10.90.3.0/24", isDefaultGateway=True)
    rt.delete(conf, ctr)
    env = rt.env("DEL", ctr)
    del env["CNI_NETNS"]
    assert rt.exec("DEL", conf, env=env).code == 0
    assert rt.exec("DEL", rt.conf("never-made", network="nonexistent"), ctr).code == 0


# -- CHECK, GC, STATUS ----------------------------------------------------------


def test_check_passes_then_names_a_missing_interface(rt: Runtime) -> None:
    conf = rt.conf("checks", subnet="10.90.4.0/24", isDefaultGateway=True)
    ctr = rt.container()
    result = rt.add(conf, ctr)
    check = {**conf, "prevResult": result}
    assert rt.exec("CHECK", check, ctr).ok() == {}
    with Netlink(ctr.ns) as nl:
        nl.delete_link("eth0")
    err = rt.exec("CHECK", check, ctr).error()
    assert "interface eth0 is missing" in err["msg"] and ctr.ns in err["msg"]
    rt.delete(conf, ctr)
    assert host_end(result) not in host_links(rt.lab)


def test_check_refuses_a_prev_result_that_is_not_the_attachment(rt: Runtime) -> None:
    conf = rt.conf("checks", subnet="10.90.4.0/24", isDefaultGateway=True)
    ctr = rt.container()
    result = rt.add(conf, ctr)
    forged = {**result, "ips": [{**result["ips"][0], "address": "10.90.4.250/24"}]}
    err = rt.exec("CHECK", {**conf, "prevResult": forged}, ctr).error()
    assert "10.90.4.250/24" in err["msg"]
    rt.delete(conf, ctr)


def _gc_list(*ctrs: Container) -> list[dict[str, str]]:
    return [{"containerID": c.id, "ifname": "eth0"} for c in ctrs]


def test_gc_keeps_valid_attachments_and_removes_the_rest(rt: Runtime) -> None:
    conf = rt.conf("gcnet", "1.1.0", subnet="10.90.5.0/24")
    a, b, c = (rt.container() for _ in range(3))
    results = {ctr: rt.add(conf, ctr) for ctr in (a, b, c)}

    def alive(ctr: Container) -> bool:
        here = host_end(results[ctr]) in host_links(rt.lab)
        return here and ip_of(results[ctr]) in leased(rt, "gcnet") and inside(ctr) is not None

    assert rt.exec("GC", conf).error()["code"] == 7  # no list: never "everything is stale"
    assert all(alive(ctr) for ctr in (a, b, c))

    rt.exec("GC", {**conf, "cni.dev/valid-attachments": _gc_list(a, b)}).ok()
    assert alive(a) and alive(b)
    assert host_end(results[c]) not in host_links(rt.lab) and inside(c) is None
    assert ip_of(results[c]) not in leased(rt, "gcnet")
    assert {att.container_id for att in attachments(rt.lab, "gcnet")} == {a.id, b.id}

    rt.exec("GC", {**conf, "cni.dev/attachments": _gc_list(a)}).ok()  # the older key
    assert alive(a) and not alive(b)
    rt.delete(conf, a)
    assert leased(rt, "gcnet") == set() and host_end(results[a]) not in host_links(rt.lab)


def test_status(rt: Runtime) -> None:
    good = rt.exec("STATUS", rt.conf("gcnet", "1.1.0", subnet="10.90.5.0/24"))
    assert good.code == 0 and good.stdout.strip() == ""
    err = rt.exec("STATUS", rt.conf("statusnet", "1.1.0", network="nonexistent")).error()
    assert err["code"] == 50 and "nonexistent" in err["msg"]


def test_nothing_left_behind(rt: Runtime) -> None:
    """Every test DELed what it ADDed: no veth, attachment or podnet lease stays."""
    assert host_links(rt.lab) == set()
    assert attachments(rt.lab) == []
    for network in ("shapes", "traffic", "dels", "checks", "gcnet"):
        assert leased(rt, network) == set(), network


# -- both paths, one state -------------------------------------------------------


def _shape(result: dict[str, Any]) -> dict[str, Any]:
    """A result with what allocation decides (MACs, addresses, names) blanked."""

    def blank(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: blank(v) for k, v in value.items()}
        if isinstance(value, list):
            return [blank(v) for v in value]
        return "*" if isinstance(value, str) else value

    out: dict[str, Any] = blank(result)
    out["cniVersion"] = result["cniVersion"]
    out["routes"] = result["routes"]
    out["interfaces"][0]["name"] = result["interfaces"][0]["name"]
    out["interfaces"][2]["name"] = result["interfaces"][2]["name"]
    for ip, blanked in zip(result["ips"], out["ips"], strict=True):
        blanked["gateway"] = ip["gateway"]
        net = ipaddress.ip_interface(ip["address"]).network
        blanked["address"] = f"in {net}"
    return out


def test_fast_and_standalone_give_the_same_result() -> None:
    with Lab() as lab:
        rt = Runtime(lab)
        conf = rt.conf("both", subnet="10.90.9.0/24", isDefaultGateway=True, ipMasq=True)
        alone, fast = rt.container(), rt.container()
        standalone_result = rt.add(conf, alone)
        assert lab.agent_pid() is None
        lab.podnet("network", "ls")  # from now on podnet-cni forwards to the agent
        fast_result = rt.add(conf, fast)
        assert _shape(fast_result) == _shape(standalone_result)
        assert ip_of(fast_result) != ip_of(standalone_result)
        assert {att.container_id for att in attachments(lab, "both")} == {alone.id, fast.id}

        rt.delete(conf, alone)  # what one path made, the other removes
        lab.stop_agent()
        rt.delete(conf, fast)
        assert host_links(lab) == set() and attachments(lab) == []
        assert leases(lab, "both") == {}
        assert os.path.exists(lab.settings.state_dir / "cni.lock")


def test_python_plugin_and_native_forwarder_agree(rt: Runtime) -> None:
    """The Python plugin (its own fast path, or standalone) and the native
    forwarder `podnet cni install` places give results of the same shape."""
    conf = rt.conf("both", subnet="10.90.9.0/24", isDefaultGateway=True)
    first, second = rt.container(), rt.container()
    via_python = rt.exec("ADD", conf, first, plugin=PYTHON_PLUGIN)
    via_default = rt.exec("ADD", conf, second)
    assert via_python.code == 0 and via_default.code == 0, (via_python, via_default)
    assert _shape(via_python.ok()) == _shape(via_default.ok())
    assert rt.exec("DEL", conf, first, plugin=PYTHON_PLUGIN).code == 0
    assert rt.exec("DEL", conf, second).code == 0
    assert not attachments(rt.lab, "both")
