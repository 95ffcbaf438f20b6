"""IP address management: pure allocation logic."""

from podnet.ipam.allocator import allocate, find_overlap, pick_subnet, reserved_addresses

__all__ = ["allocate", "find_overlap", "pick_subnet", "reserved_addresses"]
