"""Settings: defaults < PODNET_* environment < explicit overrides, and validation."""

from __future__ import annotations

import ipaddress
from dataclasses import fields
from pathlib import Path

import pytest

from podnet.errors import InvalidInput
from podnet.rules.transaction import Transaction
from podnet.settings import ENV_PREFIX, Settings


def test_defaults() -> None:
    s = Settings()
    assert s.state_dir == Path("/var/lib/podnet")
    assert s.run_dir == Path("/run/podnet")
    assert s.netns_prefix == "podnet-"
    assert s.nft_table == "podnet"
    assert s.store == ""
    assert s.subnet_pool == "10.89.0.0/16"
    assert s.subnet_size == 24
    assert s.ipv6_pool == "fd00:89::/48"
    assert s.reconcile_interval == 10.0


def test_derived_values() -> None:
    s = Settings(state_dir=Path("/srv/pn"), run_dir=Path("/tmp/pn"))
    assert s.socket_path == Path("/tmp/pn/agent.sock")
    assert s.store_url == "/srv/pn/state.db"
    assert Settings(store="etcd://10.0.0.1:2379").store_url == "etcd://10.0.0.1:2379"
    assert s.pool4 == ipaddress.IPv4Network("10.89.0.0/16")
    assert s.pool6 == ipaddress.IPv6Network("fd00:89::/48")


def test_from_empty_env_is_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_env_overrides_defaults_with_types_converted() -> None:
    env = {
        "PODNET_STATE_DIR": "/srv/node2",
        "PODNET_RUN_DIR": "/run/node2",
        "PODNET_NETNS_PREFIX": "n2-",
        "PODNET_NFT_TABLE": "podnet_n2",
        "PODNET_STORE": "/srv/other.db",
        "PODNET_SUBNET_POOL": "172.30.0.0/16",
        "PODNET_SUBNET_SIZE": "26",
        "PODNET_IPV6_POOL": "fd12::/56",
        "PODNET_RECONCILE_INTERVAL": "2.5",
    }
    assert Settings.from_env(env) == Settings(
        state_dir=Path("/srv/node2"),
        run_dir=Path("/run/node2"),
        netns_prefix="n2-",
        nft_table="podnet_n2",
        store="/srv/other.db",
        subnet_pool="172.30.0.0/16",
        subnet_size=26,
        ipv6_pool="fd12::/56",
        reconcile_interval=2.5,
    )


def test_overrides_beat_env() -> None:
    env = {"PODNET_NFT_TABLE": "from_env", "PODNET_SUBNET_SIZE": "26"}
    s = Settings.from_env(env, nft_table="from_flag")
    assert s.nft_table == "from_flag"
    assert s.subnet_size == 26


def test_none_override_keeps_env() -> None:
    s = Settings.from_env({"PODNET_NETNS_PREFIX": "n2-"}, netns_prefix=None, nft_table=None)
    assert s.netns_prefix == "n2-"
    assert s.nft_table == "podnet"


def test_empty_env_value_is_ignored() -> None:
    assert Settings.from_env({"PODNET_NFT_TABLE": "", "PODNET_SUBNET_SIZE": ""}) == Settings()


def test_other_variables_are_ignored() -> None:
    env = {"PODNET_NOT_A_SETTING": "x", "NFT_TABLE": "x", "podnet_nft_table": "x", "HOME": "/"}
    assert Settings.from_env(env) == Settings()


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODNET_NETNS_PREFIX", "proc-")
    assert Settings.from_env().netns_prefix == "proc-"


def test_explicit_empty_env_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PODNET_NETNS_PREFIX", "proc-")
    assert Settings.from_env({}).netns_prefix == "podnet-"


def test_overrides_with_typed_values() -> None:
    s = Settings.from_env({}, state_dir=Path("/x"), subnet_size=20, reconcile_interval=1.0)
    assert (s.state_dir, s.subnet_size, s.reconcile_interval) == (Path("/x"), 20, 1.0)


def test_string_overrides_are_converted_like_env_values() -> None:
    s = Settings.from_env({}, state_dir="/srv/pn", run_dir="/tmp/pn")
    assert s.state_dir == Path("/srv/pn")
    assert s.socket_path == Path("/tmp/pn/agent.sock")


@pytest.mark.parametrize(
    ("name", "raw", "kind"),
    [
        ("SUBNET_SIZE", "abc", "int"),
        ("SUBNET_SIZE", "24.0", "int"),
        ("RECONCILE_INTERVAL", "soon", "float"),
    ],
)
def test_bad_env_values(name: str, raw: str, kind: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Settings.from_env({ENV_PREFIX + name: raw})
    assert info.value.message == f"PODNET_{name}={raw!r} is not valid"
    assert info.value.hint == f"expected a {kind}"


def test_to_env_names_every_setting() -> None:
    env = Settings().to_env()
    assert set(env) == {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    assert env["PODNET_STATE_DIR"] == "/var/lib/podnet"
    assert env["PODNET_SUBNET_SIZE"] == "24"


def test_to_env_round_trip() -> None:
    s = Settings(
        state_dir=Path("/srv/n2"),
        run_dir=Path("/run/n2"),
        netns_prefix="n2-",
        nft_table="n2",
        store="/srv/n2/x.db",
        subnet_pool="10.200.0.0/16",
        subnet_size=28,
        ipv6_pool="fd99::/56",
        reconcile_interval=0.5,
    )
    assert Settings.from_env(s.to_env()) == s
    assert Settings.from_env(Settings().to_env()) == Settings()


@pytest.mark.parametrize("table", ["", "a" * 65, "pod net", "pod/net"])
def test_bad_nft_table(table: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Settings.from_env({}, nft_table=table)
    assert info.value.message.startswith(f"nft table name {table!r}")
    assert info.value.hint is not None


@pytest.mark.parametrize("table", ["1podnet", "pod.net", "pod:net"])
def test_nft_table_refused_when_nft_would_refuse_it(table: str) -> None:
    with pytest.raises(InvalidInput):
        Settings.from_env({}, nft_table=table)


@pytest.mark.parametrize("table", ["1podnet", "pod.net", "pod:net"])
def test_those_table_names_are_refused_by_transactions(table: str) -> None:
    with pytest.raises(InvalidInput):
        Transaction(table)


@pytest.mark.parametrize("prefix", ["", "a/b", "/"])
def test_bad_netns_prefix(prefix: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Settings.from_env({}, netns_prefix=prefix)
    assert info.value.message == f"netns prefix {prefix!r} is not valid"
    assert info.value.hint is not None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PODNET_SUBNET_POOL", "10.89.0.1/16"),
        ("PODNET_SUBNET_POOL", "nonsense"),
        ("PODNET_SUBNET_POOL", "fd00::/48"),
        ("PODNET_IPV6_POOL", "10.0.0.0/8"),
        ("PODNET_IPV6_POOL", "fd00::1/48"),
    ],
)
def test_bad_pools(variable: str, value: str) -> None:
    with pytest.raises(InvalidInput, match=f"{variable} .* is not valid"):
        Settings.from_env({variable: value})


def test_bad_ipv6_pool_names_the_variable_and_hints() -> None:
    with pytest.raises(InvalidInput) as info:
        Settings.from_env({"PODNET_IPV6_POOL": "fd00::1/48"})
    assert "PODNET_IPV6_POOL" in str(info.value) or "IPv6" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize(("pool", "size"), [("10.89.0.0/16", 15), ("10.89.0.0/16", 31)])
def test_subnet_size_must_fit_the_pool(pool: str, size: int) -> None:
    with pytest.raises(InvalidInput) as info:
        Settings.from_env({}, subnet_pool=pool, subnet_size=size)
    assert info.value.message == f"subnet size /{size} does not fit pool {pool}"
    assert info.value.hint is not None
    assert "PODNET_SUBNET_SIZE" in info.value.hint


@pytest.mark.parametrize(("pool", "size"), [("10.89.0.0/16", 16), ("10.89.0.0/16", 30)])
def test_subnet_size_bounds_are_inclusive(pool: str, size: int) -> None:
    assert Settings.from_env({}, subnet_pool=pool, subnet_size=size).subnet_size == size


def test_ipv6_pool_smaller_than_slash_64_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        Settings.from_env({"PODNET_IPV6_POOL": "fd00::/80"})
    assert info.value.message == "IPv6 pool fd00::/80 is smaller than a /64"
    assert info.value.hint == "use a /48 or /56"


def test_ipv6_pool_of_one_slash_64_accepted() -> None:
    assert Settings.from_env({"PODNET_IPV6_POOL": "fd00::/64"}).pool6.prefixlen == 64


def test_validate_returns_self() -> None:
    s = Settings()
    assert s.validate() is s


@pytest.mark.parametrize("value", ["nan", "-1"])
def test_reconcile_interval_must_be_positive(value: str) -> None:
    with pytest.raises(InvalidInput):
        Settings.from_env({"PODNET_RECONCILE_INTERVAL": value})
