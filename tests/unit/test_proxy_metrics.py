"""Metrics: the rendered text parses back (Prometheus text format 0.0.4) to what was recorded."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.proxy.metrics import BUCKETS, Metrics, code_class, escape_label, merge_expositions

_LINE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def parse(
    text: bytes,
) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], dict[str, str]]:
    """Samples {(name, labels): value} and TYPE declarations; strict about line shapes."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    decoded = text.decode()
    assert decoded.endswith("\n")
    for line in decoded[:-1].split("\n"):  # only LF ends a line in the format
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"family {name} declared twice"
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = _LINE.fullmatch(line)
        assert m, f"bad sample line {line!r}"
        name, labels_text, value = m.groups()
        labels: list[tuple[str, str]] = []
        if labels_text:
            inner = labels_text[1:-1]
            pos = 0
            while pos < len(inner):
                lm = _LABEL.match(inner, pos)
                assert lm, f"bad labels {labels_text!r}"
                labels.append((lm.group(1), _unescape(lm.group(2))))
                pos = lm.end()
                if pos < len(inner):
                    assert inner[pos] == ","
                    pos += 1
        key = (name, frozenset(labels))
        assert key not in samples
        samples[key] = float(value)
    return samples, types


def lbl(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def test_every_family_is_declared_even_when_empty() -> None:
    samples, types = parse(Metrics().render())
    assert samples == {}
    assert types == {
        "podnet_proxy_requests_total": "counter",
        "podnet_proxy_request_duration_seconds": "histogram",
        "podnet_proxy_retries_total": "counter",
        "podnet_proxy_ejections_total": "counter",
        "podnet_proxy_overflow_total": "counter",
        "podnet_proxy_upstream_errors_total": "counter",
    }


def test_counters_round_trip() -> None:
    m = Metrics()
    m.request(route="r", backend="b", status=200, seconds=0.003)
    m.request(route="r", backend="b", status=204, seconds=0.004)
    m.request(route="r", backend="b", status=503, seconds=0.5)
    m.retry(route="r", backend="b")
    m.retry(route="r", backend="b")
    m.ejection(backend="b", endpoint="10.0.0.1:80")
    m.overflow(route="r", backend="b")
    m.upstream_error(backend="b", endpoint="[fd00::1]:80", kind="connect-failure")
    samples, _ = parse(m.render())
    assert (
        samples[("podnet_proxy_requests_total", lbl(route="r", backend="b", code_class="2xx"))] == 2
    )
    assert (
        samples[("podnet_proxy_requests_total", lbl(route="r", backend="b", code_class="5xx"))] == 1
    )
    assert samples[("podnet_proxy_retries_total", lbl(route="r", backend="b"))] == 2
    assert samples[("podnet_proxy_ejections_total", lbl(backend="b", endpoint="10.0.0.1:80"))] == 1
    assert samples[("podnet_proxy_overflow_total", lbl(route="r", backend="b"))] == 1
    key = lbl(backend="b", endpoint="[fd00::1]:80", kind="connect-failure")
    assert samples[("podnet_proxy_upstream_errors_total", key)] == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 30, allow_nan=False), max_size=50))
def test_histogram_is_cumulative_and_consistent(observations: list[float]) -> None:
    m = Metrics()
    for seconds in observations:
        m.request(route="r", backend="b", status=200, seconds=seconds)
    samples, _ = parse(m.render())
    if not observations:
        return
    name = "podnet_proxy_request_duration_seconds"
    previous = 0.0
    for bound in (*BUCKETS, math.inf):
        le = "+Inf" if bound == math.inf else None
        found = [
            v
            for (n, labels), v in samples.items()
            if n == name + "_bucket"
            and float(dict(labels)["le"]) == bound
            and (le is None or dict(labels)["le"] == le)
        ]
        assert len(found) == 1
        assert found[0] == sum(1 for s in observations if s <= bound)
        assert found[0] >= previous
        previous = found[0]
    assert samples[(name + "_count", lbl(route="r", backend="b"))] == len(observations)
    assert samples[(name + "_sum", lbl(route="r", backend="b"))] == pytest.approx(sum(observations))


def test_buckets_span_half_a_millisecond_to_ten_seconds() -> None:
    assert BUCKETS[0] == 0.0005 and BUCKETS[-1] == 10.0
    assert list(BUCKETS) == sorted(set(BUCKETS))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=20), st.text(max_size=20))
def test_label_values_are_escaped(route: str, backend: str) -> None:
    m = Metrics()
    m.retry(route=route, backend=backend)
    samples, _ = parse(m.render())
    assert samples == {("podnet_proxy_retries_total", lbl(route=route, backend=backend)): 1}


def test_escape_label() -> None:
    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_gauges_are_rendered_as_families() -> None:
    text = Metrics().render(
        {
            "podnet_proxy_connections": 3,
            'podnet_proxy_in_flight{backend="a"}': 2.5,
            'podnet_proxy_in_flight{backend="b"}': float("inf"),
        }
    )
    samples, types = parse(text)
    assert types["podnet_proxy_in_flight"] == "gauge"
    assert types["podnet_proxy_connections"] == "gauge"
    assert samples[("podnet_proxy_connections", frozenset())] == 3
    assert samples[("podnet_proxy_in_flight", lbl(backend="a"))] == 2.5
    assert samples[("podnet_proxy_in_flight", lbl(backend="b"))] == math.inf
    with pytest.raises(ValueError):
        Metrics().render({"bad name": 1})


@pytest.mark.parametrize(
    ("status", "expected"), [(200, "2xx"), (101, "1xx"), (599, "5xx"), (0, "other"), (600, "other")]
)
def test_code_class(status: int, expected: str) -> None:
    assert code_class(status) == expected


def test_merged_expositions_add_samples_and_keep_comments_once() -> None:
    a = Metrics()
    b = Metrics()
    for m, n in ((a, 3), (b, 4)):
        for _ in range(n):
            m.request(route="r", backend="b", status=200, seconds=0.01)
    one = a.render({"podnet_proxy_in_flight": 2, "podnet_proxy_snapshot_version": 7}).decode()
    two = b.render({"podnet_proxy_in_flight": 1, "podnet_proxy_snapshot_version": 9}).decode()
    merged = merge_expositions([one, two])
    lines = merged.splitlines()
    assert 'podnet_proxy_requests_total{route="r",backend="b",code_class="2xx"} 7' in lines
    assert "podnet_proxy_in_flight 3" in lines
    assert "podnet_proxy_snapshot_version 9" in lines  # the newest, not a sum
    assert len([x for x in lines if x.startswith("# TYPE podnet_proxy_requests_total")]) == 1
    assert merge_expositions([one]) == one
