"""Pods' resolv.conf: point each pod at podnet's DNS server on its gateway.

``ip netns exec NS CMD`` bind-mounts every file of ``/etc/netns/NS/`` over the
file of the same name in ``/etc`` (in a private mount namespace), so writing
``/etc/netns/NS/resolv.conf`` gives every process podnet starts in the pod,
and every ``podnet exec``, this resolver configuration::

    nameserver 10.89.0.1          # the gateway of the pod's first network
    nameserver fd00:89::1         # and its IPv6 gateway, if the pod has IPv6 there
    search podnet
    options ndots:1

The file must exist *before* the pod's process starts (a running process keeps
the ``/etc/resolv.conf`` it was started with), so the reconciler calls
:func:`write_resolv_conf` before it starts processes; the agent's runtime also
calls :func:`sync_resolv_confs` whenever the store changes, which writes what
is missing and removes the files of pods that are gone.

What podnet wrote is recorded, one JSON file per netns under
``STATE_DIR/resolv/``; removal works from that record, never from names: the
file is removed, and its directory too when podnet created the directory (and
it is empty). The same goes for ``/etc/netns`` itself: when podnet made it,
a marker file in it says so (``ip netns exec`` only looks inside the
per-netns directories), and podnet removes it once nothing else is left
there, whichever agent on the node removes the last file.

Files are replaced atomically (a temporary file in the base directory, renamed
into place: a temporary file inside ``/etc/netns/NS/`` would itself be
bind-mounted by a concurrent ``ip netns exec``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from podnet.model.names import netns_name
from podnet.model.network import IPAddress, Network
from podnet.model.pod import PodSpec
from podnet.settings import Settings

__all__ = [
    "nameservers_of",
    "record_dir",
    "recorded_netns",
    "remove_resolv_conf",
    "resolv_conf_path",
    "resolv_conf_text",
    "sync_resolv_confs",
    "write_resolv_conf",
]

log = logging.getLogger("podnet.dns")

_FILE = "resolv.conf"
_BASE_MARKER = ".podnet-created"


def nameservers_of(pod: PodSpec, networks: Mapping[str, Network]) -> list[IPAddress]:
    """The gateways of the pod's first network, for each IP version the pod has there.

    IPv4 first. Empty when the pod has no interface or its network is unknown.
    """
    if not pod.interfaces:
        return []
    first = pod.interfaces[0]
    network = networks.get(first.network)
    if network is None:
        return []
    found = []
    for version in (4, 6):
        gateway = network.gateway_for(version)
        if gateway is not None and first.ip(version) is not None:
            found.append(gateway)
    return found


def resolv_conf_text(nameservers: Iterable[IPAddress], domain: str) -> str:
    """The resolv.conf of a pod: its nameservers, the search domain, ``ndots:1``."""
    lines = [f"nameserver {ns}" for ns in nameservers]
    search = domain.rstrip(".")
    if search:
        lines.append(f"search {search}")
    lines.append("options ndots:1")
    return "\n".join(lines) + "\n"


def resolv_conf_path(settings: Settings, pod: str) -> Path:
    """Where the pod's resolv.conf goes: ``NETNS_ETC/<netns>/resolv.conf``."""
    return settings.netns_etc / netns_name(pod, settings.netns_prefix) / _FILE


def record_dir(settings: Settings) -> Path:
    """Where podnet records the resolv.conf files it wrote."""
    return settings.state_dir / "resolv"


def _record_path(settings: Settings, netns: str) -> Path:
    return record_dir(settings) / f"{netns}.json"


def write_resolv_conf(
    settings: Settings, pod: PodSpec, networks: Mapping[str, Network]
) -> Path | None:
    """Write the pod's resolv.conf if it is missing or different; idempotent.

    A pod on no network (or whose first network is unknown) gets none, and
    one podnet wrote before is removed.

    Returns:
        The file's path, or None when the pod gets no resolv.conf.

    Raises:
        OSError: the file or its record could not be written.
    """
    netns = netns_name(pod.name, settings.netns_prefix)
    nameservers = nameservers_of(pod, networks)
    if not nameservers:
        remove_resolv_conf(settings, netns)
        return None
    text = resolv_conf_text(nameservers, settings.dns_domain)
    path = settings.netns_etc / netns / _FILE
    with contextlib.suppress(OSError):
        if path.read_text() == text and _record_path(settings, netns).exists():
            return path
    record = _read_record(settings, netns)
    if record is not None and record.get("path") != str(path):
        remove_resolv_conf(settings, netns)  # written elsewhere (NETNS_ETC changed)
        record = None
    # Record first, then make: a crash in between leaves a record of something
    # missing (harmless), never a file or directory nobody knows podnet made.
    created_dir = not path.parent.is_dir() or bool(record and record.get("created_dir"))
    _write_record(settings, netns, {"pod": pod.name, "path": str(path), "created_dir": created_dir})
    _make_base(settings.netns_etc)
    path.parent.mkdir(mode=0o755, exist_ok=True)
    _atomic_write(settings.netns_etc, path, text)
    return path


def remove_resolv_conf(settings: Settings, netns: str) -> bool:
    """Remove the resolv.conf podnet recorded for ``netns`` (and its directory if podnet
    made it and it is empty), then the record. True if there was a record."""
    record = _read_record(settings, netns)
    if record is None:
        return False
    path = Path(str(record.get("path", "")))
    if path.name == _FILE:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if record.get("created_dir"):
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # fails, and stays, if someone put files there
        _release_base(path.parent.parent)
    _record_path(settings, netns).unlink(missing_ok=True)
    return True


def sync_resolv_confs(
    settings: Settings, pods: Mapping[str, PodSpec], networks: Mapping[str, Network]
) -> tuple[list[str], list[str]]:
    """Write every pod's resolv.conf; remove those of recorded netns with no pod.

    Errors are logged per pod, never raised. ``sync_resolv_confs(settings, {}, {})``
    removes everything podnet wrote (for a reset).

    Returns:
        (netns written or checked, netns removed).
    """
    kept: list[str] = []
    for pod in pods.values():
        try:
            if write_resolv_conf(settings, pod, networks) is not None:
                kept.append(netns_name(pod.name, settings.netns_prefix))
        except OSError as exc:
            log.error("cannot write resolv.conf of pod %s: %s", pod.name, exc)
    wanted = {netns_name(name, settings.netns_prefix) for name in pods}
    removed = []
    for netns in recorded_netns(settings):
        if netns not in wanted:
            try:
                remove_resolv_conf(settings, netns)
                removed.append(netns)
            except OSError as exc:
                log.error("cannot remove resolv.conf of netns %s: %s", netns, exc)
    return kept, removed


def recorded_netns(settings: Settings) -> list[str]:
    """The netns whose resolv.conf podnet recorded writing."""
    try:
        names = os.listdir(record_dir(settings))
    except FileNotFoundError:
        return []
    return sorted(n.removesuffix(".json") for n in names if n.endswith(".json"))


def _make_base(base: Path) -> None:
    """Make NETNS_ETC if it is missing, marked as podnet's."""
    if base.is_dir():
        return
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    (base / _BASE_MARKER).write_text("made by podnet for pods' resolv.conf; goes when empty\n")


def _release_base(base: Path) -> None:
    """Remove NETNS_ETC if podnet made it and only its marker is left in it."""
    try:
        if os.listdir(base) != [_BASE_MARKER]:
            return  # not podnet's, or still used by pods, agents or other programs
        (base / _BASE_MARKER).unlink()
        base.rmdir()
    except OSError:
        return


def _atomic_write(base: Path, path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".podnet-", suffix=".tmp", dir=base)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_record(settings: Settings, netns: str) -> dict[str, object] | None:
    try:
        data = json.loads(_record_path(settings, netns).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(settings: Settings, netns: str, record: dict[str, object]) -> None:
    directory = record_dir(settings)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _atomic_write(directory, _record_path(settings, netns), json.dumps(record) + "\n")
