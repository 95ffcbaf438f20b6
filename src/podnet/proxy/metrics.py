"""The proxy's counters and latency histogram, rendered as Prometheus text (format 0.0.4). Pure.

One :class:`Metrics` per worker process; the engine calls the recording
methods as things happen and serves :meth:`Metrics.render` on ``/metrics``.
Recording is a dict update (and a bisect for latencies); label values are
escaped only when rendering. Families (every one is always listed, with HELP
and TYPE, so a scraper sees the full schema before the first request):

* ``podnet_proxy_requests_total{route,backend,code_class}`` counter
* ``podnet_proxy_request_duration_seconds{route,backend}`` histogram
* ``podnet_proxy_retries_total{route,backend}`` counter
* ``podnet_proxy_ejections_total{backend,endpoint}`` counter
* ``podnet_proxy_overflow_total{route,backend}`` counter (circuit breaker 503s)
* ``podnet_proxy_upstream_errors_total{backend,endpoint,kind}`` counter
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

__all__ = ["BUCKETS", "Metrics", "code_class", "escape_label", "merge_expositions"]

#: Upper bounds (seconds) of the latency histogram: 0.5 ms to 10 s, roughly 1-2.5-5 steps.
BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_NO_GAUGES: Mapping[str, float] = MappingProxyType({})
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

_Labels = tuple[str, ...]


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")


def code_class(status: int) -> str:
    """The ``code_class`` label: "2xx" for 200-299 and so on; "other" outside 100-599."""
    return _CLASSES[status // 100] if 100 <= status <= 599 else "other"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(float(value))


def _labels(names: tuple[str, ...], values: _Labels, extra: str = "") -> str:
    parts = [f'{n}="{escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; last: above 10 s
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds


class _Family:
    __slots__ = ("help", "kind", "labels", "name")

    def __init__(self, name: str, kind: str, labels: tuple[str, ...], help_text: str) -> None:
        self.name = name
        self.kind = kind
        self.labels = labels
        self.help = help_text

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


_REQUESTS = _Family(
    "podnet_proxy_requests_total",
    "counter",
    ("route", "backend", "code_class"),
    "Requests answered, by route, backend and status class.",
)
_DURATION = _Family(
    "podnet_proxy_request_duration_seconds",
    "histogram",
    ("route", "backend"),
    "Time from request head to response end, by route and backend.",
)
_RETRIES = _Family(
    "podnet_proxy_retries_total",
    "counter",
    ("route", "backend"),
    "Retries sent, by route and the backend retried to.",
)
_EJECTIONS = _Family(
    "podnet_proxy_ejections_total",
    "counter",
    ("backend", "endpoint"),
    "Endpoints ejected by outlier detection.",
)
_OVERFLOW = _Family(
    "podnet_proxy_overflow_total",
    "counter",
    ("route", "backend"),
    "Requests refused with 503 by a circuit breaker.",
)
_ERRORS = _Family(
    "podnet_proxy_upstream_errors_total",
    "counter",
    ("backend", "endpoint", "kind"),
    "Failed upstream attempts, by kind (connect-failure, reset, timeout, ...).",
)


class Metrics:
    """Counters and the latency histogram of one worker."""

    __slots__ = ("_durations", "_ejections", "_errors", "_overflow", "_requests", "_retries")

    def __init__(self) -> None:
        self._requests: dict[_Labels, int] = {}
        self._durations: dict[_Labels, _Histogram] = {}
        self._retries: dict[_Labels, int] = {}
        self._ejections: dict[_Labels, int] = {}
        self._overflow: dict[_Labels, int] = {}
        self._errors: dict[_Labels, int] = {}

    def request(self, *, route: str, backend: str, status: int, seconds: float) -> None:
        key = (route, backend, code_class(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        hist = self._durations.get((route, backend))
        if hist is None:
            hist = self._durations[(route, backend)] = _Histogram()
        hist.observe(seconds)

    def retry(self, *, route: str, backend: str) -> None:
        key = (route, backend)
        self._retries[key] = self._retries.get(key, 0) + 1

    def ejection(self, *, backend: str, endpoint: str) -> None:
        key = (backend, endpoint)
        self._ejections[key] = self._ejections.get(key, 0) + 1

    def overflow(self, *, route: str, backend: str) -> None:
        key = (route, backend)
        self._overflow[key] = self._overflow.get(key, 0) + 1

    def upstream_error(self, *, backend: str, endpoint: str, kind: str) -> None:
        key = (backend, endpoint, kind)
        self._errors[key] = self._errors.get(key, 0) + 1

    def render(self, gauges: Mapping[str, float] = _NO_GAUGES) -> bytes:
        """Everything in the text exposition format, then ``gauges``.

        A gauge key is a metric name, optionally followed by a label set
        written in the text format (``podnet_proxy_in_flight{backend="b"}``);
        keys sharing a name form one family.
        """
        lines: list[str] = []
        for family, values in (
            (_REQUESTS, self._requests),
            (_RETRIES, self._retries),
            (_EJECTIONS, self._ejections),
            (_OVERFLOW, self._overflow),
            (_ERRORS, self._errors),
        ):
            lines += family.header()
            for labels, count in sorted(values.items()):
                lines.append(f"{family.name}{_labels(family.labels, labels)} {count}")
        lines += _DURATION.header()
        for labels, hist in sorted(self._durations.items()):
            self._render_histogram(lines, labels, hist)
        lines += _render_gauges(gauges)
        return ("\n".join(lines) + "\n").encode()

    @staticmethod
    def _render_histogram(lines: list[str], labels: _Labels, hist: _Histogram) -> None:
        name = _DURATION.name
        cumulative = 0
        for bound, count in zip((*BUCKETS, math.inf), hist.buckets, strict=True):
            cumulative += count
            le = 'le="' + _number(bound) + '"' if bound != math.inf else 'le="+Inf"'
            lines.append(f"{name}_bucket{_labels(_DURATION.labels, labels, le)} {cumulative}")
        lines.append(f"{name}_sum{_labels(_DURATION.labels, labels)} {_number(hist.sum)}")
        lines.append(f"{name}_count{_labels(_DURATION.labels, labels)} {hist.count}")


def _render_gauges(gauges: Mapping[str, float]) -> list[str]:
    by_name: dict[str, list[tuple[str, float]]] = {}
    for key, value in gauges.items():
        name = key.partition("{")[0]
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"gauge {key!r} is not a Prometheus metric name")
        by_name.setdefault(name, []).append((key, value))
    lines: list[str] = []
    for name in sorted(by_name):
        lines.append(f"# TYPE {name} gauge")
        lines += [f"{key} {_number(value)}" for key, value in sorted(by_name[name])]
    return lines


#: Gauges that are not summed over workers: the newest value wins (max).
_NOT_SUMMED: Final = ("podnet_proxy_snapshot_version",)


def merge_expositions(texts: Sequence[str]) -> str:
    """Several workers' ``/metrics`` as one: samples with the same name and
    labels are added (counters, histogram buckets, sums and counts, and gauges
    such as connections or requests in flight), except :data:`_NOT_SUMMED`,
    whose maximum is taken. ``# HELP``/``# TYPE`` lines are kept once, and the
    order is that of first appearance."""
    order: list[str] = []
    comments: set[str] = set()
    values: dict[str, float] = {}
    for text in texts:
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                if line not in comments:
                    comments.add(line)
                    order.append(line)
                continue
            series, _, value = line.rpartition(" ")
            number = float(value)
            if series not in values:
                order.append(series)
                values[series] = number
            elif series.startswith(_NOT_SUMMED):
                values[series] = max(values[series], number)
            else:
                values[series] += number
    out = [line if line in comments else f"{line} {_number(values[line])}" for line in order]
    return "\n".join(out) + "\n"
