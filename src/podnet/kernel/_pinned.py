"""A netlink socket, and the one thread that uses it, living inside a netns.

Why a thread per socket: a netlink socket talks to the netns it was created
in, and pyroute2 keeps its socket and event loop per thread (a second calling
thread would get a second socket, created in *that* thread's netns). Pinning
one thread into the target netns and running every request there gives one
socket, in the right place, usable from any caller thread, with requests
serialised. A hand-off costs tens of microseconds and opening costs about a
millisecond; the alternative, ``IPRoute(netns=...)``, forks a child process
per open (about 6 ms here, and fork in a threaded process is a hazard).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pyroute2 import IPRoute

from podnet.kernel._errors import translated, where
from podnet.kernel.netns import enter_fd

__all__ = ["PinnedIPRoute", "PinnedThread"]

T = TypeVar("T")


class PinnedThread:
    """Runs functions, in order, on one thread that entered the netns at ``fd``.

    The thread holds the netns from then on, so ``fd`` may be closed.
    """

    def __init__(self, fd: int, label: str | None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podnet-pinned")
        try:
            # The first task enters the netns; max_workers=1 means the pool
            # never starts another thread, so every later task runs there too.
            self.call(lambda: enter_fd(fd, label))
        except BaseException:
            self._pool.shutdown(wait=True)
            raise

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the pinned thread; return its result or raise its error."""
        return self._pool.submit(fn).result()

    def close(self) -> None:
        """Stop the thread after the calls already queued."""
        self._pool.shutdown(wait=True)


class PinnedIPRoute:
    """A pyroute2 ``IPRoute`` created, and always used, on a :class:`PinnedThread`."""

    def __init__(self, fd: int, label: str | None) -> None:
        self._thread = PinnedThread(fd, label)
        try:
            with translated(f"opening a netlink socket in {where(label)}"):
                self._ipr: Any = self._thread.call(IPRoute)
        except BaseException:
            self._thread.close()
            raise

    def run(self, request: Callable[[Any], T]) -> T:
        """Run ``request(ipr)`` on the pinned thread (errors are pyroute2's)."""
        return self._thread.call(lambda: request(self._ipr))

    def close(self) -> None:
        """Close the socket, then stop the thread."""
        try:
            self._thread.call(self._ipr.close)
        finally:
            self._thread.close()
