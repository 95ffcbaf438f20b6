"""Pure types shared by every layer: networks, pods, published ports, names."""

from podnet.model.names import bridge_name, check_ifname, check_name, host_veth_name, netns_name
from podnet.model.network import IPAddress, IPNetwork, Network, NetworkRequest, parse_subnet
from podnet.model.pod import RESTART_POLICIES, Attachment, Interface, PodSpec
from podnet.model.ports import PROTOCOLS, PortMapping

__all__ = [
    "PROTOCOLS",
    "RESTART_POLICIES",
    "Attachment",
    "IPAddress",
    "IPNetwork",
    "Interface",
    "Network",
    "NetworkRequest",
    "PodSpec",
    "PortMapping",
    "bridge_name",
    "check_ifname",
    "check_name",
    "host_veth_name",
    "netns_name",
    "parse_subnet",
]
