"""Declarative topology files: ``podnet up -f FILE``.

A YAML file names networks and pods (in the spirit of docker compose and
containerlab). :func:`load` turns it into validated NetworkRequests and
PodSpecs owned by ``topology:<name>``, or raises :class:`TopologyError` listing
every problem with its line and a fix; :func:`plan_changes` compares it with
what exists. :func:`schema_text` is the published JSON Schema of the format.
"""

from podnet.topology.diff import Changes, plan_changes
from podnet.topology.loader import Topology, load, loads, owner_of
from podnet.topology.problems import Problem, TopologyError
from podnet.topology.schema import schema_text

__all__ = [
    "Changes",
    "Problem",
    "Topology",
    "TopologyError",
    "load",
    "loads",
    "owner_of",
    "plan_changes",
    "schema_text",
]
