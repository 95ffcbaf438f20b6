"""``podnet run|ps|exec|logs|stop|start|rm|inspect|port``."""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import sys
import time
from typing import Any

from podnet.api.http import ApiClient
from podnet.cli.args import key_values
from podnet.cli.render import print_json, table
from podnet.errors import InvalidInput
from podnet.model.pod import Attachment, PodSpec
from podnet.model.ports import PortMapping

__all__ = ["add_parsers", "run"]

VERBS = ("run", "ps", "exec", "logs", "stop", "start", "rm", "inspect", "port")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run_p = sub.add_parser("run", help="create a pod and start its command")
    run_p.add_argument("--name", required=True)
    run_p.add_argument("--net", "--network", action="append", dest="nets", help="repeatable")
    run_p.add_argument("--ip", action="append", help="fixed address on the first network")
    run_p.add_argument("-p", "--publish", action="append", help="[HOST_IP:]HOST:POD[/proto]")
    run_p.add_argument("-l", "--label", action="append", help="KEY=VALUE")
    run_p.add_argument("-e", "--env", action="append", help="KEY=VALUE")
    run_p.add_argument("--restart", default="no", help="no | on-failure | always")
    run_p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    ps = sub.add_parser("ps", help="list pods")
    ps.add_argument("-a", "--all", action="store_true", help="accepted for docker habits")
    ps.add_argument("--json", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true", help="names only")
    ex = sub.add_parser("exec", help="run a command inside a pod's network namespace")
    ex.add_argument("name")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    logs = sub.add_parser("logs", help="show a pod's output")
    logs.add_argument("name")
    logs.add_argument("--tail", type=int, default=0)
    logs.add_argument("-f", "--follow", action="store_true")
    for verb, text in (("stop", "stop pods"), ("start", "start pods"), ("inspect", "show pods")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("names", nargs="+")
    rm = sub.add_parser("rm", help="remove pods")
    rm.add_argument("-f", "--force", action="store_true", help="stop running pods first")
    rm.add_argument("names", nargs="+")
    port = sub.add_parser("port", help="list a pod's published ports")
    port.add_argument("name")


def _command(words: list[str]) -> tuple[str, ...]:
    if words and words[0] == "--":
        words = words[1:]
    if len(words) == 1 and " " in words[0]:
        words = shlex.split(words[0])
    return tuple(words)


def _spec(args: argparse.Namespace) -> PodSpec:
    nets = args.nets or []
    ips = tuple(ipaddress.ip_address(i) for i in args.ip or [])
    if ips and not nets:
        raise InvalidInput("--ip needs --net", hint="give the network the address belongs to")
    attachments = tuple(
        Attachment(net, f"eth{i}", ips if i == 0 else ()) for i, net in enumerate(nets)
    )
    return PodSpec(
        name=args.name,
        attachments=attachments,
        ports=tuple(PortMapping.parse(p) for p in args.publish or []),
        labels=key_values(args.label, "label"),
        env=key_values(args.env, "env"),
        command=_command(args.command),
        restart=args.restart,
    ).validate()


def _ips(pod: dict[str, Any]) -> str:
    return ", ".join(a.split("/")[0] for i in pod["interfaces"] for a in i["addresses"])


def _ports(pod: dict[str, Any]) -> str:
    return ", ".join(str(PortMapping.from_dict(p)) for p in pod["ports"])


def _state(pod: dict[str, Any]) -> str:
    status = pod["status"]
    state = str(status["state"])
    if state == "running" and status.get("started_at"):
        return f"running {_ago(status['started_at'])}"
    if state == "exited":
        return f"exited ({status.get('exit_code')})"
    return state


def _ago(when: float) -> str:
    secs = max(0, int(time.time() - when))
    if secs < 120:
        return f"{secs}s"
    return f"{secs // 60}m" if secs < 7200 else f"{secs // 3600}h"


def _ps(client: ApiClient, args: argparse.Namespace) -> None:
    pods = sorted(client.get("/v1/pods"), key=lambda p: p["name"])
    if args.json:
        print_json(pods)
        return
    if args.quiet:
        for p in pods:
            print(p["name"])
        return
    rows = [
        (
            p["name"],
            ", ".join(i["network"] for i in p["interfaces"]),
            _ips(p),
            _ports(p),
            _state(p),
            shlex.join(p["command"])[:40],
        )
        for p in pods
    ]
    table(["POD", "NETWORKS", "IPS", "PORTS", "STATE", "COMMAND"], rows)


def _logs(client: ApiClient, args: argparse.Namespace) -> None:
    pod = client.get(f"/v1/pods/{args.name}")
    if not args.follow:
        sys.stdout.write(client.get(f"/v1/pods/{args.name}/logs?tail={args.tail}")["log"])
        return
    with open(pod["log_path"], errors="replace") as f:
        sys.stdout.write(f.read())
        while True:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)


def _exec(client: ApiClient, args: argparse.Namespace) -> int:
    pod = client.get(f"/v1/pods/{args.name}")
    command = list(_command(args.command)) or ["sh"]
    os.execvp("ip", ["ip", "netns", "exec", pod["netns"], *command])
    return 127  # not reached


def run(client: ApiClient, args: argparse.Namespace) -> int:
    if args.cmd == "run":
        pod = client.post("/v1/pods", _spec(args).to_dict())
        print(pod["name"])
    elif args.cmd == "ps":
        _ps(client, args)
    elif args.cmd == "exec":
        return _exec(client, args)
    elif args.cmd == "logs":
        _logs(client, args)
    elif args.cmd in ("stop", "start"):
        for name in args.names:
            client.post(f"/v1/pods/{name}/{args.cmd}")
            print(name)
    elif args.cmd == "rm":
        for name in args.names:
            client.delete(f"/v1/pods/{name}?force={'true' if args.force else 'false'}")
            print(name)
    elif args.cmd == "inspect":
        print_json([client.get(f"/v1/pods/{n}") for n in args.names])
    elif args.cmd == "port":
        pod = client.get(f"/v1/pods/{args.name}")
        for mapping in pod["ports"]:
            m = PortMapping.from_dict(mapping)
            print(f"{m.pod_port}/{m.protocol} -> {m.host_ip or '0.0.0.0'}:{m.host_port}")
    return 0
