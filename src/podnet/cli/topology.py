"""``podnet up|down|reset`` and ``podnet topology schema``."""

from __future__ import annotations

import argparse
from pathlib import Path

from podnet.api.http import ApiClient
from podnet.cli.render import print_json
from podnet.errors import InvalidInput

__all__ = ["add_parsers", "run"]

VERBS = ("up", "down", "reset")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="create or update what a topology file declares")
    up.add_argument("-f", "--file", required=True)
    up.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    up.add_argument("--json", action="store_true")
    down = sub.add_parser("down", help="remove what a topology file declares")
    down.add_argument("-f", "--file")
    down.add_argument("--all", action="store_true", help="remove every network and pod")
    down.add_argument("--json", action="store_true")
    sub.add_parser("reset", help="remove everything podnet owns on this node")


def _read(path: str) -> dict[str, str]:
    try:
        return {"text": Path(path).read_text(), "filename": path}
    except OSError as exc:
        raise InvalidInput(f"cannot read topology file {path}: {exc.strerror}") from None


def _show(result: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    changes = result.get("changes") or ["(no changes)"]
    for line in changes:  # type: ignore[attr-defined]
        print(line)
    steps = result.get("steps")
    if steps:
        print("\nplan:")
        for step in steps:  # type: ignore[attr-defined]
            print("  " + str(step).replace("\n", "\n  "))


def run(client: ApiClient, args: argparse.Namespace) -> int:
    if args.cmd == "up":
        result = client.post("/v1/up", {**_read(args.file), "dry_run": args.dry_run})
        _show(result, args.json)
    elif args.cmd == "down":
        if not args.all and not args.file:
            raise InvalidInput("down needs -f FILE or --all")
        body = {"all": True} if args.all else _read(args.file)
        _show(client.post("/v1/down", body), args.json)
    elif args.cmd == "reset":
        client.post("/v1/reset")
        print("podnet reset: every network, pod and rule it owned is gone")
    return 0
