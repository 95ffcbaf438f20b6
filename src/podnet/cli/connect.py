"""Reach the agent, starting it in the background when it is not running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from podnet.api.http import ApiClient
from podnet.errors import PodnetError
from podnet.settings import Settings

__all__ = ["connect"]

_START_TIMEOUT = 60.0


def _answers(settings: Settings) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(settings.socket_path))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def start_agent(settings: Settings) -> None:
    """Start ``podnet agent`` detached, logging to the state directory."""
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = settings.state_dir / "agent.log"
    env = {**os.environ, **settings.to_env()}
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "podnet", "agent"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if _answers(settings):
            return
        if child.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            raise PodnetError(
                "the podnet agent could not start: " + " | ".join(tail),
                hint=f"see {log_path}",
            )
        time.sleep(0.05)
    raise PodnetError("the podnet agent did not answer in time", hint=f"see {log_path}")


def connect(settings: Settings, *, start: bool = True) -> ApiClient:
    """A client of the running agent; starts one when absent and ``start``."""
    if not _answers(settings):
        if not start:
            raise PodnetError(
                f"no podnet agent answers on {settings.socket_path}",
                hint="start one with 'podnet agent'",
            )
        start_agent(settings)
    return ApiClient(settings.socket_path)
