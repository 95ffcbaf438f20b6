"""Suite-wide rules: root tests are skipped without root, and the machine's own
root namespace must end the run exactly as it began (no netns, link or nft
table left behind by anything the suite did)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _root_ns_state() -> dict[str, set[str]]:
    def lines(*argv: str) -> set[str]:
        try:
            out = subprocess.run(
                argv, check=False, capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return set()
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    etc = Path("/etc/netns")  # pods' resolv.conf (podnet.dns.resolv)
    return {
        "/etc/netns": {str(etc), *os.listdir(etc)} if etc.is_dir() else set(),
        "netns": lines("ip", "netns", "list"),
        "links": lines("ip", "-br", "link"),
        "nft tables": {t for t in _nft_tables()},
    }


def _nft_tables() -> set[str]:
    try:
        out = subprocess.run(
            ["nft", "list", "tables"], check=False, capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.strip() for line in out.splitlines() if line.strip()}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (creates throwaway network namespaces)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def root_namespace_left_clean() -> Iterator[None]:
    """Fail the run if the machine's root namespace gained anything."""
    before = _root_ns_state() if os.geteuid() == 0 else None
    yield
    if before is None:
        return
    after = _root_ns_state()
    gained = {kind: sorted(after[kind] - before[kind]) for kind in after}
    gained = {k: v for k, v in gained.items() if v}
    assert not gained, f"the test suite left these in the root namespace: {gained}"
