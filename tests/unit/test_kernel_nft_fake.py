"""FakeNft, the nft runner for tests without root, and Nft's error handling."""

from __future__ import annotations

import pytest

from podnet.errors import InvalidInput, KernelError, NotFound
from podnet.kernel.nft import FakeNft, Nft, NftRunner, _trim

SCRIPT_A = "add table inet podnet\n"
SCRIPT_B = 'add rule inet podnet post ip saddr 10.1.0.0/24 masquerade comment "network:front"\n'


def test_fake_is_an_nft_runner() -> None:
    runner: NftRunner = FakeNft()
    runner.apply(SCRIPT_A)
    assert runner.list_json("inet", "podnet") is None


def test_fake_records_applied_scripts_in_order() -> None:
    nft = FakeNft()
    nft.apply(SCRIPT_A)
    nft.apply(SCRIPT_B)
    assert nft.applied == [SCRIPT_A, SCRIPT_B]


def test_fake_ignores_empty_scripts_like_the_real_runner() -> None:
    nft = FakeNft()
    nft.apply("")
    nft.apply("  \n")
    assert nft.applied == []


def test_fake_armed_failure_is_all_or_nothing_and_fires_once() -> None:
    nft = FakeNft()
    nft.apply(SCRIPT_A)
    nft.fail_next("nft said no")
    with pytest.raises(KernelError, match="nft said no"):
        nft.apply(SCRIPT_B)
    assert nft.applied == [SCRIPT_A]
    nft.apply(SCRIPT_B)
    assert nft.applied == [SCRIPT_A, SCRIPT_B]


def test_fake_failure_has_a_default_message_and_hint() -> None:
    nft = FakeNft()
    nft.fail_next()
    with pytest.raises(KernelError) as failed:
        nft.apply(SCRIPT_A)
    assert failed.value.hint == "nothing was applied"


def test_fake_list_json_validates_names() -> None:
    nft = FakeNft()
    assert nft.list_json("ip6", "podnet") is None
    with pytest.raises(InvalidInput, match="family"):
        nft.list_json("inet6", "podnet")
    with pytest.raises(InvalidInput, match="table name"):
        nft.list_json("inet", "pod net")


def test_nft_in_a_missing_netns_is_not_found_before_running_anything() -> None:
    with pytest.raises(NotFound, match="pnt-k-missing"):
        Nft("pnt-k-missing").apply(SCRIPT_A)
    with pytest.raises(NotFound, match="pnt-k-missing"):
        Nft("pnt-k-missing").list_json("inet", "podnet")


def test_nft_empty_script_runs_nothing() -> None:
    Nft("pnt-k-missing").apply("\n")  # would be NotFound if it ran nft


def test_error_text_drops_caret_lines_and_is_bounded() -> None:
    stderr = (
        "/dev/stdin:1:22-28: Error: Could not process rule: No such file or directory\n"
        "add rule inet podnet nochain accept\n"
        "                     ^^^^^^^\n"
    )
    assert _trim(stderr) == (
        "  /dev/stdin:1:22-28: Error: Could not process rule: No such file or directory\n"
        "  add rule inet podnet nochain accept"
    )
    long = "\n".join(f"line {i}" for i in range(30))
    trimmed = _trim(long).splitlines()
    assert len(trimmed) == 13
    assert trimmed[-1] == "  ... (18 more lines)"
