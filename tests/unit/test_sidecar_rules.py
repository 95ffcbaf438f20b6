"""The sidecar's nft table (pure rendering) and the tables the agent keeps."""

from __future__ import annotations

import ipaddress

import pytest

from podnet.controller.sidecar import SidecarRules
from podnet.kernel.nft import FakeNft
from podnet.rules.sidecar import render_sidecar, render_sidecar_removal

POOLS = [ipaddress.ip_network("10.96.0.0/16"), ipaddress.ip_network("fd00:96::/112")]


def test_render_redirects_both_vip_ranges_to_the_proxy_port() -> None:
    script = render_sidecar("side", 15001, POOLS)
    assert script.splitlines() == [
        "add table inet podnet-sidecar",
        "delete table inet podnet-sidecar",
        "add table inet podnet-sidecar",
        "add chain inet podnet-sidecar output { type nat hook output priority -100; "
        'policy accept; comment "podnet sidecar side"; }',
        "add rule inet podnet-sidecar output ip daddr 10.96.0.0/16 meta l4proto tcp "
        'redirect to :15001 comment "podnet sidecar side: service VIPs to the proxy"',
        "add rule inet podnet-sidecar output ip6 daddr fd00:96::/112 meta l4proto tcp "
        'redirect to :15001 comment "podnet sidecar side: service VIPs to the proxy"',
    ]  # IPv4 lands on 127.0.0.1, IPv6 on ::1: the proxy serves both


def test_removal_tolerates_a_missing_table() -> None:
    assert render_sidecar_removal().splitlines() == [
        "add table inet podnet-sidecar",
        "delete table inet podnet-sidecar",
    ]


def test_rules_are_applied_once_per_netns_and_content(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes: dict[str, FakeNft] = {}

    def nft(netns: str) -> FakeNft:
        return fakes.setdefault(netns, FakeNft())

    inodes = {"ns-a": 1}
    monkeypatch.setattr("podnet.controller.sidecar.netns_inode", inodes.get)
    rules = SidecarRules(nft)
    assert rules.ensure("ns-a", "side", 15001, POOLS)
    assert not rules.ensure("ns-a", "side", 15001, POOLS)  # unchanged: no nft run
    assert rules.ensure("ns-a", "side", 15002, POOLS)  # new port
    inodes["ns-a"] = 2  # the pod was recreated: a new netns under the same name
    assert rules.ensure("ns-a", "side", 15002, POOLS)
    assert len(fakes["ns-a"].applied) == 3
    assert rules.forget(["ns-b"]) == ["ns-a"]
