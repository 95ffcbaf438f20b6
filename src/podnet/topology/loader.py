"""Topology files -> validated desired state.

Theory of operation: the text is composed into YAML nodes (positions kept,
duplicate keys caught), checked against the published JSON Schema, then built
into NetworkRequests and PodSpecs while the cross-checks run. Every stage adds
to one list of problems, and the file is rejected once, with all of them, each
at its line and with a fix. Nothing here touches the kernel or the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from podnet.errors import InvalidInput, NotFound
from podnet.model import NetworkRequest, PodSpec
from podnet.model.route import ProxySpec, RouteSpec
from podnet.model.service import ServiceSpec
from podnet.topology.checks import check_pods
from podnet.topology.fields import mapping, name_ok, text
from podnet.topology.networks import build_networks
from podnet.topology.pods import PodDraft, build_pods
from podnet.topology.problems import Problems, TopologyError
from podnet.topology.routes import build_proxies, build_routes
from podnet.topology.schema import check_schema
from podnet.topology.services import build_services
from podnet.topology.yamlmarks import Document, parse

__all__ = ["Topology", "load", "loads", "owner_of"]


def owner_of(name: str) -> str:
    """The owner tag of everything a topology creates: ``topology:<name>``."""
    return f"topology:{name}"


@dataclass(frozen=True)
class Topology:
    """A validated topology file: what ``podnet up`` should make exist.

    Every network and pod carries ``owner``; pods with replicas are already
    expanded and their attachments have interface names.
    """

    name: str
    source: str
    networks: tuple[NetworkRequest, ...]
    pods: tuple[PodSpec, ...]
    routes: tuple[RouteSpec, ...] = ()
    proxies: tuple[ProxySpec, ...] = ()
    services: tuple[ServiceSpec, ...] = ()

    @property
    def owner(self) -> str:
        """``topology:<name>``, the owner of every object the file declares."""
        return owner_of(self.name)

    def network(self, name: str) -> NetworkRequest | None:
        return next((n for n in self.networks if n.name == name), None)

    def pod(self, name: str) -> PodSpec | None:
        return next((p for p in self.pods if p.name == name), None)


def load(path: str | os.PathLike[str]) -> Topology:
    """Read and validate a topology file.

    Raises:
        NotFound: the file does not exist.
        TopologyError: the file has problems; each has a line, column and hint.
        InvalidInput: the file cannot be read.
    """
    source = os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"topology file {source} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read topology file {source}: {exc.strerror}") from None
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems = Problems(source)
        problems.add_at(line, 1, "the file is not UTF-8 text", "save it as UTF-8")
        raise TopologyError(problems.result()) from None
    return loads(content, source)


def loads(text: str, filename: str = "<string>") -> Topology:
    """Validate a topology given as text; ``filename`` is used in messages.

    Raises:
        TopologyError: listing every problem found, in file order.
    """
    problems = Problems(filename)
    doc = parse(text, problems)
    if doc is None:  # a syntax error: nothing more can be checked
        raise TopologyError(problems.result())
    problems.locator = doc
    check_schema(doc, problems)
    topology = _build(doc, filename, problems)
    problems.raise_if_any()
    return topology


def _build(doc: Document, filename: str, problems: Problems) -> Topology:
    data = mapping(doc.data)
    name = text(data.get("name"))
    if name is not None:
        name_ok("topology", name, ("name",), problems, key=False)
    owner = owner_of(name or "")
    networks = build_networks(data.get("networks"), owner, problems)
    pods = build_pods(data.get("pods"), problems)
    check_pods(pods, networks, problems)
    shaped = not len(problems)  # the model's checks of routes and proxies say less: last
    return Topology(
        name=name or "",
        source=filename,
        networks=tuple(d.request for d in networks.values()),
        pods=tuple(_expand(pods, owner, problems)),
        routes=tuple(build_routes(data.get("routes"), owner, problems, check=shaped)),
        proxies=tuple(build_proxies(data.get("proxies"), owner, problems, check=shaped)),
        services=tuple(build_services(data.get("services"), owner, problems)),
    )


def _expand(pods: list[PodDraft], owner: str, problems: Problems) -> list[PodSpec]:
    """Every replica's PodSpec, validated by the model's own checks.

    The loader's checks come first and say more; ``validate()`` is the last line,
    run only on a file that passed them.
    """
    specs = [(pod, spec) for pod in pods for spec in pod.specs(owner)]
    if len(problems):
        return [spec for _, spec in specs]
    for pod, spec in specs:
        try:
            spec.validate()
        except InvalidInput as exc:
            problems.add(pod.path, exc.message, exc.hint, key=True)
    return [spec for _, spec in specs]
