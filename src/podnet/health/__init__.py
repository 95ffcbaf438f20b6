"""Active health checking of service endpoints.

Pieces, from the bottom up:

* :mod:`~podnet.health.state` -- :class:`EndpointHealth`, one endpoint's state
  machine over check results (thresholds, initial state, passive failures);
  pure, the caller passes the time.
* :mod:`~podnet.health.response` -- the final status of an HTTP response head;
  pure.
* :mod:`~podnet.health.connect` -- how a probe connects, here or inside a
  pod's network namespace.
* :mod:`~podnet.health.probe` -- one TCP or HTTP check under a strict timeout.
* :mod:`~podnet.health.schedule` -- when each target's next check is due.
* :mod:`~podnet.health.monitor` -- :class:`HealthMonitor`, the asyncio tasks
  that check a changing set of targets and report state changes.
* :mod:`~podnet.health.convergence` -- how long detection takes, in theory.
"""

from __future__ import annotations

from podnet.health.connect import (
    Connector,
    SocketFactory,
    default_connector,
    netns_connector,
    netns_socket_factory,
    socket_connector,
)
from podnet.health.convergence import expected_detection_time, expected_recovery_time
from podnet.health.monitor import ChangeCallback, HealthMonitor, Target, TargetKey, connector_for
from podnet.health.probe import TIMEOUT, ProbeResult, probe
from podnet.health.state import EndpointHealth, HealthState, HealthStatus, Result

__all__ = [
    "TIMEOUT",
    "ChangeCallback",
    "Connector",
    "EndpointHealth",
    "HealthMonitor",
    "HealthState",
    "HealthStatus",
    "ProbeResult",
    "Result",
    "SocketFactory",
    "Target",
    "TargetKey",
    "connector_for",
    "default_connector",
    "expected_detection_time",
    "expected_recovery_time",
    "netns_connector",
    "netns_socket_factory",
    "probe",
    "socket_connector",
]
