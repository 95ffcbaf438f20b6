"""``make demo``: podnet's main job end to end, inside throwaway namespaces.

It makes a lab (a "host" namespace where podnet runs and an "external" test
host joined to it), brings up examples/two-tier.yaml, sends traffic from the
external host, from the host itself and from pods, balances a service in the
kernel, then brings up examples/shop.yaml and puts an edge proxy with a
weighted canary route in front of it: the split, a live weight change, and a
replica stopped under load without a failed request. Everything is removed at
the end; the machine's own network is never touched.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import sys
import threading
import time
from pathlib import Path

from podnet.lab import Lab

__all__ = ["main"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = EXAMPLES / "two-tier.yaml"
SHOP = EXAMPLES / "shop.yaml"
GREEN, RED, BOLD, DIM, RESET = "\033[32m", "\033[31m", "\033[1m", "\033[2m", "\033[0m"


class Report:
    """Prints steps and checks; remembers whether every check passed."""

    def __init__(self, color: bool) -> None:
        self.color = color
        self.failed = 0

    def _c(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def section(self, title: str) -> None:
        print("\n" + self._c(BOLD, f"== {title}"))

    def check(self, ok: bool, text: str) -> None:
        self.failed += not ok
        mark = self._c(GREEN, "ok  ") if ok else self._c(RED, "FAIL")
        print(f"  [{mark}] {text}")

    def show(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            print("  " + self._c(DIM, line) if line.startswith("#") else "  " + line)


def _field(body: str, name: str) -> str:
    for line in body.splitlines():
        if line.startswith(name + ": "):
            return line.split(": ", 1)[1]
    return "?"


def _pods(lab: Lab) -> dict[str, dict[str, object]]:
    return {p["name"]: p for p in json.loads(lab.podnet("ps", "--json").stdout)}


def _ip(pod: dict[str, object], network: str) -> str:
    for iface in pod["interfaces"]:  # type: ignore[attr-defined]
        if iface["network"] == network:
            return str(iface["addresses"][0]).split("/")[0]
    raise KeyError(network)


def _traffic(lab: Lab, r: Report, pods: dict[str, dict[str, object]]) -> None:
    r.section("traffic to the published port 8080 (edge pod)")
    for where, label, target in (
        (lab.external, f"external host {lab.external_ip}", lab.host_ip),
        (lab.external, f"external host {lab.external_ip6}", lab.host_ip6),
        (lab.host, "the host itself", "127.0.0.1"),
        (str(pods["web-1"]["netns"]), "pod web-1 (hairpin)", lab.host_ip),
    ):
        status, body = lab.wait_http(where, target, 8080)
        r.check(
            status == 200 and _field(body, "Hostname") == "edge",
            f"{label:32} -> {target}:8080  answered by {_field(body, 'Hostname')}, "
            f"sees client {_field(body, 'RemoteAddr')}",
        )
    r.section("pod to pod")
    answered: collections.Counter[str] = collections.Counter()
    edge_ns = str(pods["edge"]["netns"])
    for _ in range(10):
        for name in ("web-1", "web-2"):
            _, body = lab.wait_http(edge_ns, _ip(pods[name], "front"), 80)
            answered[_field(body, "Hostname")] += 1
    r.check(
        answered == {"web-1": 10, "web-2": 10}, f"edge -> web-1/web-2 on front: {dict(answered)}"
    )
    web_ns, db_ip = str(pods["web-1"]["netns"]), _ip(pods["db"], "back")
    status, body = lab.wait_http(web_ns, db_ip, 5432)
    r.check(status == 200, f"web-1 -> db {db_ip}:5432 on the internal network back: {status}")
    r.check(not lab.can_connect(edge_ns, db_ip, 5432), "edge (front only) cannot reach db")
    db_ns = str(pods["db"]["netns"])
    r.check(
        not lab.can_connect(db_ns, lab.external_ip, 9),
        "db (internal network) has no way out to the external host",
    )


def _services(lab: Lab, r: Report, pods: dict[str, dict[str, object]]) -> None:
    r.section("podnet service create web --port 80 --selector app=web -p 8088:80")
    lab.podnet(
        "service", "create", "web", "--port", "80", "--selector", "app=web",
        "--health", "tcp", "--health-interval", "0.5", "--health-timeout", "0.4", "-p", "8088:80",
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while "2/2" not in lab.podnet("service", "ls").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    r.show(lab.podnet("service", "ls").stdout)
    r.show(lab.podnet("service", "endpoints", "web").stdout)
    vip = json.loads(lab.podnet("service", "inspect", "web").stdout)[0]["vips"][0]
    answered: collections.Counter[str] = collections.Counter()
    edge_ns = str(pods["edge"]["netns"])
    for _ in range(40):
        _, body = lab.wait_http(edge_ns, vip, 80)
        answered[_field(body, "Hostname")] += 1
    r.check(
        set(answered) == {"web-1", "web-2"},
        f"edge -> VIP {vip}:80, 40 requests balanced in the kernel: {dict(answered)}",
    )
    status, body = lab.wait_http(lab.external, lab.host_ip, 8088)
    r.check(
        status == 200 and _field(body, "Hostname") in {"web-1", "web-2"},
        f"external host -> {lab.host_ip}:8088 (the service's host port): "
        f"answered by {_field(body, 'Hostname')}",
    )
    lab.podnet("service", "rm", "web")


def _shop_requests(lab: Lab, count: int) -> tuple[collections.Counter[str], int]:
    """``count`` GETs for shop.example from the external host through the edge
    proxy (one keep-alive connection); who answered, and how many failed."""

    def go() -> tuple[collections.Counter[str], int]:
        answered: collections.Counter[str] = collections.Counter()
        failed = 0
        conn = http.client.HTTPConnection(lab.host_ip, 8000, timeout=5)
        for _ in range(count):
            try:
                conn.request("GET", "/", headers={"Host": "shop.example"})
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection(lab.host_ip, 8000, timeout=5)
                continue
            if resp.status != 200:
                failed += 1
            else:
                answered[_field(body, "Hostname")[: len("shop-vN")]] += 1  # shop-v1-2 -> shop-v1
        conn.close()
        return answered, failed

    return lab.in_ns(lab.external, go)


def _split(r: Report, answered: collections.Counter[str], failed: int) -> None:
    total = sum(answered.values()) + failed
    for version in ("shop-v1", "shop-v2"):
        n = answered.get(version, 0)
        bar = "#" * round(40 * n / max(total, 1))
        r.show(f"{version}  {n:>4}  {100 * n / max(total, 1):5.1f}%  {bar}")
    r.show(f"failed   {failed:>4}")


def _proxy(lab: Lab, r: Report) -> None:
    r.section(f"podnet up -f {SHOP.name}; service, route and edge proxy")
    lab.podnet("up", "-f", str(SHOP))
    commands = [
        [
            "service", "create", "shop", "--port", "80:8080", "--selector", "app=shop",
            "--health", "http", "--health-path", "/", "--health-interval", "0.5",
            "--health-timeout", "0.4",
        ],
        [
            "route", "set", "shop", "--host", "shop.example",
            "--backend", "shop:version=v1@90", "--backend", "shop:version=v2@10",
            "--retries", "2",
        ],
        ["proxy", "create", "edge", "--port", "8000", "--admin-port", "9901"],
    ]  # fmt: skip
    for argv in commands:
        r.show("$ podnet " + " ".join(argv))
        lab.podnet(*argv)
    deadline = time.monotonic() + 20
    while "3/3" not in lab.podnet("service", "ls").stdout and time.monotonic() < deadline:
        time.sleep(0.2)  # health checks pass first: unchecked endpoints get no traffic
    while time.monotonic() < deadline:  # the agent starts the proxy in the background
        with contextlib.suppress(OSError):
            lab.http_get(lab.external, lab.host_ip, 8000, timeout=1)
            break
        time.sleep(0.2)
    r.show(lab.podnet("route", "ls").stdout)

    r.section("400 requests from the external host to shop.example (canary 90/10)")
    answered, failed = _shop_requests(lab, 400)
    _split(r, answered, failed)
    r.check(
        failed == 0 and 20 <= answered["shop-v2"] <= 60,
        f"shop-v2 got {answered['shop-v2']} of 400 (expected 40 by smooth weighted round robin)",
    )

    r.section("podnet route set shop --weight shop-v1=50 --weight shop-v2=50")
    lab.podnet("route", "set", "shop", "--weight", "shop-v1=50", "--weight", "shop-v2=50")
    time.sleep(0.5)  # the agent pushes the new snapshot by long-poll
    answered, failed = _shop_requests(lab, 400)
    _split(r, answered, failed)
    r.check(
        failed == 0 and 160 <= answered["shop-v2"] <= 240,
        f"shop-v2 got {answered['shop-v2']} of 400 after the shift (expected 200)",
    )

    r.section("podnet stop shop-v1-1 while 600 requests are in flight")
    result: list[tuple[collections.Counter[str], int]] = []
    load = threading.Thread(target=lambda: result.append(_shop_requests(lab, 600)))
    load.start()
    time.sleep(0.3)
    lab.podnet("stop", "shop-v1-1")
    load.join()
    answered, failed = result[0]
    _split(r, answered, failed)
    r.check(failed == 0, f"{failed} of 600 requests failed while a replica went away")

    r.section("proxy metrics (curl 127.0.0.1:9901/metrics on the host, excerpt)")
    metrics = lab.run(["curl", "-s", "http://127.0.0.1:9901/metrics"]).stdout
    wanted = ("podnet_proxy_requests_total", "podnet_proxy_retries_total")
    for line in metrics.splitlines():
        if line.startswith(wanted):
            r.show(line)
    for argv in (["proxy", "rm", "edge"], ["route", "rm", "shop"], ["service", "rm", "shop"]):
        lab.podnet(*argv)
    r.show(lab.podnet("down", "-f", str(SHOP)).stdout)


def run(color: bool) -> int:
    r = Report(color)
    started = time.monotonic()
    with Lab() as lab:
        print(f"lab: host netns {lab.host} ({lab.host_ip}), external {lab.external}")
        r.section(f"podnet up -f {EXAMPLE.name}")
        t0 = time.monotonic()
        r.show(lab.podnet("up", "-f", str(EXAMPLE)).stdout)
        print(f"  ({time.monotonic() - t0:.2f}s)")
        r.section("podnet network ls")
        r.show(lab.podnet("network", "ls").stdout)
        r.section("podnet graph")
        r.show(lab.podnet("graph").stdout)
        r.section("podnet ps")
        r.show(lab.podnet("ps").stdout)
        pods = _pods(lab)
        _traffic(lab, r, pods)
        _services(lab, r, pods)
        r.section(f"podnet down -f {EXAMPLE.name}")
        r.show(lab.podnet("down", "-f", str(EXAMPLE)).stdout)
        _proxy(lab, r)
        r.check(not lab.pod_namespaces(), "no pod namespace left")
        r.check("pn-" not in lab.run(["ip", "-br", "link"]).stdout, "no podnet bridge or veth left")
    verdict = "all checks passed" if not r.failed else f"{r.failed} check(s) FAILED"
    print(f"\n{verdict} in {time.monotonic() - started:.1f}s; the lab is gone.")
    return 0 if not r.failed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podnet.demo", description=__doc__)
    parser.add_argument("--no-color", action="store_true")
    args = parser.parse_args(argv)
    return run(color=sys.stdout.isatty() and not args.no_color)


if __name__ == "__main__":
    raise SystemExit(main())
