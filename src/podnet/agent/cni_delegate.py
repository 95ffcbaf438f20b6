"""Delegated IPAM: run an IPAM plugin from CNI_PATH, as the spec's section 4 says
(same environment, the whole network configuration on stdin)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from podnet.cni.spec import CniError, ErrorCode, Result

__all__ = ["run_ipam"]

_TIMEOUT = 60.0


def _find(plugin: str, path: Sequence[str]) -> str:
    for directory in path:
        candidate = os.path.join(directory, plugin)
        if os.access(candidate, os.X_OK):
            return candidate
    raise CniError(
        ErrorCode.INVALID_NETWORK_CONFIG,
        f"IPAM plugin {plugin!r} was not found in CNI_PATH",
        f"looked in: {':'.join(path) or '(CNI_PATH is empty)'}; install it or fix ipam.type",
    )


def run_ipam(
    plugin: str,
    command: str,
    *,
    env: Mapping[str, str],
    path: Sequence[str],
    raw_conf: Mapping[str, Any],
    version: str,
) -> Result | None:
    """Run ``plugin`` for ``command`` (ADD, DEL, CHECK, GC); ADD returns its result.

    Raises:
        CniError: the plugin's own error, or code 5 when it cannot be run.
    """
    child_env = {**env, "CNI_COMMAND": command}
    try:
        proc = subprocess.run(
            [_find(plugin, path)],
            input=json.dumps(raw_conf).encode(),
            env=child_env,
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CniError(ErrorCode.IO_FAILURE, f"running IPAM plugin {plugin!r}: {exc}") from None
    if proc.returncode != 0:
        try:
            raise CniError.from_json(json.loads(proc.stdout or b"{}"))
        except (ValueError, TypeError):
            stderr = proc.stderr.decode(errors="replace").strip()
            raise CniError(
                ErrorCode.IO_FAILURE, f"IPAM plugin {plugin!r} failed: {stderr}"
            ) from None
    if command != "ADD":
        return None
    try:
        return Result.from_json(json.loads(proc.stdout), default_version=version)
    except ValueError as exc:
        raise CniError(
            ErrorCode.DECODING_FAILURE, f"IPAM plugin {plugin!r} printed no result: {exc}"
        ) from None
