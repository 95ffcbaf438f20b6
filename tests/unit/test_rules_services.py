"""Service load-balancer rendering: transactions, plans, balancing, full and
incremental syncs.

Besides exact expectations, :class:`NftModel` applies rendered scripts the way
the kernel would judge them (all or nothing; no deleting what is referenced;
no re-adding a map key with a new value; no deleting what is missing), so the
property tests can check that every incremental transaction is accepted and
leaves the table exactly as a full sync of the new state would.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podnet.errors import InvalidInput
from podnet.lb.maglev import Backend, build_table
from podnet.model.service import Endpoint, ServicePort, ServiceSpec
from podnet.rules import service_plan, services
from podnet.rules.service_balance import (
    maglev_owners,
    maglev_slots,
    weighted_rules,
    weighted_slots,
)
from podnet.rules.service_layout import BACKEND_SHARDS, backends_map, declare_static
from podnet.rules.service_plan import EMPTY_PLAN, object_name, plan_service
from podnet.rules.services import (
    Inventory,
    ServicesConfig,
    ServicesState,
    hook_rules,
    render_changes,
    render_full,
)
from podnet.rules.transaction import BaseChain, Rule, Transaction

IP = ipaddress.ip_address
CFG = ServicesConfig("podnet")
NAME = re.compile(r"(svc|hp|ep|af|mg)-[0-9a-f]{16}")


def svc(
    name: str,
    *ports: ServicePort,
    vips: tuple[str, ...] = ("10.96.0.10",),
    lb: str = "random",
    affinity: int | None = None,
) -> ServiceSpec:
    return ServiceSpec(
        name,
        ports or (ServicePort(80, 8080),),
        lb=lb,
        affinity_timeout=affinity,
        vips=tuple(IP(v) for v in vips),
    )


def eps(*addresses: str, weight: int = 1) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(IP(a), weight=weight) for a in addresses)


def chain_of(plan: service_plan.ServicePlan, comment: str) -> tuple[str, tuple[str, ...]]:
    [(name, spec)] = [(n, c) for n, c in plan.chains.items() if c.comment == comment]
    return name, spec.rules


# -- a model of how nft judges a transaction ---------------------------------------


class NftRefused(Exception):
    pass


_CMD = re.compile(r"(add|flush|delete) (table|chain|set|map|rule|element) inet (\S+)(?: (.*))?")
_REF_CHAIN = re.compile(r"\b(?:goto|jump) ([A-Za-z0-9_-]+)")
_REF_SET = re.compile(r"@([A-Za-z0-9_-]+)")


@dataclass
class NftModel:
    """Chains with rules, sets and maps with elements, and the kernel's refusals."""

    table: str = "podnet"
    chains: dict[str, list[str]] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)
    sets: dict[str, dict[str, str | None]] = field(default_factory=dict)
    decls: dict[str, str] = field(default_factory=dict)

    def apply(self, script: str) -> None:
        trial = copy.deepcopy(self)
        for line in script.splitlines():
            trial._command(line)
        self.__dict__.update(trial.__dict__)

    def _command(self, line: str) -> None:
        m = _CMD.fullmatch(line)
        assert m, f"unexpected command {line!r}"
        verb, kind, table, rest = m.groups()
        assert table == self.table
        if kind == "table":
            return
        name, _, body = (rest or "").partition(" ")
        getattr(self, f"_{verb}_{kind}")(name, body)

    # chains and rules
    def _add_chain(self, name: str, body: str) -> None:
        if name not in self.chains:
            self.chains[name] = []
            self.comments[name] = body

    def _flush_chain(self, name: str, _: str) -> None:
        self._need(name in self.chains, f"no chain {name}")
        self.chains[name] = []

    def _delete_chain(self, name: str, _: str) -> None:
        self._need(name in self.chains, f"no chain {name}")
        rules = [r for c, rs in self.chains.items() if c != name for r in rs]
        values = [v for s in self.sets.values() for v in s.values() if v]
        users = [t for t in rules + values if name in _REF_CHAIN.findall(t)]
        self._need(not users, f"chain {name} is in use by {users}")
        del self.chains[name]
        del self.comments[name]

    def _add_rule(self, chain: str, expr: str) -> None:
        self._need(chain in self.chains, f"no chain {chain}")
        for target in _REF_CHAIN.findall(expr):
            self._need(target in self.chains, f"rule jumps to missing chain {target}")
        for target in _REF_SET.findall(expr):
            self._need(target in self.sets, f"rule uses missing set {target}")
        self.chains[chain].append(expr)

    # sets, maps and elements
    def _add_set(self, name: str, body: str) -> None:
        self.sets.setdefault(name, {})
        self.decls.setdefault(name, body)

    _add_map = _add_set

    def _flush_set(self, name: str, _: str) -> None:
        self._need(name in self.sets, f"no set {name}")
        self.sets[name] = {}

    _flush_map = _flush_set

    def _delete_set(self, name: str, _: str) -> None:
        self._need(name in self.sets, f"no set {name}")
        users = [r for rs in self.chains.values() for r in rs if name in _REF_SET.findall(r)]
        self._need(not users, f"set {name} is in use by {users}")
        del self.sets[name]
        del self.decls[name]

    _delete_map = _delete_set

    def _add_element(self, name: str, body: str) -> None:
        self._need(name in self.sets, f"no set {name}")
        for item in _items(body):
            key, _, value = item.partition(" : ")
            for target in _REF_CHAIN.findall(value):
                self._need(target in self.chains, f"element jumps to missing chain {target}")
            old = self.sets[name].get(key, value or None)
            self._need(old == (value or None), f"{name} {key} exists: File exists")
            self.sets[name][key] = value or None

    def _delete_element(self, name: str, body: str) -> None:
        self._need(name in self.sets, f"no set {name}")
        for key in _items(body):
            self._need(key in self.sets[name], f"{name} has no {key}")
            del self.sets[name][key]

    @staticmethod
    def _need(ok: bool, why: str) -> None:
        if not ok:
            raise NftRefused(why)

    def inventory(self) -> Inventory:
        listing = {
            "nftables": [{"chain": {"name": n}} for n in self.chains]
            + [{"map" if "verdict" in d else "set": {"name": n}} for n, d in self.decls.items()]
        }
        return Inventory.from_nft_json(listing)

    def snapshot(self) -> tuple[object, ...]:
        return (self.chains, self.comments, self.sets, self.decls)


def _items(body: str) -> list[str]:
    assert body.startswith("{ ") and body.endswith(" }"), body
    return body[2:-2].split(", ")


def fresh_model() -> NftModel:
    model = NftModel()
    model.apply(Transaction("podnet").add_table().render())
    return model


def applied(*txs: Transaction) -> NftModel:
    model = fresh_model()
    for tx in txs:
        model.apply(tx.render())
    return model


# -- transaction extensions ------------------------------------------------------


def test_transaction_chain_comments() -> None:
    tx = (
        Transaction("podnet")
        .add_chain("svc", comment='service "web"')
        .add_chain("pre", BaseChain("nat", "prerouting", "dstnat"), comment="podnet")
        .add_chain("plain")
    )
    assert tx.commands == [
        'add chain inet podnet svc { comment "service _web_"; }',
        "add chain inet podnet pre { type nat hook prerouting priority dstnat; "
        'policy accept; comment "podnet"; }',
        "add chain inet podnet plain",
    ]
    assert BaseChain("nat", "output", "-100").render() == (
        "{ type nat hook output priority -100; policy accept; }"
    )


def test_transaction_set_options() -> None:
    tx = Transaction("podnet").add_set(
        "af-1", "ipv4_addr", ("dynamic", "timeout"), timeout=600, size=100, comment="who"
    )
    assert tx.commands == [
        "add set inet podnet af-1 { type ipv4_addr; flags dynamic, timeout; timeout 600s; "
        'size 100; comment "who"; }'
    ]


@pytest.mark.parametrize(("timeout", "size"), [(0, None), (None, -1), (True, None)])
def test_transaction_set_options_must_be_positive(timeout: int | None, size: int | None) -> None:
    with pytest.raises(InvalidInput, match=r"set (timeout|size)"):
        Transaction("podnet").add_set("s", "ipv4_addr", timeout=timeout, size=size)


def test_transaction_maps_and_deletes() -> None:
    tx = (
        Transaction("podnet")
        .add_map("ips", "ipv4_addr . inet_proto . inet_service", "verdict")
        .add_map("mg", "numgen inc mod 2", "verdict", typeof=True, comment="maglev")
        .flush_map("ips")
        .delete_elements("ips", ["10.0.0.1 . tcp . 80", "10.0.0.2 . udp . 53"])
        .delete_elements("ips", [])
        .delete_map("mg")
        .delete_set("af")
    )
    assert tx.commands == [
        "add map inet podnet ips { type ipv4_addr . inet_proto . inet_service : verdict; }",
        'add map inet podnet mg { typeof numgen inc mod 2 : verdict; comment "maglev"; }',
        "flush map inet podnet ips",
        "delete element inet podnet ips { 10.0.0.1 . tcp . 80, 10.0.0.2 . udp . 53 }",
        "delete map inet podnet mg",
        "delete set inet podnet af",
    ]


@pytest.mark.parametrize("method", ["flush_map", "delete_map", "delete_set"])
def test_transaction_new_methods_check_names(method: str) -> None:
    with pytest.raises(InvalidInput):
        getattr(Transaction("podnet"), method)("bad name")
    with pytest.raises(InvalidInput):
        Transaction("podnet").add_map("bad name", "ipv4_addr", "verdict")
    with pytest.raises(InvalidInput):
        Transaction("podnet").delete_elements("bad name", ["1"])


# -- configuration and the fixed layout -------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"table": "pod net"},
        {"masquerade_mark": 0},
        {"masquerade_mark": 3},
        {"masquerade_mark": 1 << 32},
        {"maglev_seed": -1},
        {"maglev_seed": 1 << 32},
        {"maglev_max_slots": 100},
        {"affinity_set_size": 0},
    ],
)
def test_config_refuses_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        ServicesConfig(**{"table": "podnet", **bad})  # type: ignore[arg-type]


def test_config_mark_texts() -> None:
    cfg = ServicesConfig("podnet", masquerade_mark=0x4000)
    assert (cfg.mark, cfg.unmark) == ("0x00004000", "0xffffbfff")


def test_hook_rules() -> None:
    assert hook_rules() == [
        Rule("prerouting", "jump services", "services"),
        Rule("output", "jump services", "services"),
        Rule("postrouting", "jump service_masquerade", "services"),
    ]


def test_static_layout() -> None:
    tx = declare_static(Transaction("podnet"), CFG)
    rules = [c.removeprefix("add rule inet podnet ") for c in tx.commands if "add rule" in c]
    assert rules == [
        "services ip daddr . meta l4proto . th dport vmap @service_ips4",
        "services ip6 daddr . meta l4proto . th dport vmap @service_ips6",
        "services ip daddr != 127.0.0.0/8 fib daddr type local "
        "meta l4proto . th dport vmap @service_nodeports4",
        "services ip6 daddr != ::1 fib daddr type local "
        "meta l4proto . th dport vmap @service_nodeports6",
        "service_masquerade meta mark & 0x00100000 == 0x00100000 meta mark set meta mark "
        '& 0xffefffff masquerade fully-random comment "host-ports"',
        "service_masquerade ct status dnat ip saddr . ip daddr . ct original ip daddr "
        '@service_hairpin4 masquerade fully-random comment "hairpin"',
        "service_masquerade ct status dnat ip6 saddr . ip6 daddr . ct original ip6 daddr "
        '@service_hairpin6 masquerade fully-random comment "hairpin"',
    ]
    assert (
        "add map inet podnet service_ips6 { type ipv6_addr . inet_proto . inet_service "
        ": verdict; }" in tx.commands
    )
    assert (
        "add set inet podnet service_hairpin4 { type ipv4_addr . ipv4_addr . ipv4_addr; }"
        in tx.commands
    )
    assert "flush map inet podnet service_nodeports4" in tx.commands
    backends = [c for c in tx.commands if c.startswith("add map inet podnet service_backends")]
    assert len(backends) == 2 * 2 * BACKEND_SHARDS
    assert backends[0] == (
        "add map inet podnet service_backends4_tcp_00 "
        "{ typeof ip daddr . tcp dport . numgen inc mod 2 : ip daddr . tcp dport; }"
    )
    assert (
        "add map inet podnet service_host_ports6_udp "
        "{ typeof udp dport . numgen inc mod 2 : ip6 daddr . udp dport; }" in tx.commands
    )
    assert "flush map inet podnet service_backends6_udp_3f" in tx.commands


def test_public_surface() -> None:
    assert sorted(services.__all__) == [
        "Inventory",
        "ServicePlan",
        "ServicesConfig",
        "ServicesState",
        "hook_rules",
        "plan_service",
        "render_changes",
        "render_full",
    ]


# -- balancing ------------------------------------------------------------------


def test_weighted_rules_random() -> None:
    assert weighted_rules("random", [(1, "A"), (2, "B"), (3, "C")]) == [
        "numgen random mod 6 < 1 A",
        "numgen random mod 5 < 2 B",
        "C",
    ]


def test_weighted_rules_roundrobin_divides_by_the_common_divisor() -> None:
    assert weighted_rules("roundrobin", [(2, "A"), (4, "B")]) == ["numgen inc mod 3 < 1 A", "B"]


def test_weighted_rules_one_or_no_choice() -> None:
    assert weighted_rules("random", [(7, "A")]) == ["A"]
    assert weighted_rules("random", []) == []


@pytest.mark.parametrize(
    ("policy", "choices", "message"),
    [
        ("maglev", [(1, "A")], "no rule form"),
        ("random", [(0, "A")], "at least 1"),
        ("random", [(True, "A")], "at least 1"),
        ("random", [(1 << 31, "A"), (1 << 31, "B"), (1, "C")], "32-bit"),
    ],
)
def test_weighted_rules_refuses(policy: str, choices: list[tuple[int, str]], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        weighted_rules(policy, choices)


_CHOICE = re.compile(r"numgen (random|inc) mod (\d+) < (\d+) (\S+)")


def _parse_choices(rules: list[str]) -> list[tuple[int, int, str]]:
    """(modulus, share, action) per rule; the last one is (1, 1, action)."""
    parsed = []
    for rule in rules:
        m = _CHOICE.fullmatch(rule)
        parsed.append((int(m[2]), int(m[3]), m[4]) if m else (1, 1, rule))
    return parsed


@given(st.lists(st.integers(1, 50), min_size=1, max_size=12))
def test_random_rules_choose_exactly_by_weight(weights: list[int]) -> None:
    actions = [f"E{i}" for i in range(len(weights))]
    rules = weighted_rules("random", list(zip(weights, actions, strict=True)))
    reach, chosen = Fraction(1), {}
    for modulus, share, action in _parse_choices(rules):
        chosen[action] = reach * Fraction(share, modulus)
        reach -= chosen[action]
    assert reach == 0
    assert chosen == {a: Fraction(w, sum(weights)) for a, w in zip(actions, weights, strict=True)}


@given(st.lists(st.integers(1, 6), min_size=1, max_size=6))
def test_roundrobin_rules_give_every_run_of_w_connections_exact_shares(weights: list[int]) -> None:
    actions = [f"E{i}" for i in range(len(weights))]
    rules = _parse_choices(weighted_rules("roundrobin", list(zip(weights, actions, strict=True))))
    counters = [0] * len(rules)

    def connect() -> str:  # each rule's numgen inc counts only its own evaluations
        for i, (modulus, share, action) in enumerate(rules):
            value, counters[i] = counters[i] % modulus, counters[i] + 1
            if value < share:
                return action
        raise AssertionError("no rule matched")

    period = sum(weights) // math.gcd(*weights)
    for _ in range(3):
        got = Counter(connect() for _ in range(period))
        assert [got[a] * sum(weights) for a in actions] == [w * period for w in weights]


def test_weighted_slots_one_each_for_equal_weights() -> None:
    assert weighted_slots([1, 1, 1]) == [0, 1, 2]
    assert weighted_slots([5, 5]) == [0, 1]
    assert weighted_slots([]) == []


def test_weighted_slots_interleave_and_divide_by_the_common_divisor() -> None:
    assert weighted_slots([1, 2, 3]) == [0, 1, 2, 2, 1, 2]
    assert weighted_slots([2, 4]) == [0, 1, 1]


def test_weighted_slots_refuses_weights_below_one() -> None:
    for bad in ([0, 1], [True, 2], [-1]):
        with pytest.raises(InvalidInput, match="at least 1"):
            weighted_slots(bad)


@given(st.lists(st.integers(1, 400), min_size=1, max_size=40), st.integers(1, 300))
def test_weighted_slots_are_exact_up_to_the_cap_and_fair_beyond(
    weights: list[int], cap: int
) -> None:
    slots = weighted_slots(weights, cap)
    counts = [slots.count(i) for i in range(len(weights))]
    reduced = [w // math.gcd(*weights) for w in weights]
    limit = max(cap, len(weights))
    if len(set(weights)) == 1:
        assert counts == [1] * len(weights)
    elif sum(reduced) <= limit:
        assert counts == reduced
    else:
        assert len(slots) == limit and min(counts) >= 1
        for a, b in zip(weights, counts, strict=True):
            for c, d in zip(weights, counts, strict=True):
                assert a <= c or b >= d  # a heavier endpoint never has fewer slots


@pytest.mark.parametrize(
    ("n", "slots"),
    [(1, 1601), (2, 1601), (3, 1601), (5, 1601), (10, 1601), (16, 1601), (17, 3203),
     (100, 12809), (129, 16381), (1000, 16381), (20000, 20011)],
)  # fmt: skip
def test_maglev_slots_grow_in_steps_up_to_the_cap(n: int, slots: int) -> None:
    assert maglev_slots(n, CFG.maglev_max_slots) == slots


def test_maglev_slots_with_a_small_cap_and_no_endpoint() -> None:
    assert maglev_slots(10, 211) == 211
    assert maglev_slots(300, 211) == 307
    with pytest.raises(InvalidInput):
        maglev_slots(0, 211)


def test_maglev_owners_are_the_maglev_table() -> None:
    owners = maglev_owners([("b", 1), ("a", 3)], 101)
    assert owners == build_table([Backend("a", 3), Backend("b", 1)], 101).names()
    assert Counter(owners) == {"a": 76, "b": 25}


# -- one service's plan ---------------------------------------------------------


def shard_of(chain: str, version: int, protocol: str) -> str:
    return backends_map(version, protocol, int(chain[-16:], 16) % BACKEND_SHARDS)


def test_plan_random_service() -> None:
    plan = plan_service(svc("web"), eps("10.88.0.3", "10.88.0.2"), CFG)
    chain = object_name("svc", "web/tcp/80/ipv4")
    backends = shard_of(chain, 4, "tcp")
    assert plan.chains == {
        chain: service_plan.ChainSpec(
            "service:web:tcp/80:ipv4",
            (f"dnat ip to ip daddr . tcp dport . numgen random mod 2 map @{backends}",),
        )
    }
    assert plan.elements == {
        (backends, "10.96.0.10 . 80 . 0"): "10.88.0.2 . 8080",
        (backends, "10.96.0.10 . 80 . 1"): "10.88.0.3 . 8080",
        ("service_ips4", "10.96.0.10 . tcp . 80"): f"goto {chain}",
    }
    assert plan.members == {
        ("service_hairpin4", "10.88.0.2 . 10.88.0.2 . 10.96.0.10"),
        ("service_hairpin4", "10.88.0.3 . 10.88.0.3 . 10.96.0.10"),
    }
    assert plan.sets == {} and plan.maps == {}
    assert all(NAME.fullmatch(n) for n in plan.names())


def test_plan_roundrobin_udp_ipv6() -> None:
    spec = svc("dns", ServicePort(53, 5353, "udp"), vips=("fd00:96::53",), lb="roundrobin")
    plan = plan_service(spec, eps("fd00:88::2", "fd00:88::1"), CFG)
    chain, rules = chain_of(plan, "service:dns:udp/53:ipv6")
    backends = shard_of(chain, 6, "udp")
    assert rules == (f"dnat ip6 to ip6 daddr . udp dport . numgen inc mod 2 map @{backends}",)
    assert plan.elements[(backends, "fd00:96::53 . 53 . 0")] == "fd00:88::1 . 5353"
    assert plan.elements[(backends, "fd00:96::53 . 53 . 1")] == "fd00:88::2 . 5353"
    assert plan.elements[("service_ips6", "fd00:96::53 . udp . 53")] == f"goto {chain}"
    assert ("service_hairpin6", "fd00:88::1 . fd00:88::1 . fd00:96::53") in plan.members


def test_plan_dual_stack_balances_each_family_to_its_own_endpoints() -> None:
    spec = svc("web", vips=("10.96.0.10", "fd00:96::10"))
    plan = plan_service(spec, eps("10.88.0.2", "10.88.0.3", "fd00:88::2"), CFG)
    slots = {k[1]: v for k, v in plan.elements.items() if k[0].startswith("service_backends")}
    assert slots == {
        "10.96.0.10 . 80 . 0": "10.88.0.2 . 8080",
        "10.96.0.10 . 80 . 1": "10.88.0.3 . 8080",
        "fd00:96::10 . 80 . 0": "fd00:88::2 . 8080",
    }
    assert chain_of(plan, "service:web:tcp/80:ipv6")[1][0].endswith(
        f"numgen random mod 1 map @{shard_of(object_name('svc', 'web/tcp/80/ipv6'), 6, 'tcp')}"
    )


def test_plan_every_vip_gets_the_slots() -> None:
    spec = svc("web", vips=("10.96.0.10", "10.96.1.10"))
    plan = plan_service(spec, eps("10.88.0.2"), CFG)
    assert sorted(k[1] for k in plan.elements if k[0].startswith("service_backends")) == [
        "10.96.0.10 . 80 . 0",
        "10.96.1.10 . 80 . 0",
    ]


def test_plan_without_endpoints_rejects() -> None:
    spec = svc("web", ServicePort(80, 8080), ServicePort(53, 53, "udp"))
    plan = plan_service(spec, eps("10.88.0.2", weight=0), CFG)
    assert chain_of(plan, "service:web:tcp/80:ipv4")[1] == (
        "meta l4proto tcp reject with tcp reset",
    )
    assert chain_of(plan, "service:web:udp/53:ipv4")[1] == ("reject",)
    assert plan.members == frozenset()
    assert set(m for m, _ in plan.elements) == {"service_ips4"}


def test_plan_skips_unready_and_zero_weight_and_merges_duplicates() -> None:
    endpoints = (
        Endpoint(IP("10.88.0.2"), ready=False),
        Endpoint(IP("10.88.0.3"), weight=0),
        Endpoint(IP("10.88.0.4"), weight=1),
        Endpoint(IP("10.88.0.4"), weight=2),
        Endpoint(IP("10.88.0.5"), weight=1),
    )
    plan = plan_service(svc("web"), endpoints, CFG)
    chain, rules = chain_of(plan, "service:web:tcp/80:ipv4")
    assert rules[0].endswith(f"numgen random mod 4 map @{shard_of(chain, 4, 'tcp')}")
    owners = [v for k, v in sorted(plan.elements.items()) if k[0].startswith("service_backends")]
    assert owners == [
        "10.88.0.4 . 8080",
        "10.88.0.5 . 8080",
        "10.88.0.4 . 8080",
        "10.88.0.4 . 8080",
    ]


def test_plan_refuses_negative_weight() -> None:
    with pytest.raises(InvalidInput, match="weight -1"):
        plan_service(svc("web"), eps("10.88.0.2", weight=-1), CFG)


def test_plan_headless_has_no_objects() -> None:
    spec = replace(svc("web"), headless=True)
    assert plan_service(spec, eps("10.88.0.2"), CFG) == EMPTY_PLAN


def test_plan_host_port_marks_and_has_its_own_slots() -> None:
    port = ServicePort(443, 8443, host_port=30443)
    plan = plan_service(svc("web", port, vips=()), eps("10.88.0.2", "fd00:88::2"), CFG)
    for version, address in ((4, "10.88.0.2"), (6, "fd00:88::2")):
        hp, rules = chain_of(plan, f"service:web:tcp/443:ipv{version}:host-port 30443")
        ipx, table = (
            ("ip", "service_host_ports4_tcp")
            if version == 4
            else ("ip6", "service_host_ports6_tcp")
        )
        assert rules == (
            f"meta mark set meta mark | 0x00100000 dnat {ipx} to tcp dport . numgen random "
            f"mod 1 map @{table}",
        )
        assert plan.elements[(table, "30443 . 0")] == f"{address} . 8443"
        assert plan.elements[(f"service_nodeports{version}", "tcp . 30443")] == f"goto {hp}"
    assert plan.members == frozenset()  # hairpin through a host port is masqueraded anyway
    assert not [k for k in plan.elements if k[0].startswith(("service_ips", "service_backends"))]


def test_plan_host_port_of_a_rule_chain_goes_to_it() -> None:
    port = ServicePort(443, 8443, host_port=30443)
    for spec, endpoints in ((svc("web", port, affinity=60), eps("10.88.0.2")),
                            (svc("web", port), ())):  # fmt: skip
        plan = plan_service(spec, endpoints, CFG)
        chain, _ = chain_of(plan, "service:web:tcp/443:ipv4")
        _, rules = chain_of(plan, "service:web:tcp/443:ipv4:host-port 30443")
        assert rules == (f"meta mark set meta mark | 0x00100000 goto {chain}",)
        assert not [k for k in plan.elements if k[0].startswith("service_host_ports")]


def test_plan_affinity_checks_first_and_records_the_choice() -> None:
    plan = plan_service(svc("web", affinity=600), eps("10.88.0.2", "10.88.0.3"), CFG)
    af2 = object_name("af", "web/tcp/80/ipv4", "10.88.0.2", "8080", "600")
    af3 = object_name("af", "web/tcp/80/ipv4", "10.88.0.3", "8080", "600")
    label = "service:web:tcp/80:ipv4:affinity"
    assert plan.sets == {
        af2: service_plan.SetSpec("ipv4_addr", 600, f"{label} 10.88.0.2:8080"),
        af3: service_plan.SetSpec("ipv4_addr", 600, f"{label} 10.88.0.3:8080"),
    }
    to2 = f"update @{af2} {{ ip saddr }} meta l4proto tcp dnat ip to 10.88.0.2:8080"
    to3 = f"update @{af3} {{ ip saddr }} meta l4proto tcp dnat ip to 10.88.0.3:8080"
    assert chain_of(plan, "service:web:tcp/80:ipv4")[1] == (
        f"ip saddr @{af2} {to2}",
        f"ip saddr @{af3} {to3}",
        f"numgen random mod 2 < 1 {to2}",
        to3,
        "meta l4proto tcp dnat ip to 10.88.0.3:8080",  # if 10.88.0.3's set is full
    )


def test_plan_affinity_timeout_is_part_of_the_set_name() -> None:
    short = plan_service(svc("web", affinity=60), eps("10.88.0.2"), CFG)
    long = plan_service(svc("web", affinity=3600), eps("10.88.0.2"), CFG)
    assert set(short.sets).isdisjoint(long.sets)
    assert set(short.chains) == set(long.chains)


def test_plan_maglev() -> None:
    spec = svc("web", lb="maglev")
    endpoints = (Endpoint(IP("10.88.0.2"), weight=3), Endpoint(IP("10.88.0.3")))
    plan = plan_service(spec, endpoints, CFG)
    [(table, spec_map)] = plan.maps.items()
    assert table == object_name("mg", "web/tcp/80/ipv4", "1601")
    assert spec_map.comment == "service:web:tcp/80:ipv4:maglev"
    assert chain_of(plan, "service:web:tcp/80:ipv4")[1] == (
        f"jhash ip saddr . th sport . ip daddr . th dport mod 1601 seed 0x706f646e vmap @{table}",
    )
    ep2, rules2 = chain_of(plan, "service:web:tcp/80:ipv4:endpoint 10.88.0.2:8080")
    ep3, rules3 = chain_of(plan, "service:web:tcp/80:ipv4:endpoint 10.88.0.3:8080")
    assert rules2 == ("meta l4proto tcp dnat ip to 10.88.0.2:8080",)
    assert rules3 == ("meta l4proto tcp dnat ip to 10.88.0.3:8080",)
    assert list(spec_map.elements) == [str(i) for i in range(1601)]
    owners = maglev_owners([("10.88.0.2", 3), ("10.88.0.3", 1)], 1601)
    expected = {"10.88.0.2": f"goto {ep2}", "10.88.0.3": f"goto {ep3}"}
    assert list(spec_map.elements.values()) == [expected[o] for o in owners]


def test_plan_maglev_with_affinity_records_in_the_endpoint_chain() -> None:
    plan = plan_service(svc("web", lb="maglev", affinity=60), eps("10.88.0.2"), CFG)
    [af] = plan.sets
    _, rules = chain_of(plan, "service:web:tcp/80:ipv4:endpoint 10.88.0.2:8080")
    assert rules == (
        f"update @{af} {{ ip saddr }} meta l4proto tcp dnat ip to 10.88.0.2:8080",
        "meta l4proto tcp dnat ip to 10.88.0.2:8080",
    )
    assert chain_of(plan, "service:web:tcp/80:ipv4")[1][0].startswith(f"ip saddr @{af} update")


def test_plan_names_are_stable_and_distinct() -> None:
    a = plan_service(svc("web"), eps("10.88.0.2"), CFG)
    assert a == plan_service(svc("web"), eps("10.88.0.2"), CFG)
    others = [
        svc("api"),
        svc("web", ServicePort(81, 8080)),
        svc("web", ServicePort(80, 8080, "udp")),
        svc("web", vips=("fd00::1",)),
    ]
    for other in others:
        assert set(plan_service(other, eps("10.88.0.2", "fd00::2"), CFG).chains).isdisjoint(
            a.chains
        )


def test_plan_config_changes_the_mark_and_seed() -> None:
    cfg = ServicesConfig("podnet", masquerade_mark=0x10, maglev_seed=7)
    port = ServicePort(80, 8080, host_port=30080)
    plan = plan_service(svc("web", port, lb="maglev"), eps("10.88.0.2"), cfg)
    rules = [r for c in plan.chains.values() for r in c.rules]
    assert any("meta mark | 0x00000010 goto" in r for r in rules)
    assert any("seed 0x00000007 vmap" in r for r in rules)


# -- full sync -------------------------------------------------------------------


def full(state: ServicesState, existing: Inventory | None = None) -> Transaction:
    return render_full(CFG, state.services.values(), state.endpoints, existing=existing)


WEB = svc("web", ServicePort(80, 8080, host_port=30080), affinity=60)
DNS = svc("dns", ServicePort(53, 53, "udp"), vips=("10.96.0.53", "fd00::53"), lb="maglev")
STATE = ServicesState.of(
    [WEB, DNS], {"web": eps("10.88.0.2", "10.88.0.3"), "dns": eps("10.88.0.5", "fd00::5")}
)


def test_full_sync_order_and_acceptance() -> None:
    tx = full(STATE, Inventory())
    kinds = [" ".join(c.split()[:2]) for c in tx.commands]
    assert tx.commands[0] == "add table inet podnet"
    first_service = next(i for i, c in enumerate(tx.commands) if NAME.search(c))
    assert "add rule" in kinds[first_service - 1]  # the fixed layout comes first
    last_rule = max(i for i, k in enumerate(kinds) if k == "add rule")
    assert all(k == "add element" for k in kinds[last_rule + 1 :])
    assert not any(k.startswith("delete") for k in kinds)
    assert not any(
        k == "flush chain" and NAME.search(c) for k, c in zip(kinds, tx.commands, strict=True)
    )
    model = applied(tx)
    assert model.sets["service_nodeports4"] == {
        "tcp . 30080": f"goto {object_name('hp', 'web/tcp/80/ipv4', '30080')}"
    }
    assert len(model.sets["service_ips4"]) == 2 and len(model.sets["service_ips6"]) == 1


def test_full_sync_without_inventory_flushes_everything_and_is_repeatable() -> None:
    tx = full(STATE)
    plans = [plan_service(s, STATE.endpoints[s.name], CFG) for s in (WEB, DNS)]
    for plan in plans:
        for name in plan.chains:
            assert f"flush chain inet podnet {name}" in tx.commands
        for name in plan.maps:
            assert f"flush map inet podnet {name}" in tx.commands
    once = applied(full(STATE, Inventory()))
    twice = applied(full(STATE, Inventory()), tx, tx)
    assert twice.snapshot() == once.snapshot()


def test_full_sync_deletes_leftovers_last_and_flushes_only_what_exists() -> None:
    model = applied(full(STATE, Inventory()))
    smaller = ServicesState.of([WEB], {"web": eps("10.88.0.2")})
    existing = model.inventory()
    tx = full(smaller, existing)
    gone = [c for c in tx.commands if c.startswith("delete")]
    assert gone == tx.commands[-len(gone) :]
    order = [c.split()[1] for c in gone]
    assert order == sorted(order, key=["map", "set", "chain"].index)
    dns_chains = set(plan_service(DNS, STATE.endpoints["dns"], CFG).chains)
    assert {c.split()[-1] for c in gone if " chain " in c} >= dns_chains
    model.apply(tx.render())
    assert model.snapshot() == applied(full(smaller, Inventory())).snapshot()
    new_only = ServicesState.of([svc("api", vips=("10.96.0.7",))], {})
    api_chain = object_name("svc", "api/tcp/80/ipv4")
    assert f"flush chain inet podnet {api_chain}" not in full(new_only, existing).commands


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([svc("a"), svc("b", ServicePort(81, 81))], "virtual IP 10.96.0.10"),
        ([svc("a"), svc("a", vips=("10.96.0.11",))], "listed twice"),
        (
            [
                svc("a", ServicePort(80, 80, host_port=30000)),
                svc("b", ServicePort(80, 80, host_port=30000), vips=("10.96.0.11",)),
            ],
            "both claim '30000 . 0' in service_host_ports4_tcp",
        ),
    ],
)
def test_full_sync_refuses_conflicts(specs: list[ServiceSpec], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        render_full(CFG, specs, {"a": eps("10.88.0.2"), "b": eps("10.88.0.3")})


def test_full_sync_allows_a_vip_shared_with_a_headless_service() -> None:
    headless = replace(svc("b"), headless=True)
    assert render_full(CFG, [svc("a"), headless], {})


def test_inventory_from_nft_json_keeps_only_service_objects() -> None:
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"name": "podnet"}},
            {"chain": {"name": "services"}},
            {"chain": {"name": "svc-0123456789abcdef"}},
            {"chain": {"name": "ep-0123456789abcdef"}},
            {"chain": {"name": "hp-0123456789abcdef"}},
            {"chain": {"name": "svc-0123456789abcdeg"}},
            {"chain": {"name": "svc-0123456789ABCDEF"}},
            {"set": {"name": "af-0123456789abcdef"}},
            {"set": {"name": "service_hairpin4"}},
            {"map": {"name": "mg-0123456789abcdef"}},
            {"map": {"name": "af-0123456789abcdee"}},
            {"rule": {"chain": "svc-0123456789abcdef"}},
        ]
    }
    assert Inventory.from_nft_json(listing) == Inventory(
        chains=frozenset({"svc-0123456789abcdef", "ep-0123456789abcdef", "hp-0123456789abcdef"}),
        sets=frozenset({"af-0123456789abcdef"}),
        maps=frozenset({"mg-0123456789abcdef"}),
    )
    assert Inventory.from_nft_json(None) == Inventory()


# -- incremental changes ---------------------------------------------------------


def test_changes_nothing_to_do() -> None:
    assert not render_changes(CFG, STATE, STATE)
    copied = ServicesState.of(
        [replace(WEB), replace(DNS)], {k: tuple(v) for k, v in STATE.endpoints.items()}
    )
    assert not render_changes(CFG, STATE, copied)
    assert not render_changes(CFG, ServicesState(), ServicesState())


def test_changes_one_endpoint_replaced_touches_elements_only() -> None:
    old = ServicesState.of(
        [svc("web"), svc("api", vips=("10.96.0.7",))],
        {"web": eps("10.88.0.2", "10.88.0.3"), "api": eps("10.88.0.9")},
    )
    new = replace(old, endpoints={**old.endpoints, "web": eps("10.88.0.2", "10.88.0.4")})
    backends = shard_of(object_name("svc", "web/tcp/80/ipv4"), 4, "tcp")
    assert render_changes(CFG, old, new).commands == [
        f"delete element inet podnet {backends} {{ 10.96.0.10 . 80 . 1 }}",
        "delete element inet podnet service_hairpin4 { 10.88.0.3 . 10.88.0.3 . 10.96.0.10 }",
        f"add element inet podnet {backends} {{ 10.96.0.10 . 80 . 1 : 10.88.0.4 . 8080 }}",
        "add element inet podnet service_hairpin4 { 10.88.0.4 . 10.88.0.4 . 10.96.0.10 }",
    ]


def test_changes_one_endpoint_more_rewrites_the_modulus() -> None:
    old = ServicesState.of([svc("web")], {"web": eps("10.88.0.2")})
    new = ServicesState.of([svc("web")], {"web": eps("10.88.0.2", "10.88.0.3")})
    chain = object_name("svc", "web/tcp/80/ipv4")
    backends = shard_of(chain, 4, "tcp")
    assert render_changes(CFG, old, new).commands == [
        f"flush chain inet podnet {chain}",
        f"add rule inet podnet {chain} dnat ip to ip daddr . tcp dport . numgen random mod 2 "
        f"map @{backends}",
        f"add element inet podnet {backends} {{ 10.96.0.10 . 80 . 1 : 10.88.0.3 . 8080 }}",
        "add element inet podnet service_hairpin4 { 10.88.0.3 . 10.88.0.3 . 10.96.0.10 }",
    ]


def test_changes_removing_a_service_unlinks_before_deleting() -> None:
    new = ServicesState.of([WEB], {"web": STATE.endpoints["web"]})
    tx = render_changes(CFG, STATE, new)
    verbs = [" ".join(c.split()[:2]) for c in tx.commands]
    assert verbs[:3] == ["delete element"] * 3  # dispatch keys, hairpin, nothing else first
    first_delete = verbs.index("delete map")
    assert set(verbs[first_delete:]) == {"delete map", "delete chain"}
    assert verbs[first_delete:].count("delete map") == 2  # the IPv4 and IPv6 Maglev tables
    flushed = {c.split()[-1] for c in tx.commands if c.startswith("flush chain")}
    deleted = {c.split()[-1] for c in tx.commands if c.startswith("delete chain")}
    assert flushed == deleted == set(plan_service(DNS, STATE.endpoints["dns"], CFG).chains)
    assert not any(n in c for n in plan_service(WEB, (), CFG).names() for c in tx.commands)
    model = applied(full(STATE, Inventory()))
    model.apply(tx.render())
    assert model.snapshot() == applied(full(new, Inventory())).snapshot()


def test_changes_reject_until_an_endpoint_comes() -> None:
    empty = ServicesState.of([svc("web")], {})
    ready = ServicesState.of([svc("web")], {"web": eps("10.88.0.2")})
    chain = object_name("svc", "web/tcp/80/ipv4")
    backends = shard_of(chain, 4, "tcp")
    forth = render_changes(CFG, empty, ready).commands
    assert forth == [
        f"flush chain inet podnet {chain}",
        f"add rule inet podnet {chain} dnat ip to ip daddr . tcp dport . numgen random mod 1 "
        f"map @{backends}",
        f"add element inet podnet {backends} {{ 10.96.0.10 . 80 . 0 : 10.88.0.2 . 8080 }}",
        "add element inet podnet service_hairpin4 { 10.88.0.2 . 10.88.0.2 . 10.96.0.10 }",
    ]
    back = render_changes(CFG, ready, empty).commands
    assert f"add rule inet podnet {chain} meta l4proto tcp reject with tcp reset" in back


def test_changes_maglev_endpoint_leaving_rewrites_only_its_slots() -> None:
    spec = svc("web", lb="maglev")
    old = ServicesState.of([spec], {"web": eps("10.88.0.2", "10.88.0.3", "10.88.0.4")})
    new = replace(old, endpoints={"web": eps("10.88.0.2", "10.88.0.3", "10.88.0.5")})
    tx = render_changes(CFG, old, new)
    [dropped] = [c for c in tx.commands if c.startswith("delete element inet podnet mg-")]
    moved = len(_items(dropped.split(" ", 5)[5]))
    assert 0 < moved < 1601 * 2 // 3
    gone = object_name("ep", "web/tcp/80/ipv4", "10.88.0.4", "8080")
    assert tx.commands[-1] == f"delete chain inet podnet {gone}"
    model = applied(full(old, Inventory()))
    model.apply(tx.render())
    assert model.snapshot() == applied(full(new, Inventory())).snapshot()


def test_changes_policy_and_timeout_changes_swap_objects() -> None:
    old = ServicesState.of([svc("web", affinity=60)], {"web": eps("10.88.0.2")})
    for changed in (svc("web", affinity=120), svc("web", lb="maglev"), svc("web")):
        new = ServicesState.of([changed], {"web": eps("10.88.0.2")})
        model = applied(full(old, Inventory()))
        model.apply(render_changes(CFG, old, new).render())
        assert model.snapshot() == applied(full(new, Inventory())).snapshot()


# -- properties: incremental == full, and every script is one nft accepts ------------

_NAMES = ["a", "b", "c", "d"]
_ADDRESSES = ["10.88.0.1", "10.88.0.2", "10.88.0.3", "10.88.0.4", "fd00:88::1", "fd00:88::2"]


@st.composite
def _service(draw: st.DrawFn, name: str, slot: int) -> ServiceSpec:
    # ``slot`` picks the VIPs and host ports: unique within a state, but a
    # VIP or host port can move from one service to another between states.
    v4, v6 = f"10.96.0.{slot}", f"fd00:96::{slot}"
    vips = draw(st.sampled_from([(), (v4,), (v6,), (v4, v6)]))
    choices = [
        ServicePort(80, 8080),
        ServicePort(53, draw(st.sampled_from([53, 5353])), "udp"),
        ServicePort(443, 8443, host_port=draw(st.sampled_from([None, 30000 + slot]))),
    ]
    ports = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3, unique=True))
    return ServiceSpec(
        name,
        tuple(ports),
        lb=draw(st.sampled_from(["random", "roundrobin", "maglev"])),
        affinity_timeout=draw(st.sampled_from([None, 60, 600])),
        headless=draw(st.sampled_from([False, False, False, True])),
        vips=tuple(IP(v) for v in vips),
    )


_ENDPOINT = st.builds(
    Endpoint,
    st.sampled_from(_ADDRESSES).map(IP),
    weight=st.integers(0, 3),
    ready=st.sampled_from([True, True, True, False]),
)


@st.composite
def _state(draw: st.DrawFn) -> ServicesState:
    names = draw(st.lists(st.sampled_from(_NAMES), unique=True, max_size=4))
    slots = draw(st.permutations(range(1, len(_NAMES) + 1)))
    specs = [draw(_service(n, slot)) for n, slot in zip(names, slots, strict=False)]
    endpoints = {n: tuple(draw(st.lists(_ENDPOINT, max_size=4))) for n in names}
    return ServicesState.of(specs, endpoints)


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_state(), _state())
def test_incremental_change_is_accepted_and_equals_a_full_sync(
    old: ServicesState, new: ServicesState
) -> None:
    model = applied(full(old, Inventory()))
    tx = render_changes(CFG, old, new)
    model.apply(tx.render())
    assert model.snapshot() == applied(full(new, Inventory())).snapshot()
    for name, spec in old.services.items():
        if new.services.get(name) == spec and new.endpoints.get(name, ()) == old.endpoints.get(
            name, ()
        ):
            owned = plan_service(spec, old.endpoints.get(name, ()), CFG).names()
            assert not [c for c in tx.commands for n in owned if n in c]


@_SETTINGS
@given(_state(), _state())
def test_full_sync_over_any_table_converges(old: ServicesState, new: ServicesState) -> None:
    model = applied(full(old, Inventory()))
    model.apply(full(new, model.inventory()).render())
    assert model.snapshot() == applied(full(new, Inventory())).snapshot()
    model.apply(full(new).render())
    assert model.snapshot() == applied(full(new, Inventory())).snapshot()


def test_the_model_refuses_what_nft_refuses() -> None:
    model = applied(full(STATE, Inventory()))
    web_chain = object_name("svc", "web/tcp/80/ipv4")
    for script in (
        f"delete chain inet podnet {web_chain}",  # still in the host-port chain's rule
        "add element inet podnet service_ips4 { 10.96.0.10 . tcp . 80 : goto services }",
        "delete element inet podnet service_ips4 { 10.96.0.99 . tcp . 80 }",
        f"delete set inet podnet {next(iter(plan_service(WEB, (), CFG).sets), 'x')}",
        "add rule inet podnet services goto nowhere",
    ):
        before = model.snapshot()
        with pytest.raises(NftRefused):
            model.apply(script)
        assert model.snapshot() == before
