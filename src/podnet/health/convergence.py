"""How long a health check takes to notice: the bounds to print next to measurements.

Model: checks start every ``interval`` on a fixed grid (see
:mod:`podnet.health.schedule`) and each ends within ``timeout`` (at most the
interval). An endpoint that dies fails every later check; it is removed when
``unhealthy_threshold`` (N) checks in a row have failed.

* Fastest: it dies just before a check starts, and failures are immediate
  (the process is gone, the port answers with a reset): the N-th failing
  check starts ``(N - 1) * interval`` later and fails at once.
* Slowest: it dies just after a check passed, and failures take the whole
  timeout (the host is gone, packets vanish): the next check starts one
  interval later, the N-th failing one at ``N * interval``, and fails at
  ``N * interval + timeout``.

Recovery is the same with ``healthy_threshold`` (M) passes, which answer
at once: from ``(M - 1) * interval`` to ``M * interval``.

Not included: a check waiting for the concurrency limit, network round
trips, and pushing the change into the kernel or the proxy. Passive
failures reported by the proxy can only make detection faster.
"""

from __future__ import annotations

import math

from podnet.model.service import HealthCheck

__all__ = ["expected_detection_time", "expected_recovery_time"]


def expected_detection_time(check: HealthCheck) -> tuple[float, float]:
    """Seconds from an endpoint dying to it being marked unhealthy, as (min, max).

    Kind ``none`` never detects anything: ``(inf, inf)``.
    """
    if check.kind == "none":
        return math.inf, math.inf
    n = check.unhealthy_threshold
    return (n - 1) * check.interval, n * check.interval + check.timeout


def expected_recovery_time(check: HealthCheck) -> tuple[float, float]:
    """Seconds from an endpoint answering again to it being marked healthy, as (min, max).

    Kind ``none`` is always healthy: ``(0, 0)``.
    """
    if check.kind == "none":
        return 0.0, 0.0
    m = check.healthy_threshold
    return (m - 1) * check.interval, m * check.interval
