"""``podnet-cni``: the CNI plugin executable.

Fast path: when an agent answers on its socket, forward the environment and
stdin to it (``POST /v1/cni``) and print what it answers, so the work happens
in a warm process. Standalone: otherwise assemble the same service layer here,
under a file lock, and do the work in-process. Both run the same
``CniOps.run_cni``, so both give the same result.

Runtimes call plugins with a clean environment, so where podnet keeps its state
comes from the network configuration (``stateDir``, ``runDir``, ``nftTable``),
then PODNET_* variables, then the defaults. The fast path imports nothing but
the standard library: a plugin is exec'd for every container.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
from typing import Any

__all__ = ["main"]

_CONF_SETTINGS = {"stateDir": "state_dir", "runDir": "run_dir", "nftTable": "nft_table"}
_TIMEOUT = 120.0


def _conf(stdin: bytes) -> dict[str, Any] | None:
    """The configuration, or None when stdin is not a JSON object."""
    try:
        data = json.loads(stdin)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _unreadable(env: dict[str, str], stdin: bytes) -> tuple[int, str]:
    """Answer a request whose configuration cannot be read, without opening any
    state: where that state lives (stateDir, runDir) is in the unreadable part."""
    from podnet.cni.spec import CniError, parse_config, parse_env, reply_version

    try:
        parse_env(env)
        parse_config(stdin)
    except CniError as exc:
        return 1, json.dumps(exc.to_json(reply_version(stdin)))
    raise AssertionError("parse_config accepted what json.loads refused")


def _socket_path(conf: dict[str, Any]) -> str:
    run_dir = conf.get("runDir") or os.environ.get("PODNET_RUN_DIR") or "/run/podnet"
    return os.path.join(str(run_dir), "agent.sock")


def _fast_path(path: str, env: dict[str, str], stdin: bytes) -> tuple[int, str] | None:
    """Ask the agent; None when no agent answers (then do the work here)."""
    body = json.dumps({"env": env, "stdin": base64.b64encode(stdin).decode()}).encode()
    head = (
        "POST /v1/cni HTTP/1.1\r\nHost: podnet\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except OSError:
            return None
        sock.settimeout(_TIMEOUT)
        sock.sendall(head + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    raw = b"".join(chunks)
    status_line, _, rest = raw.partition(b"\r\n")
    payload = json.loads(rest.partition(b"\r\n\r\n")[2] or b"{}")
    if b" 200 " not in status_line:
        message = payload.get("error", {}).get("message", status_line.decode(errors="replace"))
        return 1, json.dumps({"cniVersion": "1.1.0", "code": 11, "msg": message})
    return int(payload["exit"]), str(payload["stdout"])


def _standalone(conf: dict[str, Any], env: dict[str, str], stdin: bytes) -> tuple[int, str]:
    import fcntl

    from podnet.agent.assemble import assemble
    from podnet.agent.cni_ops import CniOps
    from podnet.settings import Settings

    overrides = {attr: conf[key] for key, attr in _CONF_SETTINGS.items() if conf.get(key)}
    settings = Settings.from_env(**overrides)
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(settings.state_dir / "cni.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one standalone plugin at a time, as host-local
        node = assemble(settings, supervise=False)
        try:
            return CniOps(node.service).run_cni(env, stdin)
        finally:
            node.store.close()


def main() -> int:
    """Entry point of ``podnet-cni``; exit status 0 or 1, the spec's JSON on stdout."""
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
    conf = _conf(stdin)
    try:
        if env.get("CNI_COMMAND") == "VERSION":
            from podnet.cni.version import requested_version, version_info

            code, out = 0, json.dumps(version_info(requested_version(stdin)))
        elif conf is None:
            code, out = _unreadable(env, stdin)
        else:
            reply = _fast_path(_socket_path(conf), env, stdin)
            code, out = reply if reply is not None else _standalone(conf, env, stdin)
    except Exception as exc:  # the runtime must always get the spec's JSON
        print(f"podnet-cni: {type(exc).__name__}: {exc}", file=sys.stderr)
        msg = f"podnet-cni failed: {exc}"
        code, out = 1, json.dumps({"cniVersion": "1.1.0", "code": 999, "msg": msg})
    if out:
        sys.stdout.write(out + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
