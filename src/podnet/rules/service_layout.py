"""The fixed part of the service load balancer in podnet's table.

Theory of operation: every packet that enters nat prerouting or nat output
jumps to ``services``, which makes one verdict-map lookup per address family::

    services  (regular chain; jumped to from prerouting and output)
      ip  daddr . meta l4proto . th dport vmap @service_ips4       VIP . tcp . 80 : goto svc-…
      ip6 daddr . meta l4proto . th dport vmap @service_ips6
      ip  daddr != 127.0.0.0/8 fib daddr type local
          meta l4proto . th dport vmap @service_nodeports4         tcp . 30080 : goto hp-…
      ip6 daddr != ::1 fib daddr type local
          meta l4proto . th dport vmap @service_nodeports6

    service_masquerade  (regular chain; jumped to from postrouting)
      meta mark & MARK == MARK meta mark set meta mark & ~MARK masquerade fully-random
      ct status dnat ip  saddr . ip  daddr . ct original ip  daddr @service_hairpin4 masquerade …
      ct status dnat ip6 saddr . ip6 daddr . ct original ip6 daddr @service_hairpin6 masquerade …

A miss in every map falls through: the packet is not for a service. Host
ports (``ServicePort.host_port``) are matched on the node's own addresses but
never on loopback (as kube-proxy's nftables mode: DNAT from 127.0.0.1 needs
``route_localnet``, which opens the node to spoofed loopback traffic).

Two kinds of service traffic are masqueraded on the way out:

- host-port traffic, which ``hp-…`` chains mark with ``MARK``: the endpoint may
  be on another node, and its answer must come back through this one to be
  un-NATed (kube-proxy's ``externalTrafficPolicy: Cluster``). The mark bit is
  cleared again so it does not leak to later rules or other tables;
- hairpin: a pod that reaches a service VIP and is balanced to itself. The
  set holds ``endpoint . endpoint . VIP`` for every endpoint of every VIP, so
  after DNAT the test "source == destination == an endpoint, of this VIP" is
  one hash lookup (nft cannot compare two packet fields directly).

Endpoints live in *backend maps* (nft ``typeof`` maps, one per family,
protocol and shard, so ``service_backends4_tcp_00`` … ``_3f``)::

    VIP . port . slot : endpoint . target port      10.96.0.10 . 80 . 3 : 10.88.0.7 . 8080

and ``service_host_ports4_tcp`` etc., keyed ``host port . slot``. A service
chain DNATs through its shard with ``numgen … mod SLOTS``; replacing an
endpoint then changes map elements only. That matters: adding a rule with
a DNAT or a verdict element makes the kernel re-validate every chain
reachable from a base chain (40 ms at 10,000 services with a rule per
endpoint), while elements of a map whose values are not verdicts do not.

The per-service objects (``svc-``, ``hp-``, ``ep-`` chains, ``af-`` sets,
``mg-`` maps) are described in :mod:`podnet.rules.service_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

from podnet.errors import InvalidInput
from podnet.lb.maglev import check_size
from podnet.rules.transaction import Rule, Transaction

__all__ = [
    "ADDR_TYPE",
    "BACKEND_SHARDS",
    "HAIRPIN_SET",
    "IPS_MAP",
    "IPX",
    "MASQUERADE_CHAIN",
    "NODEPORTS_MAP",
    "SERVICES_CHAIN",
    "SYNCED_SET",
    "ServicesConfig",
    "backends_map",
    "declare_static",
    "hook_rules",
    "host_ports_map",
]

SERVICES_CHAIN = "services"
#: An always-empty set a full sync declares: listing it is cheap at any scale
#: (nft 1.0.6 fetches every set element of the table to list a chain: seconds
#: with 10,000 services), and its absence means the services part is gone.
SYNCED_SET = "services_synced"
MASQUERADE_CHAIN = "service_masquerade"
IPS_MAP = {4: "service_ips4", 6: "service_ips6"}
NODEPORTS_MAP = {4: "service_nodeports4", 6: "service_nodeports6"}
HAIRPIN_SET = {4: "service_hairpin4", 6: "service_hairpin6"}
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
IPX = {4: "ip", 6: "ip6"}
PROTOCOLS = ("tcp", "udp")

#: Backend maps per address family and protocol. The kernel checks every
#: element added to a map against every rule that uses the map, so one map
#: for all services would make a full sync quadratic (35 s at 10,000 services
#: of 10 endpoints); 64 of them keep that to ~160 rules per map.
BACKEND_SHARDS = 64


def backends_map(version: int, protocol: str, shard: int) -> str:
    """``VIP . port . slot -> endpoint . port`` for one shard of services."""
    return f"service_backends{version}_{protocol}_{shard:02x}"


def host_ports_map(version: int, protocol: str) -> str:
    """``host port . slot -> endpoint . port``, for services published on host ports."""
    return f"service_host_ports{version}_{protocol}"


def _backend_maps() -> list[tuple[str, str, str]]:
    """(name, key, data) of every backend map, as ``typeof`` expressions."""
    maps = []
    for v in (4, 6):
        for proto in PROTOCOLS:
            ipx, data = IPX[v], f"{IPX[v]} daddr . {proto} dport"
            for shard in range(BACKEND_SHARDS):
                key = f"{ipx} daddr . {proto} dport . numgen inc mod 2"
                maps.append((backends_map(v, proto, shard), key, data))
            maps.append((host_ports_map(v, proto), f"{proto} dport . numgen inc mod 2", data))
    return maps


_LOOPBACK = {4: "127.0.0.0/8", 6: "::1"}
_U32 = 0xFFFFFFFF

#: Default Maglev table size cap: the largest prime below 2**14. A service
#: gets ``100 * next_power_of_two(N)`` slots (rounded up to a prime) until the
#: cap, so up to 128 endpoints keep 100+ slots each; past that each endpoint
#: still gets ``floor`` or ``ceil(M/N)`` slots (``M/N = 64`` at 256 endpoints).
#: Every slot is one element of an nft map, so the cap bounds memory and the
#: time to load a map (16381 elements: a few milliseconds in nft).
MAGLEV_MAX_SLOTS = 16381


@dataclass(frozen=True, slots=True)
class ServicesConfig:
    """Knobs of the service load balancer; every node must use the same ones.

    Attributes:
        table: podnet's nft table (family ``inet``), from the settings.
        masquerade_mark: the one packet-mark bit that asks ``service_masquerade``
            to masquerade (host-port traffic); pick a bit no other software on
            the node uses.
        maglev_seed: the 32-bit ``jhash`` seed; equal on every node, so a flow
            hashes to the same slot, hence the same endpoint, wherever it lands.
        maglev_max_slots: the largest Maglev table (a prime; see
            :data:`MAGLEV_MAX_SLOTS`).
        affinity_set_size: how many client addresses one endpoint's affinity
            set remembers at once; while it is full, new clients go to other
            endpoints (see :mod:`podnet.rules.service_plan`).

    Raises:
        InvalidInput: a name or number is out of range.
    """

    table: str
    masquerade_mark: int = 0x00100000
    maglev_seed: int = 0x706F646E
    maglev_max_slots: int = MAGLEV_MAX_SLOTS
    affinity_set_size: int = 65535

    def __post_init__(self) -> None:
        Transaction(self.table)  # validates the name
        mark = self.masquerade_mark
        if not isinstance(mark, int) or not 0 < mark <= _U32 or mark & (mark - 1):
            raise InvalidInput(
                f"service masquerade mark {mark!r} is not a single bit of the 32-bit packet mark",
                hint="use a power of two such as 0x00100000",
            )
        if not isinstance(self.maglev_seed, int) or not 0 <= self.maglev_seed <= _U32:
            raise InvalidInput(f"Maglev seed {self.maglev_seed!r} is not a 32-bit number")
        check_size(self.maglev_max_slots, 1)
        if not isinstance(self.affinity_set_size, int) or self.affinity_set_size < 1:
            raise InvalidInput(f"affinity set size {self.affinity_set_size!r} must be at least 1")

    @property
    def mark(self) -> str:
        return f"{self.masquerade_mark:#010x}"

    @property
    def unmark(self) -> str:
        return f"{self.masquerade_mark ^ _U32:#010x}"


def hook_rules() -> list[Rule]:
    """The rules podnet's base chains need to reach the services chains.

    Append them to the ``prerouting`` and ``output`` (nat, dstnat) and
    ``postrouting`` (nat, srcnat) chains of :mod:`podnet.rules.ruleset`,
    after its own rules, in the same transaction that fills those chains.
    The chains they jump to must exist by then: on the first start, put
    them after the commands of ``render_full`` in that transaction.
    """
    return [
        Rule("prerouting", f"jump {SERVICES_CHAIN}", "services"),
        Rule("output", f"jump {SERVICES_CHAIN}", "services"),
        Rule("postrouting", f"jump {MASQUERADE_CHAIN}", "services"),
    ]


def _dispatch_rules() -> list[Rule]:
    rules = []
    for v in (4, 6):
        ipx = IPX[v]
        rules.append(
            Rule(SERVICES_CHAIN, f"{ipx} daddr . meta l4proto . th dport vmap @{IPS_MAP[v]}")
        )
    for v in (4, 6):
        rules.append(
            Rule(
                SERVICES_CHAIN,
                f"{IPX[v]} daddr != {_LOOPBACK[v]} fib daddr type local "
                f"meta l4proto . th dport vmap @{NODEPORTS_MAP[v]}",
            )
        )
    return rules


def _masquerade_rules(config: ServicesConfig) -> list[Rule]:
    mark = config.mark
    rules = [
        Rule(
            MASQUERADE_CHAIN,
            f"meta mark & {mark} == {mark} meta mark set meta mark & {config.unmark} "
            "masquerade fully-random",
            "host-ports",
        )
    ]
    for v in (4, 6):
        ipx = IPX[v]
        rules.append(
            Rule(
                MASQUERADE_CHAIN,
                f"ct status dnat {ipx} saddr . {ipx} daddr . ct original {ipx} daddr "
                f"@{HAIRPIN_SET[v]} masquerade fully-random",
                "hairpin",
            )
        )
    return rules


def declare_static(tx: Transaction, config: ServicesConfig) -> Transaction:
    """Declare the fixed chains, maps and sets, empty them, and fill the chains.

    Emptying the dispatch maps and hairpin sets is what a full sync wants; an
    incremental transaction never calls this.
    """
    for name in (SERVICES_CHAIN, MASQUERADE_CHAIN):
        tx.add_chain(name, comment="podnet services")
    for v in (4, 6):
        addr = ADDR_TYPE[v]
        tx.add_map(IPS_MAP[v], f"{addr} . inet_proto . inet_service", "verdict")
        tx.add_map(NODEPORTS_MAP[v], "inet_proto . inet_service", "verdict")
        tx.add_set(HAIRPIN_SET[v], f"{addr} . {addr} . {addr}")
    tx.add_set(SYNCED_SET, "ipv4_addr", comment="podnet: services synced")
    backends = _backend_maps()
    for name, key, data in backends:
        tx.add_map(name, key, data, typeof=True)
    for name in (SERVICES_CHAIN, MASQUERADE_CHAIN):
        tx.flush_chain(name)
    for v in (4, 6):
        tx.flush_map(IPS_MAP[v])
        tx.flush_map(NODEPORTS_MAP[v])
        tx.flush_set(HAIRPIN_SET[v])
    for name, _, _ in backends:
        tx.flush_map(name)
    tx.add_rules(_dispatch_rules())
    tx.add_rules(_masquerade_rules(config))
    return tx
