"""The in-kernel L4 service load balancer, rendered as nft transactions (pure).

Theory of operation
-------------------
Everything lives in podnet's own table (``inet``, its name a setting). A new
connection to a service makes one verdict-map lookup from (destination,
protocol, port) to the service's chain, which picks an endpoint and DNATs to
it; conntrack carries the rest of the connection, so only first packets see
these chains. The fixed part — the ``services`` dispatch chain, the maps it
looks up, and masquerading — is described in
:mod:`~podnet.rules.service_layout`; what one service adds (its chains,
affinity sets and Maglev table) in :mod:`~podnet.rules.service_plan`.

Two entry points produce :class:`~podnet.rules.transaction.Transaction`
objects, applied with one ``nft -f -`` each:

- :func:`render_full` — the whole services part of the table, for start-up
  and for recovering from a failed incremental update. Given an
  :class:`Inventory` of what the kernel holds, it deletes leftovers and
  flushes only what exists; affinity sets keep their clients.
- :func:`render_changes` — only the services whose spec or endpoints differ
  between two :class:`ServicesState` values: shared-map keys are deleted
  and added one by one, and only that service's chains, sets and maps are
  flushed, filled or deleted, in an order nft accepts
  (:mod:`~podnet.rules.service_sync`). The table is never flushed. The old
  state must be what the kernel holds; if nft refuses a change (it refuses
  the whole transaction), do a full sync.

The ruleset's base chains reach all this through :func:`hook_rules`.

Choices, with the measurements behind them (nft 1.0.6, Linux 6.18, 2 vCPUs;
``bench/services_nft.py`` measures the rest):

- endpoints are elements, not rules: a service port is one chain with one
  DNAT rule through a shared backend map (``VIP . port . slot -> endpoint``),
  so replacing an endpoint changes two elements. A rule with a DNAT, or a
  verdict element, makes the kernel re-validate every chain reachable from a
  base chain (40 ms at 10,000 services with one rule per endpoint); plain
  elements do not. The maps are sharded because the kernel checks each
  element against every rule using its map.
- no per-endpoint chains and no inline ``numgen … vmap { … }`` maps as in
  kube-proxy: inline maps are anonymous sets, which the kernel names by
  scanning every set of the table (70 s to load 10,000 services of 10
  endpoints instead of 6 s); and nft lists every chain of the table before
  every change. Named per-service sets would cost a scan per reference
  (9 s for one map per service), so only Maglev tables and affinity sets,
  which need them, are per service.
- hairpin traffic is found after DNAT in a set of ``endpoint . endpoint .
  VIP`` elements, instead of a mark rule per endpoint; host-port traffic,
  which may leave for another node, is marked and masqueraded.
- no endpoint: the service chain rejects (TCP reset, ICMP port unreachable)
  instead of letting the packet reach nothing. ``reject`` in prerouting needs
  Linux 5.9; deleting a chain in the transaction that unlinks it needs 6.2.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from podnet.errors import InvalidInput
from podnet.model.network import IPAddress
from podnet.model.service import Endpoint, ServiceSpec
from podnet.rules.service_layout import ServicesConfig, hook_rules
from podnet.rules.service_plan import EMPTY_PLAN, ServicePlan, plan_service
from podnet.rules.service_sync import Inventory, change_transaction, full_transaction
from podnet.rules.transaction import Transaction

__all__ = [
    "Inventory",
    "ServicePlan",
    "ServicesConfig",
    "ServicesState",
    "hook_rules",
    "plan_service",
    "render_changes",
    "render_full",
]


@dataclass(frozen=True, slots=True)
class ServicesState:
    """Services and their ready endpoints, as one sync saw them.

    Build it with :meth:`of`. Keep the spec and endpoint objects of services
    that did not change: :func:`render_changes` skips them by identity before
    comparing values, which keeps a change among 10,000 services cheap.
    """

    services: Mapping[str, ServiceSpec] = field(default_factory=dict)
    endpoints: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)

    @staticmethod
    def of(
        services: Iterable[ServiceSpec],
        endpoints: Mapping[str, Iterable[Endpoint]] | None = None,
    ) -> ServicesState:
        """Index services by name, with each one's endpoints (none if absent).

        Raises:
            InvalidInput: two services have the same name.
        """
        by_name: dict[str, ServiceSpec] = {}
        for spec in services:
            if by_name.setdefault(spec.name, spec) is not spec:
                raise InvalidInput(f"service {spec.name!r} is listed twice")
        given = endpoints or {}
        eps = {name: _tuple(given[name]) for name in by_name if name in given}
        return ServicesState(by_name, eps)


def _tuple(items: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    return items if isinstance(items, tuple) else tuple(items)


def render_full(
    config: ServicesConfig,
    services: Iterable[ServiceSpec],
    endpoints: Mapping[str, Iterable[Endpoint]],
    *,
    existing: Inventory | None = None,
) -> Transaction:
    """The transaction that makes the services part of the table match.

    Args:
        config: the table and knobs.
        services: every service, its ``vips`` filled in.
        endpoints: the endpoints of each service, by service name; not-ready
            and weight-0 endpoints are skipped.
        existing: what the kernel holds now (``Inventory.from_nft_json`` of
            ``nft -j list table``); per-service objects it lists that are no
            longer wanted are deleted. None when unknown: nothing is deleted
            and every per-service chain and map is flushed before filling.

    Returns:
        One transaction; it declares the table and the fixed objects too.

    Raises:
        InvalidInput: two services share a name, a VIP, a VIP port or a host
            port; an endpoint weight is negative or too large.
    """
    state = ServicesState.of(services, endpoints)
    _check_vips(state.services.values())
    plans = [
        (name, plan_service(spec, state.endpoints.get(name, ()), config))
        for name, spec in sorted(state.services.items())
    ]
    return full_transaction(config, plans, existing)


def render_changes(
    config: ServicesConfig,
    old: ServicesState,
    new: ServicesState,
    *,
    only: Collection[str] | None = None,
) -> Transaction:
    """The transaction that moves the kernel from ``old`` to ``new``.

    Only services whose spec or endpoints differ are compiled and touched;
    an empty transaction means there is nothing to do. Uniqueness of VIPs and
    host ports is not re-checked here (that would read every service): the
    caller admits services, and :func:`render_full` checks. ``only``: the
    services that may differ, when the caller knows (the others are not even
    compared); None: compare them all.

    Raises:
        InvalidInput: an endpoint weight is negative or too large.
    """
    if only is None:
        changed = [name for name in new.services if _differs(old, new, name)]
        changed += [name for name in old.services if name not in new.services]
    else:
        changed = [
            name
            for name in only
            if (name in new.services and _differs(old, new, name))
            or (name in old.services and name not in new.services)
        ]
    pairs = [(_plan(config, old, name), _plan(config, new, name)) for name in sorted(changed)]
    return change_transaction(config, pairs)


def _differs(old: ServicesState, new: ServicesState, name: str) -> bool:
    spec, was = new.services[name], old.services.get(name)
    eps, had = new.endpoints.get(name, ()), old.endpoints.get(name, ())
    same_spec = was is spec or was == spec
    return not (same_spec and (had is eps or had == eps))


def _plan(config: ServicesConfig, state: ServicesState, name: str) -> ServicePlan:
    spec = state.services.get(name)
    if spec is None:
        return EMPTY_PLAN
    return plan_service(spec, state.endpoints.get(name, ()), config)


def _check_vips(specs: Iterable[ServiceSpec]) -> None:
    owners: dict[IPAddress, str] = {}
    for spec in specs:
        if spec.headless:
            continue
        for vip in spec.vips:
            other = owners.setdefault(vip, spec.name)
            if other != spec.name:
                raise InvalidInput(
                    f"services {other!r} and {spec.name!r} both have virtual IP {vip}",
                    hint="give every service its own virtual IP",
                )
