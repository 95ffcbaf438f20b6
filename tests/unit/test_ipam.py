"""IPAM: overlap lookup, free-subnet picking, reserved addresses, round-robin allocation."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podnet import ipam
from podnet.errors import Conflict, InvalidInput
from podnet.ipam import allocate, find_overlap, pick_subnet, reserved_addresses
from podnet.model.network import IPAddress, IPNetwork


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def test_public_surface() -> None:
    assert sorted(ipam.__all__) == ["allocate", "find_overlap", "pick_subnet", "reserved_addresses"]


# -- find_overlap ----------------------------------------------------------


def test_find_overlap_names_the_entry_and_its_subnet() -> None:
    existing = {"network 'a'": [net("10.1.0.0/24")], "network 'b'": [net("10.2.0.0/16")]}
    assert find_overlap(net("10.2.3.0/24"), existing) == "network 'b' (10.2.0.0/16)"


@pytest.mark.parametrize("candidate", ["10.1.0.0/25", "10.1.0.128/25", "10.0.0.0/8", "10.1.0.0/24"])
def test_find_overlap_sees_sub_and_supernets(candidate: str) -> None:
    assert find_overlap(net(candidate), {"a": [net("10.1.0.0/24")]}) == "a (10.1.0.0/24)"


def test_find_overlap_none() -> None:
    existing = {"a": [net("10.1.0.0/24"), net("fd00::/64")]}
    assert find_overlap(net("10.1.1.0/24"), existing) is None
    assert find_overlap(net("fd00:0:0:1::/64"), existing) is None
    assert find_overlap(net("10.1.1.0/24"), {}) is None


def test_find_overlap_ignores_the_other_ip_version() -> None:
    # ::/0 would "contain" everything if versions were mixed up.
    assert find_overlap(net("10.1.0.0/24"), {"v6": [net("::/0")]}) is None


def test_find_overlap_reports_the_first_clash_in_order() -> None:
    existing = {"first": [net("10.0.0.0/8")], "second": [net("10.1.0.0/16")]}
    assert find_overlap(net("10.1.2.0/24"), existing) == "first (10.0.0.0/8)"


# -- pick_subnet -----------------------------------------------------------


def test_pick_subnet_takes_the_first_when_nothing_is_used() -> None:
    assert pick_subnet(net("10.89.0.0/16"), 24, []) == net("10.89.0.0/24")


def test_pick_subnet_skips_overlaps() -> None:
    avoid = [net("10.89.0.0/24"), net("10.89.1.128/25"), net("10.89.3.7/32")]
    assert pick_subnet(net("10.89.0.0/16"), 24, avoid) == net("10.89.2.0/24")
    assert pick_subnet(net("10.89.0.0/16"), 24, [*avoid, net("10.89.2.0/24")]) == net(
        "10.89.4.0/24"
    )


def test_pick_subnet_skips_a_supernet_that_covers_several_candidates() -> None:
    assert pick_subnet(net("10.89.0.0/16"), 24, [net("10.89.0.0/22")]) == net("10.89.4.0/24")


def test_pick_subnet_ignores_the_other_ip_version() -> None:
    assert pick_subnet(net("10.89.0.0/16"), 24, [net("::/0")]) == net("10.89.0.0/24")
    assert pick_subnet(net("fd00:89::/48"), 64, [net("0.0.0.0/0")]) == net("fd00:89::/64")


def test_pick_subnet_ipv6_slash_64s_of_a_slash_48() -> None:
    pool = net("fd00:89::/48")
    first = pick_subnet(pool, 64, [])
    assert first == net("fd00:89::/64")
    assert pick_subnet(pool, 64, [first]) == net("fd00:89:0:1::/64")


def test_pick_subnet_whole_pool() -> None:
    assert pick_subnet(net("10.89.0.0/24"), 24, []) == net("10.89.0.0/24")


def test_pick_subnet_exhausted() -> None:
    pool = net("10.89.0.0/23")
    with pytest.raises(Conflict) as info:
        pick_subnet(pool, 24, [net("10.89.0.0/24"), net("10.89.1.0/24")])
    assert info.value.message == "no free /24 subnet left in pool 10.89.0.0/23"
    assert info.value.hint is not None
    assert "--subnet" in info.value.hint
    assert "PODNET_SUBNET_POOL" in info.value.hint


def test_pick_subnet_exhausted_by_a_covering_route() -> None:
    with pytest.raises(Conflict, match=re.escape("no free /24 subnet left in pool 10.89.0.0/16")):
        pick_subnet(net("10.89.0.0/16"), 24, [net("10.0.0.0/8")])


def test_pick_subnet_refuses_a_prefix_shorter_than_the_pool() -> None:
    with pytest.raises(InvalidInput) as info:
        pick_subnet(net("10.89.0.0/16"), 8, [])
    assert info.value.message == "a /8 subnet does not fit in pool 10.89.0.0/16"


def test_pick_subnet_prefix_error_carries_a_hint() -> None:
    with pytest.raises(InvalidInput) as info:
        pick_subnet(net("10.89.0.0/16"), 8, [])
    assert info.value.hint


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=(1 << 12) - 1), st.integers(20, 32)),
        max_size=20,
    ),
    st.integers(min_value=20, max_value=28),
)
def test_pick_subnet_result_is_free_and_inside_the_pool(
    used: list[tuple[int, int]], prefixlen: int
) -> None:
    pool = net("10.89.0.0/20")
    avoid = [
        ipaddress.ip_network((int(pool.network_address) + offset, length), strict=False)
        for offset, length in used
    ]
    try:
        picked = pick_subnet(pool, prefixlen, avoid)
    except Conflict:
        # Then every candidate of the pool must really be taken.
        for candidate in pool.subnets(new_prefix=prefixlen):
            assert any(candidate.overlaps(a) for a in avoid)
        return
    assert picked.prefixlen == prefixlen
    assert picked.network_address in pool and picked.broadcast_address in pool
    assert not any(picked.overlaps(a) for a in avoid)
    # And it is the first free one.
    for candidate in pool.subnets(new_prefix=prefixlen):
        if candidate == picked:
            break
        assert any(candidate.overlaps(a) for a in avoid)


# -- reserved addresses ----------------------------------------------------


def test_reserved_addresses_ipv4() -> None:
    assert reserved_addresses(net("10.89.0.0/24"), ip("10.89.0.1")) == {
        ip("10.89.0.0"),
        ip("10.89.0.255"),
        ip("10.89.0.1"),
    }


def test_reserved_addresses_ipv6_has_no_broadcast() -> None:
    assert reserved_addresses(net("fd00:89::/64"), ip("fd00:89::1")) == {
        ip("fd00:89::"),
        ip("fd00:89::1"),
    }


def test_reserved_addresses_without_gateway() -> None:
    assert reserved_addresses(net("10.89.0.0/30"), None) == {ip("10.89.0.0"), ip("10.89.0.3")}


# -- allocate --------------------------------------------------------------

SUBNET = net("10.89.0.0/24")
RESERVED = reserved_addresses(SUBNET, ip("10.89.0.1"))


def test_allocate_first_free_skips_reserved() -> None:
    assert allocate(SUBNET, used=(), reserved=RESERVED) == ip("10.89.0.2")


def test_allocate_without_reserved_hands_out_the_network_address() -> None:
    # The caller decides what is reserved; allocate itself reserves nothing.
    assert allocate(SUBNET, used=()) == ip("10.89.0.0")


def test_allocate_skips_used() -> None:
    used = {ip("10.89.0.2"), ip("10.89.0.3")}
    assert allocate(SUBNET, used=used, reserved=RESERVED) == ip("10.89.0.4")


def test_allocate_round_robin_after_cursor() -> None:
    assert allocate(SUBNET, used=(), reserved=RESERVED, after=ip("10.89.0.5")) == ip("10.89.0.6")
    used = {ip("10.89.0.6"), ip("10.89.0.7")}
    assert allocate(SUBNET, used=used, reserved=RESERVED, after=ip("10.89.0.5")) == ip("10.89.0.8")


def test_allocate_does_not_reuse_a_just_released_address() -> None:
    # .2 was handed out last and released: the next pod gets .3, not .2.
    assert allocate(SUBNET, used=(), reserved=RESERVED, after=ip("10.89.0.2")) == ip("10.89.0.3")


@pytest.mark.parametrize("after", ["10.89.0.254", "10.89.0.255"])
def test_allocate_wraps_past_broadcast_network_and_gateway(after: str) -> None:
    assert allocate(SUBNET, used=(), reserved=RESERVED, after=ip(after)) == ip("10.89.0.2")


def test_allocate_wraps_to_free_addresses_before_the_cursor() -> None:
    used = {ip(f"10.89.0.{i}") for i in range(5, 255)}
    assert allocate(SUBNET, used=used, reserved=RESERVED, after=ip("10.89.0.100")) == ip(
        "10.89.0.2"
    )


@pytest.mark.parametrize("after", ["10.90.0.7", "fd00::7"])
def test_allocate_ignores_a_cursor_outside_the_subnet(after: str) -> None:
    assert allocate(SUBNET, used=(), reserved=RESERVED, after=ip(after)) == ip("10.89.0.2")


def test_allocate_last_free_address() -> None:
    used = {ip(f"10.89.0.{i}") for i in range(2, 255) if i != 200}
    assert allocate(SUBNET, used=used, reserved=RESERVED, after=ip("10.89.0.201")) == ip(
        "10.89.0.200"
    )


def test_allocate_slash_30_has_exactly_one_address_for_pods() -> None:
    subnet = net("10.89.0.0/30")
    reserved = reserved_addresses(subnet, ip("10.89.0.1"))
    assert allocate(subnet, used=(), reserved=reserved) == ip("10.89.0.2")
    with pytest.raises(Conflict):
        allocate(subnet, used={ip("10.89.0.2")}, reserved=reserved)


def test_allocate_exhausted() -> None:
    used = {ip(f"10.89.0.{i}") for i in range(2, 255)}
    with pytest.raises(Conflict) as info:
        allocate(SUBNET, used=used, reserved=RESERVED, after=ip("10.89.0.9"))
    assert info.value.message == "subnet 10.89.0.0/24 has no free address left"
    assert info.value.hint is not None
    assert "larger subnet" in info.value.hint


def test_allocate_ipv6_slash_64() -> None:
    subnet = net("fd00:89::/64")
    reserved = reserved_addresses(subnet, ip("fd00:89::1"))
    assert allocate(subnet, used=(), reserved=reserved) == ip("fd00:89::2")
    assert allocate(subnet, used=(), reserved=reserved, after=ip("fd00:89::ffff")) == ip(
        "fd00:89::1:0"
    )


def test_allocate_ipv6_slash_64_wraps_from_the_last_address() -> None:
    subnet = net("fd00:89::/64")
    reserved = reserved_addresses(subnet, ip("fd00:89::1"))
    last = subnet.broadcast_address  # no broadcast in IPv6: a usable address
    assert allocate(subnet, used=(), reserved=reserved, after=last) == ip("fd00:89::2")


def test_allocate_ipv6_exhausted() -> None:
    subnet = net("fd00:89::/124")
    reserved = reserved_addresses(subnet, ip("fd00:89::1"))
    used = {subnet.network_address + i for i in range(2, 16)}
    with pytest.raises(Conflict, match=re.escape("subnet fd00:89::/124 has no free address left")):
        allocate(subnet, used=used, reserved=reserved)


small_subnets = st.one_of(
    st.integers(min_value=26, max_value=30).map(lambda p: net(f"10.89.0.0/{p}")),
    st.integers(min_value=122, max_value=126).map(lambda p: net(f"fd00:89::/{p}")),
)


@given(small_subnets, st.data())
def test_allocate_never_returns_used_or_reserved(subnet: IPNetwork, data: st.DataObject) -> None:
    hosts = [subnet.network_address + i for i in range(subnet.num_addresses)]
    used = set(data.draw(st.lists(st.sampled_from(hosts), max_size=len(hosts))))
    gateway = data.draw(st.sampled_from(hosts))
    reserved = reserved_addresses(subnet, gateway)
    after = data.draw(st.one_of(st.none(), st.sampled_from(hosts)))
    free = [h for h in hosts if h not in used and h not in reserved]
    if not free:
        with pytest.raises(Conflict):
            allocate(subnet, used=used, reserved=reserved, after=after)
        return
    got = allocate(subnet, used=used, reserved=reserved, after=after)
    assert got in subnet
    assert got not in used
    assert got not in reserved
    # Round robin: the first free address after the cursor, wrapping around.
    start = 0 if after is None else hosts.index(after) + 1
    expected = next(h for h in hosts[start:] + hosts[:start] if h in free)
    assert got == expected


@given(st.integers(min_value=0, max_value=40))
def test_allocate_hands_out_every_address_once_before_exhaustion(pods: int) -> None:
    subnet = net("10.89.0.0/26")  # 64 addresses, 61 for pods
    reserved = reserved_addresses(subnet, ip("10.89.0.1"))
    used: set[IPAddress] = set()
    cursor: IPAddress | None = None
    for _ in range(pods):
        cursor = allocate(subnet, used=used, reserved=reserved, after=cursor)
        assert cursor not in used
        used.add(cursor)
    assert len(used) == pods
