"""Services, pods and health as the store holds them, kept current from watch
events, so that a services sync costs what changed rather than what exists.

Reading 10,000 services back from the store and re-deriving every service's
ready endpoints takes seconds; one endpoint change must reach the kernel in
milliseconds. So the index lists the three prefixes once, then follows the
store's watch events and re-derives only the services an event can affect:

* ``/services/NAME`` — that service;
* ``/health/NAME/IP`` — that service;
* ``/pods/NAME`` — the services whose selector matches the pod's labels before
  or after the change, found through an index of selector terms.

Unchanged services keep their spec and endpoint *objects* from one
:meth:`ServiceIndex.state` to the next: :func:`~podnet.rules.services.render_changes`
skips them by identity. When the store's history no longer reaches back to the
index's revision (compaction), the index lists everything again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from podnet.controller.state import Keys
from podnet.errors import StoreConflict
from podnet.lb.endpoints import endpoints_of, ready_endpoints
from podnet.model.pod import PodSpec
from podnet.model.service import Endpoint, ServiceSpec
from podnet.rules.services import ServicesState
from podnet.store.base import Event, Store

__all__ = ["ServiceIndex"]

_PREFIXES = (Keys.SERVICES, Keys.PODS, Keys.HEALTH)
Term = tuple[str, str]


class ServiceIndex:
    """The services part of the store, in memory, with ready endpoints derived.

    Not thread-safe: the reconciler calls it under its lock.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.revision: int | None = None  # the store revision the index reflects
        self._specs: dict[str, ServiceSpec] = {}
        self._pods: dict[str, PodSpec] = {}
        self._health: defaultdict[str, dict[str, str]] = defaultdict(dict)
        self._services_by_term: defaultdict[Term, set[str]] = defaultdict(set)
        self._pods_by_term: defaultdict[Term, set[str]] = defaultdict(set)
        self._ready: dict[str, tuple[Endpoint, ...]] = {}
        self._state = ServicesState()
        self._pending: set[str] | None = None  # changed since take_changes(); None: all

    # -- reading the store -----------------------------------------------------------------

    def refresh(self) -> None:
        """Catch up with the store (first call, or history compacted: read it all)."""
        if self.revision is None:
            self._load()
            return
        now = self.store.revision()
        if now == self.revision:
            return
        try:
            events = [e for p in _PREFIXES for e in self.store.watch(p, self.revision, timeout=0)]
        except StoreConflict:
            self._load()
            return
        events.sort(key=lambda e: e.revision)
        dirty: set[str] = set()
        for event in events:
            self._apply(event, dirty)
        # Events past ``now`` may be half seen (one prefix read before them, one
        # after); watching again from ``now`` replays them, and replay is harmless.
        self.revision = now
        self._derive(dirty)
        if self._pending is not None:
            self._pending |= dirty

    def take_changes(self) -> frozenset[str] | None:
        """The services whose spec or ready endpoints may have changed since the
        previous call (None: any of them — the index was re-read meanwhile)."""
        taken, self._pending = self._pending, set()
        return None if taken is None else frozenset(taken)

    def _load(self) -> None:
        revision = self.store.revision()
        self._specs = {
            e.key.removeprefix(Keys.SERVICES): ServiceSpec.from_dict(e.value)
            for e in self.store.list(Keys.SERVICES)
        }
        self._pods = {
            e.key.removeprefix(Keys.PODS): PodSpec.from_dict(e.value)
            for e in self.store.list(Keys.PODS)
        }
        self._health = defaultdict(dict)
        for e in self.store.list(Keys.HEALTH):
            service, _, address = e.key.removeprefix(Keys.HEALTH).partition("/")
            self._health[service][address] = str(e.value.get("state", "unknown"))
        self._services_by_term = defaultdict(set)
        for spec in self._specs.values():
            self._index_service(spec, add=True)
        self._pods_by_term = defaultdict(set)
        for pod in self._pods.values():
            self._index_pod(pod, add=True)
        self.revision = revision
        self._pending = None
        self._ready = {}
        self._state = ServicesState()
        self._derive(set(self._specs))

    def _apply(self, event: Event, dirty: set[str]) -> None:
        key, value = event.key, event.value
        if key.startswith(Keys.SERVICES):
            name = key.removeprefix(Keys.SERVICES)
            old = self._specs.pop(name, None)
            if old is not None:
                self._index_service(old, add=False)
            if value is not None:
                spec = ServiceSpec.from_dict(value)
                self._specs[name] = spec
                self._index_service(spec, add=True)
            dirty.add(name)
        elif key.startswith(Keys.HEALTH):
            service, _, address = key.removeprefix(Keys.HEALTH).partition("/")
            if value is None:
                self._health[service].pop(address, None)
            else:
                self._health[service][address] = str(value.get("state", "unknown"))
            dirty.add(service)
        elif key.startswith(Keys.PODS):
            name = key.removeprefix(Keys.PODS)
            old_pod = self._pods.pop(name, None)
            if old_pod is not None:
                self._index_pod(old_pod, add=False)
                dirty |= self._selecting(old_pod.labels)
            if value is not None:
                pod = PodSpec.from_dict(value)
                self._pods[name] = pod
                self._index_pod(pod, add=True)
                dirty |= self._selecting(pod.labels)

    # -- indexes ----------------------------------------------------------------------------

    def _index_service(self, spec: ServiceSpec, *, add: bool) -> None:
        _index(self._services_by_term, spec.selector, spec.name, add=add)

    def _index_pod(self, pod: PodSpec, *, add: bool) -> None:
        _index(self._pods_by_term, pod.labels, pod.name, add=add)

    def _selecting(self, labels: Mapping[str, str]) -> set[str]:
        """Services whose selector matches ``labels``."""
        candidates: set[str] = set()
        for term in labels.items():
            candidates |= self._services_by_term.get(term, set())
        return {n for n in candidates if self._specs[n].selects(labels)}

    def _candidate_pods(self, spec: ServiceSpec) -> Iterable[PodSpec]:
        """Pods that may match ``spec``'s selector: those with its rarest term."""
        if not spec.selector:
            return ()
        sets: list[set[str]] = [self._pods_by_term.get(t, set()) for t in spec.selector.items()]
        rarest: set[str] = min(sets, key=len)
        return [self._pods[n] for n in sorted(rarest)]

    # -- derived state ------------------------------------------------------------------------

    def _derive(self, names: Iterable[str]) -> None:
        services = dict(self._state.services)
        endpoints = dict(self._state.endpoints)
        for name in names:
            spec = self._specs.get(name)
            if spec is None:
                services.pop(name, None)
                endpoints.pop(name, None)
                self._ready.pop(name, None)
                continue
            health = {(name, a): s for a, s in self._health.get(name, {}).items()}
            ready = tuple(
                ready_endpoints(spec, endpoints_of(spec, self._candidate_pods(spec)), health)
            )
            services[name] = spec
            if ready != self._ready.get(name):
                self._ready[name] = ready
            endpoints[name] = self._ready[name]
        self._state = ServicesState(services, endpoints)

    def state(self) -> ServicesState:
        """Every service with its ready endpoints, as of :attr:`revision`."""
        return self._state

    def specs(self) -> Mapping[str, ServiceSpec]:
        return self._specs

    def has_pods(self) -> bool:
        return bool(self._pods)

    def pods(self) -> list[PodSpec]:
        return list(self._pods.values())

    def health(self) -> dict[tuple[str, str], str]:
        """(service, endpoint address) -> health state, as ``Repository.health``."""
        return {(svc, a): st for svc, states in self._health.items() for a, st in states.items()}


def _index(
    by_term: defaultdict[Term, set[str]], terms: Mapping[str, str], name: str, *, add: bool
) -> None:
    """Add ``name`` under each ``key=value`` of ``terms`` (or take it away)."""
    for term in terms.items():
        if add:
            by_term[term].add(name)
        else:
            by_term[term].discard(name)
