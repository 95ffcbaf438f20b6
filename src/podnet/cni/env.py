"""The invocation: protocol parameters passed in environment variables.

Spec 1.1.0 section 2, "Parameters" and the "Input" of each operation:

=========  =============================================  ==========================
command    required                                       optional
=========  =============================================  ==========================
ADD        CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME          CNI_ARGS, CNI_PATH
DEL        CNI_CONTAINERID, CNI_IFNAME                     CNI_NETNS, CNI_ARGS, CNI_PATH
CHECK      CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME          CNI_ARGS, CNI_PATH
GC         CNI_PATH                                        --
STATUS     --                                              CNI_PATH
VERSION    --                                              --
=========  =============================================  ==========================

GC, STATUS and VERSION have no attachment parameters (section 3, "Garbage-
collecting a network"), so podnet ignores CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME
and CNI_ARGS for them. Every problem here is code 4, whose message must name
the variables (section 5, "Error").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from podnet.cni.errors import CniError, ErrorCode

__all__ = [
    "Command",
    "Invocation",
    "check_container_id",
    "check_ifname",
    "parse_cni_args",
    "parse_env",
]


class Command(StrEnum):
    """The value of CNI_COMMAND."""

    ADD = "ADD"
    DEL = "DEL"
    CHECK = "CHECK"
    GC = "GC"
    STATUS = "STATUS"
    VERSION = "VERSION"


_REQUIRED: Mapping[Command, tuple[str, ...]] = {
    Command.ADD: ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    Command.DEL: ("CNI_CONTAINERID", "CNI_IFNAME"),
    Command.CHECK: ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    Command.GC: ("CNI_PATH",),
    Command.STATUS: (),
    Command.VERSION: (),
}
_ATTACHMENT_COMMANDS = frozenset({Command.ADD, Command.DEL, Command.CHECK})
_COMMANDS = ", ".join(Command)

# Section 2: "Must start with an alphanumeric character, optionally followed by
# any combination of one or more alphanumeric characters, underscore, dot or
# hyphen." ASCII, as libcni's validator reads it.
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_IFNAMSIZ = 16
_IGNORE_UNKNOWN = "IgnoreUnknown"
_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"0", "false"})


def _env_error(msg: str, details: str = "") -> CniError:
    return CniError(ErrorCode.INVALID_ENVIRONMENT, msg, details)


@dataclass(frozen=True, slots=True)
class Invocation:
    """What the runtime asked for, from the environment.

    Parameters a command does not take are "" (and ``args`` empty); ``netns``
    may be "" on DEL, where it is optional.
    """

    command: Command
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()
    ignore_unknown: bool = False

    @property
    def attachment(self) -> tuple[str, str]:
        """The attachment's key, ``(CNI_CONTAINERID, CNI_IFNAME)`` (section 3)."""
        return (self.container_id, self.ifname)

    def check_args(self, known: Collection[str]) -> None:
        """Refuse CNI_ARGS keys outside ``known``, unless ``IgnoreUnknown`` is set.

        Raises:
            CniError: code 4, naming CNI_ARGS and the unknown keys.
        """
        unknown = sorted(k for k in self.args if k not in known and k != _IGNORE_UNKNOWN)
        if unknown and not self.ignore_unknown:
            raise _env_error(
                f"CNI_ARGS has unknown keys: {', '.join(unknown)}",
                f"podnet understands {', '.join(sorted(known)) or 'no keys'}; "
                "add IgnoreUnknown=1 to CNI_ARGS to have others ignored",
            )


def parse_env(env: Mapping[str, str]) -> Invocation:
    """Parse and validate the CNI_* variables of one invocation.

    Raises:
        CniError: code 4, naming every missing or invalid variable.
    """
    command = _command(env.get("CNI_COMMAND", ""))
    missing = [name for name in _REQUIRED[command] if not env.get(name)]
    if missing:
        raise _env_error(
            f"required env variables [{', '.join(missing)}] missing",
            f"CNI_COMMAND={command} needs {', '.join(_REQUIRED[command])} (CNI spec section 2)",
        )
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    if command not in _ATTACHMENT_COMMANDS:
        return Invocation(command, path=path)
    args = parse_cni_args(env.get("CNI_ARGS", ""))
    return Invocation(
        command=command,
        container_id=check_container_id(env["CNI_CONTAINERID"]),
        netns=env.get("CNI_NETNS", ""),
        ifname=check_ifname(env["CNI_IFNAME"]),
        args=args,
        path=path,
        ignore_unknown=_ignore_unknown(args),
    )


def _command(value: str) -> Command:
    if not value:
        raise _env_error(
            "required env variables [CNI_COMMAND] missing", f"set CNI_COMMAND to one of {_COMMANDS}"
        )
    try:
        return Command(value)
    except ValueError:
        raise _env_error(
            f"unknown CNI_COMMAND {value!r}", f"CNI_COMMAND must be one of {_COMMANDS}"
        ) from None


def check_container_id(value: str) -> str:
    """Check CNI_CONTAINERID against section 2's rule.

    Raises:
        CniError: code 4 when empty or holding other characters.
    """
    if not _CONTAINER_ID.fullmatch(value):
        raise _env_error(
            f"invalid characters in CNI_CONTAINERID {value!r}",
            "a container ID starts with a letter or digit, followed by letters, "
            "digits, '_', '.' or '-'",
        )
    return value


def check_ifname(value: str) -> str:
    """Check CNI_IFNAME against the Linux rules spec 0.4.0 spells out.

    Not empty, not "." or "..", under 16 bytes (IFNAMSIZ counts bytes), no '/',
    ':' or whitespace -- the kernel's ``dev_valid_name``.

    Raises:
        CniError: code 4, saying which rule the name broke.
    """
    problem = _ifname_problem(value)
    if problem:
        raise _env_error(
            f"invalid CNI_IFNAME {value!r}: {problem}",
            f"use 1-{_IFNAMSIZ - 1} bytes without '/', ':' or whitespace, "
            "other than '.' and '..', e.g. eth0",
        )
    return value


def _ifname_problem(value: str) -> str:
    if not value:
        return "it is empty"
    if _byte_length(value) >= _IFNAMSIZ:
        return f"it is longer than {_IFNAMSIZ - 1} bytes"
    if value in {".", ".."}:
        return "'.' and '..' are reserved"
    if any(c in "/:" or c.isspace() for c in value):
        return "it contains '/', ':' or whitespace"
    return ""


def _byte_length(value: str) -> int:
    """Length in bytes as the kernel sees it; ``os.environ`` carries bytes that
    are not UTF-8 as surrogate escapes, one byte each."""
    try:
        return len(value.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(value.encode("utf-8", "surrogatepass"))


def parse_cni_args(text: str) -> dict[str, str]:
    """Parse CNI_ARGS, ``K=V;K2=V2`` (section 2; CONVENTIONS.md "CNI_ARGS").

    A value may itself hold '='; the first one splits. Repeated keys: the
    last wins, as libcni's ``LoadArgs`` does.

    Raises:
        CniError: code 4 for a pair without '=' or with an empty key.
    """
    args: dict[str, str] = {}
    if not text:
        return args
    for pair in text.split(";"):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _env_error(
                f"invalid CNI_ARGS pair {pair!r}",
                "write CNI_ARGS as KEY=VALUE pairs separated by ';', "
                "e.g. IgnoreUnknown=1;IP=10.1.0.5",
            )
        args[key] = value
    return args


def _ignore_unknown(args: Mapping[str, str]) -> bool:
    value = args.get(_IGNORE_UNKNOWN)
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise _env_error(
        f"invalid CNI_ARGS value IgnoreUnknown={value!r}",
        "use IgnoreUnknown=1 or IgnoreUnknown=true",
    )
