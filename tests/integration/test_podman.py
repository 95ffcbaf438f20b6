"""A real container runtime on podnet-cni: podman 4 (CNI network backend, crun)
runs a container on a network whose conflist ``podnet cni install`` wrote,
publishes a port with ``-p``, and ``podman rm -f`` gives everything back.

Everything stays inside a Lab. podman runs in the lab's host netns (nsenter),
so the container netns it makes, the bridge, the veths and the nft rules that
podnet-cni sets up all live there. podman gets private everything under one
temp dir: its storage (vfs), run root, libpod tmp dir, crun's state dir,
containers.conf, storage.conf, registries.conf and CNI config dir, all named
through CONTAINERS_* variables and flags, with a clean environment (no
PODNET_* variables: podnet-cni must find the lab's state from the conflist).

Two paths are fixed inside podman 4.3 and crun, so podman runs in a private
mount namespace (``unshare --mount --propagation unchanged``) that keeps them
off the machine: libcni's result cache is always ``/var/lib/cni`` (a private
``/var/lib`` is bound over it), and crun refuses to start anything on a hybrid
cgroup v1+v2 host whose v2 hierarchy has controllers (there the v2 mount is
hidden from crun; the container runs with ``cgroups = "disabled"`` anyway, so
no cgroup is made). ``/run/netns`` keeps its shared propagation, so the netns
podman makes there is the same file the agent (fast path) and this test see.

The container is busybox-static's httpd in a root filesystem built here and
started with ``podman run --rootfs``: nothing is pulled.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from podnet.kernel import netns
from podnet.kernel.netlink import Netlink
from podnet.lab import Lab
from podnet.model.attachment import CniAttachment

pytestmark = pytest.mark.root

NETWORK = "podnet"  # the conflist's name, so `podman run --network podnet`
SUBNET = "10.89.30.0/24"
HOSTPORT = 8080
BUSYBOX = Path("/bin/busybox")
TOOLS = ("podman", "conmon", "crun", "nsenter", "unshare", "findmnt", "mount", "umount", "ldd")
TIMEOUT = 90.0  # any one podman command

# Runs as `sh -c SCRIPT podman-in-lab PRIVATE_VAR_LIB HYBRID_CGROUPS PODMAN ARGS...`
# inside a new mount namespace that shares mount events with the machine's (so
# /run/netns stays one directory); every mount below is made private first so
# nothing this script mounts or unmounts propagates back.
MOUNT_SCRIPT = """set -eu
private_var_lib=$1; hybrid=$2; shift 2
mount --make-private "$(findmnt -n -o TARGET --target /var/lib)"
mount --bind "$private_var_lib" /var/lib
if [ "$hybrid" = 1 ]; then
  mount --make-rprivate /sys/fs/cgroup
  umount /sys/fs/cgroup/unified
fi
exec "$@"
"""


def _missing_prerequisite() -> str | None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} on PATH (apt-get install podman crun conmon)"
    if not BUSYBOX.is_file():
        return f"needs a static {BUSYBOX} for the container (apt-get install busybox-static)"
    ldd = subprocess.run(
        ["ldd", str(BUSYBOX)], capture_output=True, text=True, timeout=30, check=False
    )
    if "not a dynamic executable" not in ldd.stdout + ldd.stderr:
        return f"{BUSYBOX} is dynamically linked; the rootfs needs busybox-static"
    return None


def _hybrid_cgroups() -> bool:
    """crun's own test: cgroup v2 mounted at /sys/fs/cgroup/unified with controllers."""
    unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    mounted = any(
        line.split()[4] == "/sys/fs/cgroup/unified" and " - cgroup2 " in line for line in mounts
    )
    return mounted and unified.is_file() and bool(unified.read_text().strip())


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it has already exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@dataclass
class Container:
    name: str
    id: str
    ip: str
    sandbox: str  # podman's netns file under /run/netns
    conmon_pid: int
    pid: int

    @property
    def host_veth(self) -> str:
        """The host end podnet-cni names for this container's eth0."""
        return CniAttachment(NETWORK, self.id, "eth0", self.sandbox).host_ifname


class Podman:
    """podman in the lab's host netns, configured only by files under ``tmp``."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.hybrid = _hybrid_cgroups()
        self.started: list[Container] = []
        self.bin_dir, self.conf_dir = tmp / "cni-bin", tmp / "net.d"
        self.crun = tmp / "crun"  # crun with its state here (by default /run/crun)
        self.var_lib = tmp / "var-lib"  # what podman sees as /var/lib (libcni's cache)
        for d in (self.var_lib, tmp / "tmp", tmp / "hooks.d"):
            d.mkdir(parents=True)
        self.rootfs = tmp / "rootfs"
        self._write_configs()

    # -- set-up ---------------------------------------------------------------

    def _write_configs(self) -> None:
        t = self.tmp
        # containers.conf has no key for runtime flags, and podman's cleanup
        # process (conmon's exit command) gets no --runtime-flag: a wrapper
        # gives every crun call the private state directory.
        self.crun.write_text(f'#!/bin/sh\nexec /usr/bin/crun --root="{t}/crun-state" "$@"\n')
        self.crun.chmod(0o755)
        # podman's default ulimits (1048576) are a raise, which needs
        # CAP_SYS_RESOURCE; a lower limit never does.
        nofile = min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        nproc = min(1024, resource.getrlimit(resource.RLIMIT_NPROC)[1])
        (t / "containers.conf").write_text(
            f"""[containers]
cgroups = "disabled"
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
log_driver = "k8s-file"
no_hosts = true
seccomp_profile = "/usr/share/containers/seccomp.json"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{self.bin_dir}", "/usr/lib/cni"]
network_config_dir = "{self.conf_dir}"
default_network = "{NETWORK}"

[engine]
runtime = "crun"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{t}/events.log"
lock_type = "file"
tmp_dir = "{t}/libpod"
static_dir = "{t}/storage/libpod"
volume_path = "{t}/volumes"
hooks_dir = ["{t}/hooks.d"]

[engine.runtimes]
crun = ["{self.crun}"]
"""
        )
        (t / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{t}/storage"\nrunroot = "{t}/run"\n'
        )
        (t / "registries.conf").write_text("")

    def env(self) -> dict[str, str]:
        t = self.tmp
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(t),
            "TMPDIR": str(t / "tmp"),
            "CONTAINERS_CONF": str(t / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(t / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(t / "registries.conf"),
        }

    def argv(self, args: Sequence[str]) -> list[str]:
        t = self.tmp
        podman = [
            "podman",
            f"--root={t}/storage",
            f"--runroot={t}/run",
            f"--tmpdir={t}/libpod",
            f"--network-config-dir={self.conf_dir}",
        ]
        return [
            "nsenter",
            f"--net={netns.path(self.lab.host)}",
            "unshare",
            "--mount",
            "--propagation",
            "unchanged",
            "--",
            "sh",
            "-c",
            MOUNT_SCRIPT,
            "podman-in-lab",
            str(self.var_lib),
            "1" if self.hybrid else "0",
            *podman,
            *args,
        ]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """One podman command; on timeout its process group is killed."""
        proc = subprocess.Popen(
            self.argv(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
            raise AssertionError(f"podman {' '.join(args)} timed out:\n{err}") from None
        result = subprocess.CompletedProcess(args, proc.returncode, out, err)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{err}")
        return result

    def install_plugin(self) -> None:
        """`podnet cni install` into the temp dirs: the conflist names the lab's state."""
        self.lab.podnet(
            "cni",
            "install",
            "--bin-dir",
            str(self.bin_dir),
            "--conf-dir",
            str(self.conf_dir),
            "--network",
            NETWORK,
            "--subnet",
            SUBNET,
        )

    def build_rootfs(self) -> None:
        r = self.rootfs
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "www"):
            (r / d).mkdir(parents=True)
        shutil.copy2(BUSYBOX, r / "bin" / "busybox")
        for applet in ("sh", "httpd", "sleep"):
            (r / "bin" / applet).symlink_to("busybox")

    # -- containers -----------------------------------------------------------

    def run(self, name: str, command: Sequence[str], *extra: str) -> Container:
        """A detached container on the podnet network with HOSTPORT published."""
        self(
            "run",
            "-d",
            "--name",
            name,
            "--network",
            NETWORK,
            "-p",
            f"{HOSTPORT}:80",
            "--dns=none",  # no resolv.conf: do not read the machine's
            "--stop-signal=KILL",  # busybox as pid 1 ignores SIGTERM
            *extra,
            "--rootfs",
            str(self.rootfs),
            *command,
        )
        data = json.loads(self("inspect", name).stdout)[0]
        settings = data["NetworkSettings"]
        container = Container(
            name=name,
            id=data["Id"],
            ip=settings["Networks"][NETWORK]["IPAddress"],
            sandbox=settings["SandboxKey"],
            conmon_pid=int(data["State"]["ConmonPid"]),
            pid=int(data["State"]["Pid"]),
        )
        self.started.append(container)
        return container

    def run_web(self, name: str, *extra: str) -> Container:
        """busybox httpd serving an index that names the container."""
        (self.rootfs / "www" / "index.html").write_text(f"hello from {name}\n")
        return self.run(name, ["/bin/httpd", "-f", "-p", "80", "-h", "/www"], *extra)

    def state(self, name: str) -> str:
        return self("inspect", "--format", "{{.State.Status}}", name).stdout.strip()

    def remove(self, container: Container) -> None:
        self("rm", "-f", container.name)

    def close(self) -> None:
        """Remove every container this test started; kill what is left by pid."""
        names = [c.name for c in self.started]
        if names:
            with contextlib.suppress(AssertionError):
                self("rm", "-f", "--ignore", *names, check=False)
        for c in self.started:
            for pid in (c.pid, c.conmon_pid):
                if pid > 0 and _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    with Lab() as lab:
        tmp = Path(tempfile.mkdtemp(prefix=f"podnet-podman-{lab.id}-"))
        pm = Podman(lab, tmp)
        try:
            backend = pm("info", "--format", "{{.Host.NetworkBackend}}").stdout.strip()
            if backend != "cni":
                pytest.skip(f"this podman has no CNI backend (it uses {backend!r})")
            pm.install_plugin()
            pm.build_rootfs()
            yield pm
        finally:
            pm.close()
            shutil.rmtree(tmp, ignore_errors=True)


# -- checks --------------------------------------------------------------------


def links(lab: Lab) -> list[str]:
    with Netlink(lab.host) as nl:
        return [link.name for link in nl.links()]


def agent_running(lab: Lab) -> bool:
    pid = lab.agent_pid()
    return pid is not None and _alive(pid)


def standalone_lock(lab: Lab) -> Path:
    """Only the standalone plugin opens this (the agent serves the fast path)."""
    return lab.settings.state_dir / "cni.lock"


def assert_attached_and_serving(pm: Podman, c: Container) -> None:
    lab = pm.lab
    body = f"hello from {c.name}\n"
    assert ipaddress.ip_address(c.ip) in ipaddress.ip_network(SUBNET)
    assert c.sandbox.startswith("/run/netns/") and netns.exists(c.sandbox), c.sandbox
    assert c.host_veth in links(lab), (c.host_veth, links(lab))
    # podman's CNI cache (what it needs for DEL) is in the private /var/lib
    assert (pm.var_lib / "cni" / "results" / f"{NETWORK}-{c.id}-eth0").is_file()
    # published port: from the external host, and from the host itself
    assert lab.wait_http(lab.external, lab.host_ip, HOSTPORT) == (200, body)
    assert lab.http_get(lab.host, lab.host_ip, HOSTPORT) == (200, body)
    assert lab.http_get(lab.host, "127.0.0.1", HOSTPORT) == (200, body)
    assert lab.http_get(lab.host, c.ip, 80) == (200, body)
    # podman sees the port; podnet holds the attachment (its network refuses removal)
    assert f"80/tcp -> 0.0.0.0:{HOSTPORT}" in pm("port", c.name).stdout
    refused = lab.podnet("network", "rm", NETWORK, check=False)
    assert refused.returncode != 0 and f"container {c.id[:12]}/eth0" in refused.stderr, refused


def assert_released(pm: Podman, c: Container) -> None:
    """Nothing of the container's network is left: veth, netns, CNI cache, processes."""
    lab = pm.lab
    left = [name for name in links(lab) if name.startswith("pnc")]
    assert not left, f"veths left in the lab host: {left}"
    assert not os.path.lexists(c.sandbox), f"podman's netns {c.sandbox} is left"
    assert not (pm.var_lib / "cni" / "results" / f"{NETWORK}-{c.id}-eth0").exists()
    deadline = time.monotonic() + 10
    while (_alive(c.pid) or _alive(c.conmon_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(c.pid) and not _alive(c.conmon_pid), "container or conmon still runs"
    assert not lab.can_connect(lab.external, lab.host_ip, HOSTPORT)


# -- tests -----------------------------------------------------------------------


def test_podman_network_is_podnet_cni(podman: Podman) -> None:
    nets = json.loads(podman("network", "ls", "--format", "json").stdout)
    ours = [n for n in nets if n["name"] == NETWORK]
    assert ours and ours[0]["driver"] == "podnet-cni", nets


def test_container_via_agent_serves_published_port_and_rm_releases_all(podman: Podman) -> None:
    lab = podman.lab
    lab.podnet("network", "ls")  # starts the lab's agent: podnet-cni takes the fast path
    assert agent_running(lab)
    standalone_lock(lab).unlink(missing_ok=True)
    first = podman.run_web(f"web-a-{lab.id}")
    assert_attached_and_serving(podman, first)
    net = json.loads(lab.podnet("network", "inspect", NETWORK).stdout)[0]
    assert net["owner"] == f"cni:{NETWORK}" and net["subnets"] == [SUBNET], net
    podman.remove(first)
    assert podman("ps", "-a", "-q").stdout.strip() == ""
    assert_released(podman, first)
    # the lease and the host port are free again: the same address and port ADD anew
    again = podman.run_web(f"web-b-{lab.id}", "--ip", first.ip)
    assert again.ip == first.ip
    assert_attached_and_serving(podman, again)
    podman.remove(again)
    assert podman("ps", "-a", "-q").stdout.strip() == ""
    assert_released(podman, again)
    assert not standalone_lock(lab).exists()  # every ADD and DEL went to the agent


def test_container_without_agent_uses_standalone_plugin(podman: Podman) -> None:
    lab = podman.lab
    lab.stop_agent()
    assert not agent_running(lab)
    standalone_lock(lab).unlink(missing_ok=True)
    c = podman.run_web(f"web-c-{lab.id}")
    assert not agent_running(lab) and standalone_lock(lab).exists()  # work done in-process
    body = f"hello from {c.name}\n"
    assert c.host_veth in links(lab)
    assert lab.wait_http(lab.external, lab.host_ip, HOSTPORT) == (200, body)
    assert lab.http_get(lab.host, "127.0.0.1", HOSTPORT) == (200, body)
    podman.remove(c)
    assert not agent_running(lab)
    assert podman("ps", "-a", "-q").stdout.strip() == ""
    assert_released(podman, c)
    # an agent started now finds no attachment left: the network can go
    lab.podnet("network", "rm", NETWORK)


def test_container_that_exits_is_released_by_podmans_cleanup(podman: Podman) -> None:
    """No rm: conmon runs `podman container cleanup` (a sparse environment), which
    calls DEL; the standalone plugin must release everything from there."""
    lab = podman.lab
    lab.stop_agent()
    c = podman.run(f"short-{lab.id}", ["/bin/sleep", "2"])
    assert c.host_veth in links(lab)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        podman.state(c.name) != "exited" or c.host_veth in links(lab) or netns.exists(c.sandbox)
    ):
        time.sleep(0.1)
    assert podman.state(c.name) == "exited"
    assert not agent_running(lab)
    assert_released(podman, c)
    assert json.loads(podman("ps", "-a", "--format", "json").stdout)[0]["Exited"]
    lab.podnet("network", "rm", NETWORK)  # no attachment record or lease is left
    podman.remove(c)
    assert podman("ps", "-a", "-q").stdout.strip() == ""
