"""``podnet cni install``: place podnet-cni where runtimes look, with an example conflist."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from podnet.errors import InvalidInput
from podnet.settings import Settings

__all__ = ["add_parser", "example_conflist", "install"]

PLUGIN = "podnet-cni"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cni = sub.add_parser("cni", help="the CNI plugin for container runtimes")
    verbs = cni.add_subparsers(dest="verb", required=True)
    inst = verbs.add_parser("install", help="place podnet-cni and an example conflist")
    inst.add_argument("--bin-dir", default="/opt/cni/bin", help="default /opt/cni/bin")
    inst.add_argument("--conf-dir", default="/etc/cni/net.d", help="default /etc/cni/net.d")
    inst.add_argument("--network", default="podnet", help="name of the example network")
    inst.add_argument("--subnet", default="10.88.0.0/16", help="subnet of the example network")
    inst.add_argument("--no-conf", action="store_true", help="only place the plugin")
    verbs.add_parser("conflist", help="print the example conflist")


def example_conflist(settings: Settings, network: str, subnet: str) -> dict[str, Any]:
    """An example conflist: podnet-cni first (it publishes ports itself through
    the portMappings capability), then the reference tuning plugin."""
    return {
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {
                "type": PLUGIN,
                "bridge": f"pn-{network}"[:15],
                "isGateway": True,
                "ipMasq": True,
                "subnet": subnet,
                "stateDir": str(settings.state_dir),
                "runDir": str(settings.run_dir),
                "capabilities": {"portMappings": True, "ips": True, "mac": True, "dns": True},
            },
            {"type": "tuning"},
        ],
    }


def _plugin_source() -> Path:
    """The native forwarder when it was built (make deps), else the Python plugin."""
    fast = Path(sys.executable).parent / f"{PLUGIN}-fast"
    if fast.exists():
        return fast
    here = Path(sys.executable).parent / PLUGIN
    found = here if here.exists() else shutil.which(PLUGIN)
    if not found:
        raise InvalidInput(
            f"{PLUGIN} is not installed next to this podnet",
            hint="install podnet with pip (make deps) so the console script exists",
        )
    return Path(found)


def install(settings: Settings, args: argparse.Namespace) -> list[str]:
    """Copy the plugin into ``--bin-dir`` and write ``--conf-dir/<network>.conflist``."""
    bin_dir, done = Path(args.bin_dir), []
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / PLUGIN
    tmp = target.with_suffix(".tmp")
    shutil.copy2(_plugin_source(), tmp)  # both name this virtualenv's Python plugin
    os.replace(tmp, target)  # atomic: a runtime never execs half a file
    done.append(f"installed {target}")
    if not args.no_conf:
        conf_dir = Path(args.conf_dir)
        conf_dir.mkdir(parents=True, exist_ok=True)
        path = conf_dir / f"{args.network}.conflist"
        conf = example_conflist(settings, args.network, args.subnet)
        path.write_text(json.dumps(conf, indent=2) + "\n")
        done.append(f"wrote {path}")
    return done
