"""Service plans to nft transactions: a full sync, or only what changed.

Theory of operation: nft applies a transaction in order and refuses all of it
if any command fails, and the kernel refuses to delete a chain, set or map
that something still refers to. So every transaction here is built in five
phases, each complete for all services before the next begins:

1. *unlink* — delete the shared-map keys, hairpin elements and Maglev slots
   that go away or change value (a key cannot be re-added with a new value
   while it exists: nft answers "File exists");
2. *declare* — add the new chains, sets and maps (empty);
3. *rewrite* — flush the chains whose rules change or that go away, and add
   the rules of changed and new chains (they may name objects of phase 2);
4. *link* — add the keys, elements and slots that are new or changed (they
   point at chains that now exist and are filled);
5. *delete* — delete the maps, then the sets, then the chains that go away:
   by now no rule, map element or slot refers to them.

On kernels before 6.2 a deleted map element keeps its chain referenced for a
short while (kube-proxy's nftables mode defers chain deletion by a second
for that reason); podnet needs 6.2 or later for phase 5 to succeed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import InvalidInput
from podnet.rules.service_layout import ServicesConfig, declare_static
from podnet.rules.service_plan import MAGLEV_KEY, ServicePlan
from podnet.rules.transaction import Rule, Transaction

__all__ = ["Inventory", "change_transaction", "full_transaction"]

_OWNED = {
    "chain": re.compile(r"(svc|hp|ep)-[0-9a-f]{16}"),
    "set": re.compile(r"af-[0-9a-f]{16}"),
    "map": re.compile(r"mg-[0-9a-f]{16}"),
}


@dataclass(frozen=True, slots=True)
class Inventory:
    """The per-service objects that exist in the kernel, by name.

    Read from ``nft -j list table inet TABLE`` with :meth:`from_nft_json`. Only
    names of the exact shape podnet gives them count (``svc-`` and 16 hex
    digits, ...), in podnet's own table: nft 1.0.6 leaves chain comments out
    of its JSON, so the name's shape is what is left to recognise them by.
    """

    chains: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()
    maps: frozenset[str] = frozenset()

    @staticmethod
    def from_nft_json(listing: Mapping[str, Any] | None) -> Inventory:
        """Collect the per-service objects of one table's JSON listing (None: no table)."""
        found: dict[str, set[str]] = {"chain": set(), "set": set(), "map": set()}
        for item in (listing or {}).get("nftables", []):
            for kind, names in found.items():
                name = item.get(kind, {}).get("name") if isinstance(item, dict) else None
                if isinstance(name, str) and _OWNED[kind].fullmatch(name):
                    names.add(name)
        return Inventory(
            frozenset(found["chain"]), frozenset(found["set"]), frozenset(found["map"])
        )


@dataclass(slots=True)
class _Phases:
    """The five phases of one transaction, filled service by service."""

    config: ServicesConfig
    drop: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    declare: Transaction = field(init=False)
    rewrite: Transaction = field(init=False)
    link: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    gone: dict[str, list[str]] = field(default_factory=lambda: {"map": [], "set": [], "chain": []})

    def __post_init__(self) -> None:
        self.declare = Transaction(self.config.table)
        self.rewrite = Transaction(self.config.table)

    def declare_objects(self, plan: ServicePlan, skip: ServicePlan | None = None) -> None:
        tx = self.declare
        for name, chain in plan.chains.items():
            if skip is None or name not in skip.chains:
                tx.add_chain(name, comment=chain.comment)
        for name, s in plan.sets.items():
            if skip is None or name not in skip.sets:
                tx.add_set(
                    name,
                    s.type,
                    ("dynamic", "timeout"),
                    timeout=s.timeout,
                    size=self.config.affinity_set_size,
                    comment=s.comment,
                )
        for name, m in plan.maps.items():
            if skip is None or name not in skip.maps:
                tx.add_map(name, MAGLEV_KEY, "verdict", typeof=True, comment=m.comment)

    def fill(self, chain: str, rules: Iterable[str], *, flush: bool) -> None:
        if flush:
            self.rewrite.flush_chain(chain)
        self.rewrite.add_rules(Rule(chain, expr) for expr in rules)

    def transaction(self, head: Transaction | None = None) -> Transaction:
        tx = head if head is not None else Transaction(self.config.table)
        for name, keys in self.drop.items():
            tx.delete_elements(name, keys)
        tx.commands += self.declare.commands
        tx.commands += self.rewrite.commands
        for name, items in self.link.items():
            tx.add_elements(name, items)
        for name in self.gone["map"]:
            tx.delete_map(name)
        for name in self.gone["set"]:
            tx.delete_set(name)
        for name in self.gone["chain"]:
            tx.delete_chain(name)
        return tx


def change_transaction(
    config: ServicesConfig, changes: Iterable[tuple[ServicePlan, ServicePlan]]
) -> Transaction:
    """The transaction that turns every ``old`` plan into its ``new`` one.

    It touches nothing else: unchanged services, and the shared maps and sets
    beyond the keys these plans hold, are left as they are.
    """
    phases = _Phases(config)
    for old, new in changes:
        _diff(phases, old, new)
    return phases.transaction()


def _diff(phases: _Phases, old: ServicePlan, new: ServicePlan) -> None:
    for key, verdict in old.elements.items():
        if new.elements.get(key) != verdict:
            phases.drop[key[0]].append(key[1])
    for set_name, element in old.members - new.members:
        phases.drop[set_name].append(element)
    for name, was in old.maps.items():
        now = new.maps.get(name)
        if now is not None:
            phases.drop[name] += [k for k, v in was.elements.items() if now.elements.get(k) != v]
    phases.declare_objects(new, skip=old)
    for name, chain in old.chains.items():
        after = new.chains.get(name)
        if after is None:
            phases.fill(name, (), flush=True)
        elif after.rules != chain.rules:
            phases.fill(name, after.rules, flush=True)
    for name, chain in new.chains.items():
        if name not in old.chains:
            phases.fill(name, chain.rules, flush=False)
    for name, now in new.maps.items():
        was_elements = old.maps[name].elements if name in old.maps else {}
        phases.link[name] += [
            f"{k} : {v}" for k, v in now.elements.items() if was_elements.get(k) != v
        ]
    for key, verdict in new.elements.items():
        if old.elements.get(key) != verdict:
            phases.link[key[0]].append(f"{key[1]} : {verdict}")
    for set_name, element in sorted(new.members - old.members):
        phases.link[set_name].append(element)
    phases.gone["map"] += [n for n in old.maps if n not in new.maps]
    phases.gone["set"] += [n for n in old.sets if n not in new.sets]
    phases.gone["chain"] += [n for n in old.chains if n not in new.chains]


def full_transaction(
    config: ServicesConfig, plans: Sequence[tuple[str, ServicePlan]], existing: Inventory | None
) -> Transaction:
    """The transaction that makes the services part of the table exactly ``plans``.

    Args:
        config: the table and knobs.
        plans: ``(service name, plan)`` for every service.
        existing: the per-service objects in the kernel now; those not in any
            plan are deleted, and only existing chains and maps are flushed.
            None when unknown: every chain and map is flushed, nothing is
            deleted (leftovers stay until a sync that knows about them).

    Raises:
        InvalidInput: two services claim the same VIP, port or host port, or
            (practically impossible) two objects hash to the same name.
    """
    _check_unique(plans)
    phases = _Phases(config)
    for _, plan in plans:
        phases.declare_objects(plan)
    for _, plan in plans:
        for name, chain in plan.chains.items():
            phases.fill(name, chain.rules, flush=existing is None or name in existing.chains)
        for name, m in plan.maps.items():
            if existing is None or name in existing.maps:
                phases.rewrite.flush_map(name)
            phases.link[name] += [f"{k} : {v}" for k, v in m.elements.items()]
        for key, verdict in plan.elements.items():
            phases.link[key[0]].append(f"{key[1]} : {verdict}")
        for set_name, element in sorted(plan.members):
            phases.link[set_name].append(element)
    if existing is not None:
        _drop_leftovers(phases, plans, existing)
    head = declare_static(Transaction(config.table).add_table(), config)
    return phases.transaction(head)


def _drop_leftovers(
    phases: _Phases, plans: Sequence[tuple[str, ServicePlan]], existing: Inventory
) -> None:
    chains = {n for _, p in plans for n in p.chains}
    sets = {n for _, p in plans for n in p.sets}
    maps = {n for _, p in plans for n in p.maps}
    for name in sorted(existing.chains - chains):
        phases.fill(name, (), flush=True)
        phases.gone["chain"].append(name)
    phases.gone["set"] += sorted(existing.sets - sets)
    phases.gone["map"] += sorted(existing.maps - maps)


def _check_unique(plans: Sequence[tuple[str, ServicePlan]]) -> None:
    owners: dict[object, str] = {}
    for service, plan in plans:
        for thing in (*plan.elements, *plan.names()):
            other = owners.setdefault(thing, service)
            if other != service:
                what = f"{thing[1]!r} in {thing[0]}" if isinstance(thing, tuple) else repr(thing)
                raise InvalidInput(
                    f"services {other!r} and {service!r} both claim {what}",
                    hint="give every service its own virtual IP and host ports",
                )
