"""Named network namespaces, the same ones ``ip netns`` shows.

Theory of operation: a named netns is a bind mount of a namespace file onto
``/run/netns/NAME``; the mount keeps the namespace alive with no process in it.
Linux switches network namespaces per *thread* (``setns(fd, CLONE_NEWNET)``),
so podnet never moves its own threads around: :func:`run_in` starts a fresh
thread, enters the namespace there, runs a function and ends the thread.
Anything the function creates that belongs to a netns (a socket, a netlink
socket, a child process, a ``/proc/sys/net`` file) belongs to that namespace
for good. Creating a namespace works the same way: a fresh thread unshares its
network namespace and bind-mounts ``/proc/thread-self/ns/net``. Nothing forks,
which is both faster and safe in a process that runs other threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar, cast

from podnet.errors import AlreadyExists, InvalidInput, NotFound
from podnet.kernel._errors import translated, where

__all__ = [
    "CLONE_NEWNET",
    "NETNS_DIR",
    "create",
    "delete",
    "ensure",
    "enter_fd",
    "exists",
    "list_names",
    "open_fd",
    "path",
    "run_in",
]

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SHARED = 0x100000
_MNT_DETACH = 0x2
_NAME_MAX = 255

# Python 3.11 has no os.setns/os.unshare (3.12 adds them) and no mount at
# all; the running process's own symbols include glibc's.
_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), what)


def _check_name(name: str) -> str:
    if not name or "/" in name or "\0" in name or name in {".", ".."} or len(name) > _NAME_MAX:
        raise InvalidInput(
            f"network namespace name {name!r} is not valid",
            hint="use 1-255 characters, no '/', not '.' or '..'",
        )
    return name


def path(name: str) -> str:
    """The file that holds the netns: ``/run/netns/NAME``.

    An absolute path (what container runtimes pass as CNI_NETNS, such as
    ``/proc/PID/ns/net`` or ``/var/run/netns/cni-...``) is taken as it is.
    """
    if name.startswith("/"):
        return name
    return str(NETNS_DIR / _check_name(name))


@functools.cache
def _nsfs_dev() -> int:
    # Every namespace file lives on the nsfs pseudo file system: a name whose
    # file sits on the same device is a mounted netns, not a stale empty file.
    return os.stat("/proc/self/ns/net").st_dev


def exists(name: str) -> bool:
    """True if ``/run/netns/NAME`` is a mounted network namespace."""
    try:
        return os.stat(path(name)).st_dev == _nsfs_dev()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False


def list_names(prefix: str = "") -> list[str]:
    """Sorted names under ``/run/netns`` (as ``ip netns list``) starting with ``prefix``."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


@dataclass(slots=True)
class _Outcome(Generic[T]):
    value: T | None = None
    error: BaseException | None = None


def _on_fresh_thread(fn: Callable[[], T]) -> T:
    outcome: _Outcome[T] = _Outcome()

    def body() -> None:
        try:
            outcome.value = fn()
        except BaseException as exc:  # handed to the caller, who re-raises it
            outcome.error = exc

    thread = threading.Thread(target=body, name="podnet-netns", daemon=True)
    thread.start()
    thread.join()
    if outcome.error is not None:
        raise outcome.error
    return cast(T, outcome.value)


def open_fd(name: str | None) -> int:
    """Open a netns file read-only; the caller closes the descriptor.

    Args:
        name: a named netns, or None for the *calling thread's* netns (the
            process's own unless the thread was moved by :func:`run_in`).

    Raises:
        NotFound: no netns of that name.
    """
    target = "/proc/thread-self/ns/net" if name is None else path(name)
    if name is not None and not exists(name):
        raise NotFound(f"netns {name!r} does not exist", hint="see `ip netns list`")
    with translated(f"opening {where(name)}"):
        return os.open(target, os.O_RDONLY | os.O_CLOEXEC)


def enter_fd(fd: int, label: str | None = None) -> None:
    """Move the calling thread into the netns open at ``fd`` (for worker threads)."""
    with translated(f"entering {where(label)}"):
        _check(_libc.setns(fd, CLONE_NEWNET), "setns")


def run_in(name: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` in the named netns and return its result.

    ``fn`` runs on a fresh thread that has entered the namespace, so sockets
    and processes it creates live there; its exception is re-raised here.

    Args:
        name: the netns, or None to just call ``fn`` on the calling thread.
        fn: what to run; it must not expect thread-local state of the caller.

    Raises:
        NotFound: no netns of that name.
        KernelError: entering it failed.
    """
    if name is None:
        return fn()
    fd = open_fd(name)
    try:

        def entered() -> T:
            enter_fd(fd, name)
            return fn()

        return _on_fresh_thread(entered)
    finally:
        os.close(fd)


def _share_dir() -> None:
    # Like `ip netns add`: make /run/netns a shared mount (bind-mounting it
    # onto itself first if it is not a mount point), so namespace mounts and
    # unmounts propagate into mount namespaces cloned from ours.
    NETNS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    d = bytes(NETNS_DIR)
    if _libc.mount(b"none", d, None, _MS_SHARED | _MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        _check(-1, "mount --make-shared")
    _check(_libc.mount(d, d, None, _MS_BIND | _MS_REC, None), "mount --bind")
    _check(_libc.mount(b"none", d, None, _MS_SHARED | _MS_REC, None), "mount --make-shared")


def _claim_file(name: str) -> None:
    try:
        os.close(os.open(path(name), os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        if exists(name):
            raise AlreadyExists(f"netns {name!r} already exists") from None
        # An empty file without a mount is left over from a crash between
        # these two steps; taking it over is what makes create() restartable.


def _unshare_and_bind(target: str) -> None:
    # Runs on a throwaway thread: unshare() gives only this thread a new netns.
    _check(_libc.unshare(CLONE_NEWNET), "unshare")
    mount = _libc.mount(b"/proc/thread-self/ns/net", target.encode(), None, _MS_BIND, None)
    _check(mount, "mount --bind")


def create(name: str) -> None:
    """Create the named netns (as ``ip netns add NAME``), its loopback down.

    Raises:
        AlreadyExists: a netns of that name exists.
        InvalidInput: the name cannot be a file name.
        KernelError: the kernel refused (not root?).
    """
    target = path(name)
    with translated(f"creating netns {name!r}"):
        _share_dir()
        _claim_file(name)
        try:
            _on_fresh_thread(lambda: _unshare_and_bind(target))
        except BaseException:
            _remove_file(target)
            raise


def ensure(name: str) -> bool:
    """Create the named netns unless it exists; True if this call created it."""
    if exists(name):
        return False
    try:
        create(name)
    except AlreadyExists:  # created meanwhile by someone else: fine
        return False
    return True


def _remove_file(target: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)


def delete(name: str) -> bool:
    """Remove the named netns (as ``ip netns del``); idempotent.

    The namespace itself lives on while a process or socket still uses it.

    Returns:
        True if a netns of that name existed.

    Raises:
        KernelError: unmounting or removing the file failed.
    """
    target = path(name)
    if not os.path.lexists(target):
        return False
    existed = exists(name)
    with translated(f"deleting netns {name!r}"):
        # EINVAL: not a mount point (a stale file); the unlink still cleans it.
        if _libc.umount2(target.encode(), _MNT_DETACH) != 0 and ctypes.get_errno() not in (
            errno.EINVAL,
            errno.ENOENT,
        ):
            _check(-1, "umount")
        _remove_file(target)
    return existed
