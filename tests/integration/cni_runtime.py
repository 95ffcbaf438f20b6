"""A container runtime in miniature, for driving ``podnet-cni`` in a Lab.

A runtime execs a CNI plugin with a clean environment (CNI_COMMAND,
CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH and PATH only), the
request configuration on stdin, and reads the result or the spec's error JSON
from stdout. :class:`Runtime` does exactly that, inside the lab's host netns
(where podnet runs), and :meth:`Runtime.chain` drives a conflist by hand the
way libcni does: ADD in order with ``prevResult`` the previous plugin's
result, CHECK in order and DEL in reverse order with the cached result.

Container namespaces are lab namespaces (``<lab id>-<name>``), so Lab.close
removes them. Nothing here sends traffic; tests do, to lab addresses only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podnet.controller.state import Repository
from podnet.kernel import netns
from podnet.kernel.netlink import Netlink
from podnet.lab import Lab
from podnet.model.attachment import CniAttachment
from podnet.store import open_store

__all__ = [
    "CNI_VERSIONS",
    "PYTHON_PLUGIN",
    "REFERENCE_DIR",
    "Container",
    "Inside",
    "Reply",
    "Runtime",
    "attachments",
    "host_links",
    "inside",
    "leases",
]

CNI_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
BIN_DIR = Path(sys.executable).parent
#: The Python plugin (its own fast path and the standalone path).
PYTHON_PLUGIN = str(BIN_DIR / "podnet-cni")
#: What `podnet cni install` places: the native forwarder when it was built.
PLUGIN = (
    str(BIN_DIR / "podnet-cni-fast") if (BIN_DIR / "podnet-cni-fast").exists() else PYTHON_PLUGIN
)
REFERENCE_DIR = "/usr/lib/cni"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TIMEOUT = 60.0


@dataclass(frozen=True)
class Reply:
    """What a plugin run gave back: exit status, stdout parsed, stderr."""

    argv: tuple[str, ...]
    command: str
    code: int
    stdout: str
    stderr: str

    @property
    def data(self) -> dict[str, Any]:
        text = self.stdout.strip()
        data: dict[str, Any] = json.loads(text) if text else {}
        return data

    def ok(self) -> dict[str, Any]:
        """The result; fails the test, with everything printed, on an error."""
        assert self.code == 0, f"{self.command} failed ({self.code}): {self.stdout}{self.stderr}"
        return self.data

    def error(self) -> dict[str, Any]:
        """The spec's error JSON; fails the test when the plugin succeeded."""
        assert self.code == 1, f"{self.command} exited {self.code}: {self.stdout}{self.stderr}"
        err = self.data
        assert set(err) >= {"cniVersion", "code", "msg"}, err
        return err


@dataclass(frozen=True)
class Container:
    """A runtime's sandbox: a container id and the lab netns it owns."""

    id: str
    ns: str  # netns name, a lab namespace

    @property
    def netns(self) -> str:
        return netns.path(self.ns)


@dataclass
class Runtime:
    """Runs plugins for one lab with the environment a runtime gives them."""

    lab: Lab
    cni_path: str = f"{BIN_DIR}:{REFERENCE_DIR}"
    _serial: int = field(default=0, init=False)

    # -- sandboxes -----------------------------------------------------------

    def container(self, name: str | None = None) -> Container:
        """A fresh netns in the lab, with loopback left down as runtimes do."""
        if name is None:
            self._serial += 1
            name = f"c{self._serial}"
        ns = f"{self.lab.id}-{name}"
        netns.create(ns)
        return Container(f"ctr-{name}", ns)

    # -- configurations ------------------------------------------------------

    def conf(self, name: str = "cninet", version: str = "1.0.0", **keys: Any) -> dict[str, Any]:
        """A podnet network configuration pointed at the lab's state."""
        settings = self.lab.settings
        return {
            "cniVersion": version,
            "name": name,
            "type": "podnet",
            "stateDir": str(settings.state_dir),
            "runDir": str(settings.run_dir),
            "nftTable": settings.nft_table,
            **keys,
        }

    # -- running plugins -----------------------------------------------------

    def env(
        self, command: str, ctr: Container | None, ifname: str = "eth0", args: str = ""
    ) -> dict[str, str]:
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": ctr.id if ctr else "",
            "CNI_NETNS": ctr.netns if ctr else "",
            "CNI_IFNAME": ifname if ctr else "",
            "CNI_ARGS": args,
            "CNI_PATH": self.cni_path,
            "PATH": CLEAN_PATH,
        }

    def argv(self, plugin: str = PLUGIN) -> list[str]:
        return [NSENTER, f"--net={netns.path(self.lab.host)}", plugin]

    def exec(
        self,
        command: str,
        conf: Mapping[str, Any] | bytes,
        ctr: Container | None = None,
        *,
        ifname: str = "eth0",
        args: str = "",
        plugin: str = PLUGIN,
        env: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> Reply:
        """One plugin run; ``env`` replaces the computed environment when given."""
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        argv = self.argv(plugin)
        proc = subprocess.run(
            argv,
            input=stdin,
            env=dict(env) if env is not None else self.env(command, ctr, ifname, args),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return Reply(
            tuple(argv),
            command,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def spawn(
        self, command: str, conf: Mapping[str, Any], ctr: Container, **kw: str
    ) -> subprocess.Popen[bytes]:
        """Start one plugin run without waiting (to kill it midway)."""
        proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env(command, ctr, **kw),
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        return proc

    def add(self, conf: Mapping[str, Any], ctr: Container, **kw: Any) -> dict[str, Any]:
        return self.exec("ADD", conf, ctr, **kw).ok()

    def delete(self, conf: Mapping[str, Any], ctr: Container, **kw: Any) -> None:
        self.exec("DEL", conf, ctr, **kw).ok()

    # -- chains --------------------------------------------------------------

    def chain(
        self,
        command: str,
        conflist: Mapping[str, Any],
        ctr: Container,
        *,
        runtime_config: Mapping[str, Any] | None = None,
        cached: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Run a conflist as libcni does; ADD returns the last result (to cache).

        Each plugin's configuration gets the list's name and version, the
        previous result as ``prevResult`` and ``runtimeConfig`` reduced to the
        capabilities that plugin declares (for every command: portmap's DEL
        needs its mappings). DEL runs in reverse, CHECK in order, both with
        the ``cached`` result of the ADD as ``prevResult``.
        """
        plugins: Sequence[Mapping[str, Any]] = conflist["plugins"]
        order = list(reversed(plugins)) if command == "DEL" else list(plugins)
        prev = None if command == "ADD" else cached
        for plugin in order:
            conf = _plugin_conf(conflist, plugin, runtime_config or {}, prev)
            binary = PLUGIN if plugin["type"] == "podnet" else f"{REFERENCE_DIR}/{plugin['type']}"
            reply = self.exec(command, conf, ctr, plugin=binary)
            assert reply.code == 0, f"{command} {plugin['type']}: {reply.stdout}{reply.stderr}"
            if command == "ADD":
                prev = reply.data
        return dict(prev) if command == "ADD" and prev is not None else None


def _plugin_conf(
    conflist: Mapping[str, Any],
    plugin: Mapping[str, Any],
    runtime_config: Mapping[str, Any],
    prev: Mapping[str, Any] | None,
) -> dict[str, Any]:
    conf = {
        **plugin,
        "cniVersion": conflist["cniVersion"],
        "name": conflist["name"],
    }
    caps = {k for k, on in plugin.get("capabilities", {}).items() if on}
    wanted = {k: v for k, v in runtime_config.items() if k in caps}
    if wanted:
        conf["runtimeConfig"] = wanted
    if prev is not None:
        conf["prevResult"] = prev
    return conf


# -- what podnet recorded and what the kernel shows ---------------------------


@contextmanager
def _repository(lab: Lab) -> Iterator[Repository]:
    store = open_store(lab.settings.store_url)
    try:
        yield Repository(store)
    finally:
        store.close()


def leases(lab: Lab, network: str) -> dict[str, str]:
    """Address -> holder, as podnet's store records them."""
    if not Path(lab.settings.store_url).exists():
        return {}
    with _repository(lab) as repo:
        return repo.leases(network)


def attachments(lab: Lab, network: str | None = None) -> list[CniAttachment]:
    if not Path(lab.settings.store_url).exists():
        return []
    with _repository(lab) as repo:
        return repo.attachments(network)


def host_links(lab: Lab, prefix: str = "pnc") -> set[str]:
    """Names of the lab host's links starting with ``prefix`` (CNI veths: pnc)."""
    with Netlink(lab.host) as nl:
        return {link.name for link in nl.links() if link.name.startswith(prefix)}


@dataclass(frozen=True)
class Inside:
    """A container interface as the kernel shows it."""

    mac: str
    mtu: int
    up: bool
    addresses: frozenset[str]
    default_gateways: frozenset[str]


def inside(ctr: Container, ifname: str = "eth0") -> Inside | None:
    """``ifname`` in the container's netns, or None when it is not there."""
    with Netlink(ctr.ns) as nl:
        link = nl.link(ifname)
        if link is None:
            return None
        addresses = frozenset(str(a.interface) for a in nl.addresses(ifname))
        gateways = frozenset(
            str(r.gateway)
            for v in (4, 6)
            for r in nl.routes(v)
            if r.dst is None and r.gateway is not None and r.ifindex == link.index
        )
    return Inside(link.mac, link.mtu, link.up, addresses, gateways)
