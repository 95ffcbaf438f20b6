"""What ``podnet up`` must change: a topology (desired) against what exists.

Ownership decides what may be touched. Only objects whose ``owner`` is the
topology's are replaced or removed; a name in the file that exists under
another owner (another topology, or made by hand) is a conflict, refused before
anything changes. Nothing is compared against the kernel: ``networks`` and
``pods`` are the agent's desired state.

A network is replaced when what the file pins down differs: an explicit subnet,
the IP versions, internal, masquerade, mtu, an explicit bridge name, labels.
"Automatic" matches anything (an auto subnet matches any existing subnet of
that version, a missing bridge name any bridge). Pods on a replaced network
are replaced too, since their veths go with the bridge. A pod is replaced when
any field of its spec differs except the agent-resolved ``interfaces``.

Apply in this order: remove pods, remove and replace networks, add networks,
replace and add pods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol, TypeVar

from podnet.errors import Conflict
from podnet.model import Network, NetworkRequest, PodSpec
from podnet.topology.loader import Topology

__all__ = ["Changes", "plan_changes"]


class _Owned(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def owner(self) -> str: ...


_New = TypeVar("_New", bound=_Owned)
_Old = TypeVar("_Old", bound=_Owned)

#: PodSpec fields that make a difference; ``interfaces`` is resolved by the agent.
_POD_FIELDS = tuple(f.name for f in fields(PodSpec) if f.name not in {"name", "interfaces"})


@dataclass(frozen=True)
class Changes:
    """The plan: what to add, replace (delete and create again) and remove.

    ``reasons`` maps ``"network NAME"`` / ``"pod NAME"`` of each replaced object
    to why, e.g. ``"command changed"``.
    """

    add_networks: tuple[NetworkRequest, ...] = ()
    replace_networks: tuple[NetworkRequest, ...] = ()
    remove_networks: tuple[str, ...] = ()
    add_pods: tuple[PodSpec, ...] = ()
    replace_pods: tuple[PodSpec, ...] = ()
    remove_pods: tuple[str, ...] = ()
    reasons: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def empty(self) -> bool:
        """True when the existing state already matches the file."""
        return not (
            self.add_networks
            or self.replace_networks
            or self.remove_networks
            or self.add_pods
            or self.replace_pods
            or self.remove_pods
        )

    def summary(self) -> list[str]:
        """One line per change: ``+ network front``, ``~ pod web-1 (command changed)``."""
        lines = [f"+ network {n.name}" for n in self.add_networks]
        lines += [self._replaced("network", n.name) for n in self.replace_networks]
        lines += [f"- network {name}" for name in self.remove_networks]
        lines += [f"+ pod {p.name}" for p in self.add_pods]
        lines += [self._replaced("pod", p.name) for p in self.replace_pods]
        lines += [f"- pod {name}" for name in self.remove_pods]
        return lines

    def _replaced(self, kind: str, name: str) -> str:
        reason = self.reasons.get(f"{kind} {name}")
        return f"~ {kind} {name} ({reason})" if reason else f"~ {kind} {name}"


def plan_changes(
    topology: Topology, networks: Sequence[Network], pods: Sequence[PodSpec]
) -> Changes:
    """Compare a topology with every network and pod podnet has.

    Args:
        topology: the loaded file.
        networks: all existing networks (any owner), subnets resolved.
        pods: all existing pods (any owner).

    Returns:
        The changes; ``Changes.empty`` when there is nothing to do.

    Raises:
        Conflict: a network or pod of the file exists under another owner.
    """
    _refuse_foreign(topology, networks, pods)
    reasons: dict[str, str] = {}
    have_nets = {n.name: n for n in networks}
    add_nets, replace_nets = _split(
        topology.networks, have_nets, _network_changes, "network", reasons
    )
    replaced = {n.name for n in replace_nets}
    have_pods = {p.name: p for p in pods}

    def pod_changes(new: PodSpec, old: PodSpec) -> list[str]:
        moved = [f"network {a.network} replaced" for a in new.attachments if a.network in replaced]
        return _pod_changes(new, old) + moved

    add_pods, replace_pods = _split(topology.pods, have_pods, pod_changes, "pod", reasons)
    return Changes(
        add_networks=tuple(add_nets),
        replace_networks=tuple(replace_nets),
        remove_networks=_leftovers(topology, [n.name for n in topology.networks], networks),
        add_pods=tuple(add_pods),
        replace_pods=tuple(replace_pods),
        remove_pods=_leftovers(topology, [p.name for p in topology.pods], pods),
        reasons=reasons,
    )


def _split(
    wanted: Sequence[_New],
    have: Mapping[str, _Old],
    changes: Callable[[_New, _Old], list[str]],
    kind: str,
    reasons: dict[str, str],
) -> tuple[list[_New], list[_New]]:
    """Sort wanted objects into (to add, to replace), noting why each is replaced."""
    add: list[_New] = []
    replace: list[_New] = []
    for new in wanted:
        old = have.get(new.name)
        if old is None:
            add.append(new)
        elif differences := changes(new, old):
            replace.append(new)
            reasons[f"{kind} {new.name}"] = _because(differences)
    return add, replace


def _because(differences: list[str]) -> str:
    plain = [d for d in differences if " " not in d]
    other = [d for d in differences if " " in d]
    return ", ".join(([", ".join(plain) + " changed"] if plain else []) + other)


def _leftovers(topology: Topology, wanted: list[str], have: Sequence[_Owned]) -> tuple[str, ...]:
    keep = set(wanted)
    return tuple(sorted(o.name for o in have if o.owner == topology.owner and o.name not in keep))


def _refuse_foreign(
    topology: Topology, networks: Sequence[Network], pods: Sequence[PodSpec]
) -> None:
    owners = {("network", n.name): n.owner for n in networks}
    owners.update({("pod", p.name): p.owner for p in pods})
    wanted = [("network", n.name) for n in topology.networks]
    wanted += [("pod", p.name) for p in topology.pods]
    clashes = [
        f"{kind} {name!r} already exists, {_owned_by(owners[kind, name])}"
        for kind, name in wanted
        if (kind, name) in owners and owners[kind, name] != topology.owner
    ]
    if clashes:
        raise Conflict(
            "; ".join(clashes),
            hint=f"rename them in {topology.source}, or remove the existing ones first",
        )


def _owned_by(owner: str) -> str:
    return f"owned by {owner}" if owner else "made outside any topology (no owner)"


def _network_changes(new: NetworkRequest, old: Network) -> list[str]:
    changed = [] if _subnets_match(new, old) else ["subnets"]
    if new.internal != old.internal:
        changed.append("internal")
    if (new.masquerade and not new.internal) != old.masquerade:
        changed.append("masquerade")
    if new.mtu != old.mtu:
        changed.append("mtu")
    if new.bridge is not None and new.bridge != old.bridge:
        changed.append("bridge")
    if dict(new.labels) != dict(old.labels):
        changed.append("labels")
    return changed


def _subnets_match(new: NetworkRequest, old: Network) -> bool:
    for version in (4, 6):
        explicit = next((s for s in new.subnets if s.version == version), None)
        have = old.subnet_for(version)
        if explicit is None and not new.wants_auto(version):
            if have is not None:
                return False
        elif have is None or (explicit is not None and explicit != have):
            return False
    return True


def _pod_changes(new: PodSpec, old: PodSpec) -> list[str]:
    return [f for f in _POD_FIELDS if _plain(getattr(new, f)) != _plain(getattr(old, f))]


def _plain(value: object) -> object:
    """Compare mappings as dicts and sequences as tuples, whatever their types."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):
        return tuple(value)
    return value
