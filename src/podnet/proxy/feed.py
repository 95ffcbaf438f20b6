"""Where a worker's snapshots come from: a JSON file, or the agent (long-poll).

:class:`SnapshotFile` reads ``Snapshot.to_dict`` JSON from a file, again when
its modification time or size changes (polled every :data:`POLL_EVERY`
seconds) and on :meth:`SnapshotFile.reload` (SIGHUP). A file that does not
parse is reported on stderr and the current snapshot stays.

:class:`AgentFeed` asks the agent over its unix socket,
``GET /v1/proxies/NAME/snapshot?wait=VERSION``: the agent answers 200 with a
newer snapshot, or 304 after about 25 s without change; errors are retried
with a capped backoff. The HTTP exchange uses the proxy's own framing core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from podnet.errors import PodnetError
from podnet.model.route import Snapshot
from podnet.proxy.errors import ProtocolError
from podnet.proxy.http1 import (
    Connection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Headers,
    Request,
    Response,
    Role,
)

__all__ = ["POLL_EVERY", "AgentFeed", "SnapshotFile", "load_snapshot"]

POLL_EVERY: Final = 0.5
_RETRY_MAX: Final = 5.0
_LONG_POLL: Final = 40.0  # the agent answers within ~25 s

OnSnapshot = Callable[[Snapshot], None]


def load_snapshot(path: Path) -> Snapshot:
    """Parse the snapshot file at ``path``.

    Raises:
        PodnetError: unreadable file, bad JSON or an invalid snapshot.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Snapshot.from_dict(data)
    except PodnetError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PodnetError(
            f"cannot load snapshot {path}: {error}", hint="write Snapshot.to_dict() JSON"
        ) from None


def _warn(message: str) -> None:
    print(f"podnet proxy: {message}", file=sys.stderr, flush=True)


class SnapshotFile:
    """Follow a snapshot file; call ``on_snapshot`` with each new version."""

    def __init__(self, path: Path, on_snapshot: OnSnapshot) -> None:
        self.path = path
        self.on_snapshot = on_snapshot
        self._stamp: tuple[int, int] | None = None
        self._version: int | None = None

    def load(self) -> Snapshot:
        """Load the file now (first load: errors propagate)."""
        stamp = self._read_stamp()
        snapshot = load_snapshot(self.path)
        self._stamp = stamp
        self._apply(snapshot)
        return snapshot

    def reload(self) -> None:
        """Load the file again (SIGHUP); keep the current snapshot if it is broken."""
        try:
            stamp = self._read_stamp()
            snapshot = load_snapshot(self.path)
        except PodnetError as error:
            _warn(str(error))
            return
        self._stamp = stamp
        self._apply(snapshot)

    def _apply(self, snapshot: Snapshot) -> None:
        self._version = snapshot.version
        self.on_snapshot(snapshot)

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    async def follow(self) -> None:
        """Poll the file until cancelled."""
        while True:
            await asyncio.sleep(POLL_EVERY)
            stamp = self._read_stamp()
            if stamp is not None and stamp != self._stamp:
                self.reload()


class AgentFeed:
    """Long-poll the agent for this proxy's snapshot."""

    def __init__(self, socket_path: Path, name: str, on_snapshot: OnSnapshot) -> None:
        self.socket_path = socket_path
        self.name = name
        self.on_snapshot = on_snapshot
        self.version: int | None = None
        self.ready = asyncio.Event()

    async def follow(self) -> None:
        """Ask for snapshots until cancelled; errors are retried with backoff."""
        delay, last_error = 0.1, ""
        while True:
            try:
                snapshot = await self.fetch(self.version)
            except (OSError, PodnetError, TimeoutError) as error:
                if str(error) != last_error:  # say it once, not at every retry
                    last_error = str(error)
                    _warn(f"snapshot from the agent: {error or 'timed out'}")
                await asyncio.sleep(delay)
                delay = min(_RETRY_MAX, delay * 2)
                continue
            delay, last_error = 0.1, ""
            if snapshot is not None and snapshot.version != self.version:
                self.version = snapshot.version
                self.on_snapshot(snapshot)
                self.ready.set()

    async def fetch(self, wait: int | None) -> Snapshot | None:
        """One request; None on 304 (no change).

        Raises:
            OSError: no agent on the socket.
            PodnetError: the agent answered an error or garbage.
        """
        target = f"/v1/proxies/{self.name}/snapshot"
        if wait is not None:
            target += f"?wait={wait}"
        async with asyncio.timeout(_LONG_POLL):
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
            try:
                return await self._exchange(reader, writer, target.encode())
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: bytes
    ) -> Snapshot | None:
        conn = Connection(Role.CLIENT)
        headers = Headers([(b"Host", b"podnet"), (b"Connection", b"close")])
        writer.write(
            conn.send(Request(b"GET", target, b"1.1", headers)) + conn.send(EndOfMessage())
        )
        status, body = 0, bytearray()
        try:
            while True:
                data = await reader.read(65536)
                events = conn.receive_data(data) if data else conn.receive_eof()
                for event in events:
                    if isinstance(event, Response) and event.status >= 200:
                        status = event.status
                    elif isinstance(event, Data):
                        body += event.data
                    elif isinstance(event, EndOfMessage | ConnectionClosed):
                        return self._parse(status, bytes(body))
                if not data:
                    raise PodnetError("agent closed the connection without an answer")
        except ProtocolError as error:
            raise PodnetError(f"bad answer from the agent: {error}") from None

    def _parse(self, status: int, body: bytes) -> Snapshot | None:
        if status == 304:
            return None
        if status != 200:
            raise PodnetError(f"agent answered {status}: {body[:200]!r}")
        try:
            return Snapshot.from_dict(json.loads(body))
        except (ValueError, KeyError, TypeError) as error:
            raise PodnetError(f"agent sent an invalid snapshot: {error}") from None
