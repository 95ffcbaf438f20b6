"""The CNI protocol, sans I/O: what ``podnet-cni`` reads and what it prints.

Theory of operation
-------------------

A runtime runs the plugin with CNI_* variables in the environment and a JSON
request configuration on stdin (CNI spec 1.1.0, section 2). Nothing here reads
either: the executable hands over the values, and gets values back.

1. :func:`parse_env` turns the environment into an :class:`Invocation`; which
   variables are required depends on the command (see :mod:`podnet.cni.env`).
2. For VERSION, print :func:`version_info` with the :func:`requested_version`
   of stdin, and stop: VERSION needs nothing else.
3. Otherwise :func:`parse_config` turns stdin into a :class:`NetConf`
   (protocol keys typed, ``prevResult`` parsed into a :class:`Result`, plugin
   keys raw), and :func:`check_request` checks the command against it (CHECK
   from 0.4.0 with a ``prevResult``; GC and STATUS from 1.1.0).
4. :func:`parse_plugin_conf` validates podnet's own keys into a
   :class:`PodnetPluginConf`. It is separate so that DEL and GC can still
   clean up after a configuration that has since become invalid.
5. ADD prints ``result.to_json(conf.cni_version)``; DEL, CHECK, GC and STATUS
   print nothing on success. GC keeps :func:`valid_attachments`.
6. Any failure is a :class:`CniError`: print ``err.to_json(reply_version(stdin))``
   and exit non-zero (section 5, "Error").

Results from a delegated IPAM plugin come back through :meth:`Result.from_json`
(defaulting to the configuration's version) and its errors through
:meth:`CniError.from_json`.
"""

from __future__ import annotations

from podnet.cni.config import (
    GC_ATTACHMENTS_KEYS,
    IpamConf,
    NetConf,
    check_request,
    parse_config,
    requested_ips,
    valid_attachments,
)
from podnet.cni.env import (
    Command,
    Invocation,
    check_container_id,
    check_ifname,
    parse_cni_args,
    parse_env,
)
from podnet.cni.errors import CniError, ErrorCode
from podnet.cni.plugin import PodnetPluginConf, parse_plugin_conf
from podnet.cni.result import DNS, Interface, IPConfig, Result, Route
from podnet.cni.runtime import ConfArgs, RequestedIP, RuntimeConfig, RuntimeDNS
from podnet.cni.version import (
    CURRENT_VERSION,
    SUPPORTED_VERSIONS,
    check_version,
    reply_version,
    requested_version,
    version_at_least,
    version_info,
)

__all__ = [
    "CURRENT_VERSION",
    "DNS",
    "GC_ATTACHMENTS_KEYS",
    "SUPPORTED_VERSIONS",
    "CniError",
    "Command",
    "ConfArgs",
    "ErrorCode",
    "IPConfig",
    "Interface",
    "Invocation",
    "IpamConf",
    "NetConf",
    "PodnetPluginConf",
    "RequestedIP",
    "Result",
    "Route",
    "RuntimeConfig",
    "RuntimeDNS",
    "check_container_id",
    "check_ifname",
    "check_request",
    "check_version",
    "parse_cni_args",
    "parse_config",
    "parse_env",
    "parse_plugin_conf",
    "reply_version",
    "requested_ips",
    "requested_version",
    "valid_attachments",
    "version_at_least",
    "version_info",
]
