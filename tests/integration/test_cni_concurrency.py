"""``podnet-cni`` under a runtime's real load: 50 ADDs at once (50 plugin
processes, fast path and standalone), then 50 DELs; and ADDs SIGKILLed
midway, after which DEL or GC leaves no lease, record or veth behind."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cni_runtime import Container, Reply, Runtime, attachments, host_links, inside, leases

from podnet.kernel import netns
from podnet.lab import Lab

pytestmark = pytest.mark.root

COUNT = 50
TIMEOUT = 180.0  # per plugin run: 50 standalone plugins queue on one lock


@pytest.fixture(scope="module", params=["fast", "standalone"])
def rt(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    with Lab() as lab:
        if request.param == "fast":
            lab.podnet("network", "ls")
        yield Runtime(lab)
        assert (lab.agent_pid() is not None) == (request.param == "fast")


def ip_of(result: dict[str, Any]) -> str:
    return str(result["ips"][0]["address"]).split("/")[0]


def reachable(lab: Lab, ips: list[str]) -> list[str]:
    """The addresses that answer a TCP SYN (with RST: nothing listens) from the host."""

    def probe() -> list[str]:
        answered = []
        for ip in ips:
            with socket.socket() as sock:
                sock.settimeout(1.0)
                code = sock.connect_ex((ip, 9))
            if code in (0, errno.ECONNREFUSED):
                answered.append(ip)
        return answered

    return netns.run_in(lab.host, probe)


def in_parallel(
    rt: Runtime, command: str, conf: dict[str, Any], ctrs: list[Container]
) -> list[Reply]:
    with ThreadPoolExecutor(max_workers=len(ctrs)) as pool:
        runs = [pool.submit(rt.exec, command, conf, c, timeout=TIMEOUT) for c in ctrs]
        return [run.result() for run in runs]


def test_fifty_parallel_adds_then_dels(rt: Runtime) -> None:
    lab = rt.lab
    conf = rt.conf("many", subnet="10.90.30.0/24", isDefaultGateway=True)
    ctrs = [rt.container() for _ in range(COUNT)]
    started = time.monotonic()
    replies = in_parallel(rt, "ADD", conf, ctrs)
    took = time.monotonic() - started
    results = [r.ok() for r in replies]
    ips = [ip_of(r) for r in results]
    assert len(set(ips)) == COUNT, sorted(ips)
    assert set(ips) == set(leases(lab, "many"))
    assert len(host_links(lab)) == COUNT
    for ctr, result in zip(ctrs, results, strict=True):
        seen = inside(ctr)
        assert seen is not None and seen.up and result["ips"][0]["address"] in seen.addresses
    assert sorted(reachable(lab, ips)) == sorted(ips)
    print(f"{COUNT} parallel ADDs took {took:.1f}s")

    for reply in in_parallel(rt, "DEL", conf, ctrs):
        reply.ok()
    assert host_links(lab) == set()
    assert leases(lab, "many") == {} and attachments(lab) == []
    assert all(inside(ctr) is None for ctr in ctrs)


@pytest.fixture
def alone() -> Iterator[Runtime]:
    with Lab() as lab:
        yield Runtime(lab)


def test_killed_adds_leave_nothing_del_or_gc_cannot_clean(alone: Runtime) -> None:
    rt, lab = alone, alone.lab
    conf = rt.conf("killed", "1.1.0", subnet="10.90.31.0/24", isDefaultGateway=True)
    timer = rt.container()
    started = time.monotonic()
    rt.add(conf, timer)  # also makes the network, so kills land in the ADD proper
    whole = time.monotonic() - started
    killed: list[Container] = []
    outcomes = []
    for fraction in (0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        ctr = rt.container()
        proc = rt.spawn("ADD", conf, ctr)
        time.sleep(whole * fraction)
        proc.kill()
        outcomes.append(proc.wait(timeout=10))
        killed.append(ctr)
    assert outcomes.count(-9) >= 4, f"too few kills landed midway: {outcomes} ({whole:.2f}s)"

    by_del, by_gc = killed[::2], killed[1::2]
    for ctr in by_del:
        rt.delete(conf, ctr)
    assert {a.container_id for a in attachments(lab)} <= {timer.id, *(c.id for c in by_gc)}
    keep = [{"containerID": timer.id, "ifname": "eth0"}]
    rt.exec("GC", {**conf, "cni.dev/valid-attachments": keep}).ok()

    assert {a.container_id for a in attachments(lab)} == {timer.id}
    assert list(leases(lab, "killed").values()) == [f"container {timer.id}/eth0"]
    assert len(host_links(lab)) == 1
    assert all(inside(ctr) is None for ctr in killed)
    # Every address is free again: each killed container can be ADDed afresh.
    again = [rt.add(conf, ctr) for ctr in killed]
    assert len({ip_of(r) for r in again}) == len(killed)
    for ctr in [timer, *killed]:
        rt.delete(conf, ctr)
    assert host_links(lab) == set() and leases(lab, "killed") == {}
