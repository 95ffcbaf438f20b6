"""The service load balancer's transactions against real nft, in a throwaway netns.

Every script is applied with ``nsenter --net=/run/netns/NAME nft -f -`` inside
a namespace made for the test (``pnt-svc-<random>``) and deleted in a
``finally``; nothing touches the machine's own ruleset. After every step the
table is read back (``nft list table`` as text for the rules, ``nft -j`` for
map and set elements) and compared with the plans the step was rendered from,
so a rule nft parsed differently from what podnet meant would show here. The
traffic test connects, inside the namespace only, to VIPs whose endpoints are
listeners on a veth inside the namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import pytest

from podnet.kernel import netns, run_in
from podnet.model.service import Endpoint, ServicePort, ServiceSpec
from podnet.rules.ruleset import render_ruleset
from podnet.rules.service_layout import HAIRPIN_SET, IPS_MAP, NODEPORTS_MAP
from podnet.rules.services import (
    Inventory,
    ServicesConfig,
    ServicesState,
    hook_rules,
    plan_service,
    render_changes,
    render_full,
)
from podnet.rules.transaction import Transaction

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables"),
]

TABLE = "podnet"
CFG = ServicesConfig(TABLE)
IP = ipaddress.ip_address
_OURS = re.compile(r"(svc|hp|ep)-[0-9a-f]{16}")


@pytest.fixture
def host() -> Iterator[str]:
    name = f"pnt-svc-{secrets.token_hex(4)}"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)


def nft(ns: str, *args: str, script: str | None = None) -> str:
    done = subprocess.run(
        ["nsenter", f"--net={netns.path(ns)}", "nft", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"nft {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def apply(ns: str, tx: Transaction) -> None:
    nft(ns, "-f", "-", script=tx.render())


def listing(ns: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(nft(ns, "-j", "list", "table", "inet", TABLE))
    return data


def start(ns: str, state: ServicesState, config: ServicesConfig = CFG) -> None:
    """The ruleset, the services and the hook rules, in one transaction."""
    tx = render_ruleset(TABLE, [], [])
    tx.commands += render_full(config, state.services.values(), state.endpoints).commands
    tx.add_rules(hook_rules())
    apply(ns, tx)


# -- what the kernel holds, and what the plans say it should ---------------------------


def _chain_rules(ns: str) -> dict[str, list[str]]:
    """Rules of every per-service chain, as ``nft list table`` prints them."""
    chains: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in nft(ns, "list", "table", "inet", TABLE).splitlines():
        line = raw.strip()
        if m := re.fullmatch(r"chain (\S+) \{", line):
            current = chains.setdefault(m[1], []) if _OURS.fullmatch(m[1]) else None
        elif line == "}":
            current = None
        elif current is not None and line and not line.startswith("comment "):
            current.append(line)
    return chains


def _text(value: Any) -> str:
    if isinstance(value, dict) and "concat" in value:
        return " . ".join(str(v) for v in value["concat"])
    return str(value)


def _elements(data: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    found: dict[str, dict[str, str | None]] = {}
    for item in data["nftables"]:
        for kind in ("set", "map"):
            if kind in item:
                elems = found.setdefault(item[kind]["name"], {})
                for elem in item[kind].get("elem", []):
                    if kind == "map":
                        key, value = elem
                        verdict = value.get("goto") if isinstance(value, dict) else None
                        elems[_text(key)] = f"goto {verdict['target']}" if verdict else _text(value)
                    else:
                        elems[_text(elem)] = None
    return found


def assert_kernel_matches(ns: str, state: ServicesState) -> None:
    plans = [plan_service(s, state.endpoints.get(n, ()), CFG) for n, s in state.services.items()]
    data = listing(ns)
    inventory = Inventory.from_nft_json(data)
    assert inventory.chains == {n for p in plans for n in p.chains}
    assert inventory.sets == {n for p in plans for n in p.sets}
    assert inventory.maps == {n for p in plans for n in p.maps}
    assert _chain_rules(ns) == {n: list(c.rules) for p in plans for n, c in p.chains.items()}
    elements = _elements(data)
    shared_maps = [n for n in elements if n.startswith("service_") and "hairpin" not in n]
    assert set(IPS_MAP.values()) | set(NODEPORTS_MAP.values()) <= set(shared_maps)
    for shared in shared_maps:
        want = {k: v for p in plans for (m, k), v in p.elements.items() if m == shared}
        assert elements[shared] == want, shared
    for shared in HAIRPIN_SET.values():
        assert elements[shared] == {e: None for p in plans for s, e in p.members if s == shared}
    for p in plans:
        for name, table in p.maps.items():
            assert elements[name] == dict(table.elements)


# -- the states the test walks through ------------------------------------------------


def _eps(*addresses: str) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(IP(a)) for a in addresses)


WEB = ServiceSpec(
    "web",
    (ServicePort(80, 8080), ServicePort(443, 8443, host_port=30443)),
    affinity_timeout=600,
    vips=(IP("10.96.0.10"), IP("fd00:96::10")),
)
DNS = ServiceSpec(
    "dns",
    (ServicePort(53, 53, "udp"), ServicePort(53, 53)),
    lb="roundrobin",
    vips=(IP("10.96.0.53"),),
)
MG = ServiceSpec("mg", (ServicePort(80, 80),), lb="maglev", vips=(IP("10.96.0.80"),))
EMPTY = ServiceSpec("empty", (ServicePort(80, 80),), vips=(IP("10.96.0.99"), IP("fd00:96::99")))
API = ServiceSpec("api", (ServicePort(8080, 80, host_port=30080),), vips=(IP("10.96.0.7"),))

S0 = ServicesState.of(
    [WEB, DNS, MG, EMPTY],
    {
        "web": _eps("10.88.0.2", "10.88.0.3", "fd00:88::2"),
        "dns": _eps("10.88.0.5", "10.88.0.6"),
        "mg": _eps("10.88.0.7", "10.88.0.8", "10.88.0.9"),
    },
)
S1 = ServicesState.of(
    [replace(WEB, affinity_timeout=60), MG, replace(EMPTY, lb="maglev"), API],
    {
        "web": _eps("10.88.0.2", "10.88.0.4"),
        "mg": _eps("10.88.0.7", "10.88.0.8", "10.88.0.10"),
        "empty": _eps("10.88.0.11", "fd00:88::11"),
        "api": (Endpoint(IP("10.88.0.12"), weight=3), Endpoint(IP("10.88.0.13"))),
    },
)


def test_full_sync_and_incremental_changes_are_what_nft_holds(host: str) -> None:
    start(host, S0)
    assert_kernel_matches(host, S0)
    for old, new in [(S0, S1), (S1, S0), (S0, ServicesState()), (ServicesState(), S1)]:
        tx = render_changes(CFG, old, new)
        apply(host, tx)
        assert_kernel_matches(host, new)
    # A restart that finds S1 in the kernel and wants S0: leftovers go.
    existing = Inventory.from_nft_json(listing(host))
    apply(host, render_full(CFG, S0.services.values(), S0.endpoints, existing=existing))
    assert_kernel_matches(host, S0)
    # Without an inventory nothing is deleted, but nothing is doubled either.
    apply(host, render_full(CFG, S0.services.values(), S0.endpoints))
    assert_kernel_matches(host, S0)


def test_a_refused_change_leaves_the_table_as_it_was(host: str) -> None:
    start(host, S0)
    wrong_old = ServicesState.of([API], {"api": _eps("10.88.0.12")})  # not in the kernel
    done = subprocess.run(
        ["nsenter", f"--net={netns.path(host)}", "nft", "-f", "-"],
        input=render_changes(CFG, wrong_old, ServicesState()).render(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert_kernel_matches(host, S0)


# -- traffic, inside the namespace only -----------------------------------------------


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=30)


class _Listeners:
    """TCP listeners that answer every connection with their own address."""

    def __init__(self, ns: str, addresses: list[str], port: int) -> None:
        self.socks = [run_in(ns, partial(socket.create_server, (a, port))) for a in addresses]
        self.threads = [
            threading.Thread(target=self._serve, args=(s,), daemon=True) for s in self.socks
        ]
        for t in self.threads:
            t.start()

    @staticmethod
    def _serve(server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(server.getsockname()[0].encode())

    def close(self) -> None:
        for s in self.socks:
            s.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            s.close()
        for t in self.threads:
            t.join(timeout=5)


def _ask(ns: str, vip: str, port: int, source: str | None = None) -> str:
    def go() -> str:
        bind = (source, 0) if source else None
        with socket.create_connection((vip, port), timeout=5, source_address=bind) as conn:
            return conn.recv(64).decode()

    return run_in(ns, go)


def test_traffic_is_balanced_sticky_and_refused_without_endpoints(host: str) -> None:
    _ip(host, "link", "set", "lo", "up")
    _ip(host, "link", "add", "pntsvc0", "type", "veth", "peer", "name", "pntsvc1")
    for address in ("10.77.0.1/24", "10.77.0.2/24", "10.77.0.3/24", "10.77.0.4/24", "10.77.0.5/24"):
        _ip(host, "addr", "add", address, "dev", "pntsvc0")
    for ifname in ("pntsvc0", "pntsvc1"):
        _ip(host, "link", "set", ifname, "up")
    _ip(host, "route", "add", "10.96.0.0/24", "dev", "pntsvc0")
    rr = ServiceSpec("rr", (ServicePort(80, 8080),), lb="roundrobin", vips=(IP("10.96.0.10"),))
    sticky = replace(rr, name="sticky", affinity_timeout=60, vips=(IP("10.96.0.11"),))
    none = replace(rr, name="none", vips=(IP("10.96.0.12"),))
    endpoints = {"rr": _eps("10.77.0.2", "10.77.0.3"), "sticky": _eps("10.77.0.2", "10.77.0.3")}
    state = ServicesState.of([rr, sticky, none], endpoints)
    config = ServicesConfig(TABLE, affinity_set_size=1)  # one client per endpoint
    listeners = _Listeners(host, ["10.77.0.2", "10.77.0.3"], 8080)
    try:
        start(host, state, config)
        assert sorted(_ask(host, "10.96.0.10", 80) for _ in range(4)) == [
            "10.77.0.2",
            "10.77.0.2",
            "10.77.0.3",
            "10.77.0.3",
        ]
        # Affinity: round robin would alternate; the first client stays put,
        # the second fills the other endpoint's set, the third finds both
        # sets full and is still placed, by the last plain DNAT.
        clients = ["10.77.0.1", "10.77.0.4", "10.77.0.5", "10.77.0.1", "10.77.0.4"]
        assert [_ask(host, "10.96.0.11", 80, c) for c in clients] == [
            "10.77.0.2",
            "10.77.0.3",
            "10.77.0.3",
            "10.77.0.2",
            "10.77.0.3",
        ]
        with pytest.raises(ConnectionRefusedError):
            _ask(host, "10.96.0.12", 80)
        changed = replace(state, endpoints={**endpoints, "rr": _eps("10.77.0.3")})
        apply(host, render_changes(config, state, changed))
        assert {_ask(host, "10.96.0.10", 80) for _ in range(3)} == {"10.77.0.3"}
    finally:
        listeners.close()
