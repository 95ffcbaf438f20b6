"""Rules every backend shares, so that they all behave alike.

Validation of keys, values and arguments; JSON encoding (backends keep values as
JSON text, so a read always returns a fresh copy and a value that cannot be
stored is refused before anything is written); the conflict messages; the
prefix range used by ordered backends; and the compaction rule for the event
history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from podnet.errors import InvalidInput, StoreConflict, StoreUnavailable
from podnet.store.base import JSON, Delete, Put

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


class Change(NamedTuple):
    """One validated op: ``text`` is the JSON to store, None to delete."""

    key: str
    text: str | None


#: The validated ops of one write.
Changes = list[Change]

#: Validated ``(key, required revision)`` pairs, checked before any change.
Expectations = list[tuple[str, int]]


def check_key(key: str) -> str:
    """Refuse keys a backend could not store or would store differently."""
    if not isinstance(key, str) or not key or "\x00" in key or not _encodable(key):
        raise InvalidInput(
            f"store key {key!r} is not valid",
            hint="use a non-empty string without NUL or lone surrogates",
        )
    return key


def check_prefix(prefix: str) -> str:
    """Like :func:`check_key`, but the empty prefix (every key) is allowed."""
    return check_key(prefix) if prefix != "" else prefix


def check_expect(key: str, expect: int | None) -> None:
    if expect is not None and (type(expect) is not int or expect < 0):
        raise InvalidInput(
            f"expected revision {expect!r} for key {key!r} is not valid",
            hint="use None (no check), 0 (key must be missing) or a revision read earlier",
        )


def check_watch(prefix: str, after: int, timeout: float) -> None:
    check_prefix(prefix)
    if type(after) is not int or after < 0:
        raise InvalidInput(f"watch revision {after!r} is not valid", hint="use a revision >= 0")
    if not isinstance(timeout, int | float) or not timeout >= 0 or math.isinf(timeout):
        raise InvalidInput(f"watch timeout {timeout!r} is not valid", hint="use seconds >= 0")


def encode(key: str, value: JSON) -> str:
    """The JSON text stored for ``value``."""
    if not isinstance(value, dict):
        raise InvalidInput(
            f"value for store key {key!r} is a {type(value).__name__}, not a JSON object",
            hint="store a dict",
        )
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise _not_json(key, str(err)) from None
    if not _encodable(text):
        raise _not_json(key, "it holds a lone surrogate, which is not valid Unicode text")
    return text


def decode(text: str) -> JSON:
    value: JSON = json.loads(text)
    return value


def decode_optional(text: str | None) -> JSON | None:
    return None if text is None else decode(text)


def changes(ops: Sequence[Put | Delete]) -> Changes:
    """Validate and encode the ops of one commit; each key may appear once."""
    out: Changes = []
    seen: set[str] = set()
    for op in ops:
        change = _change(op)
        if change.key in seen:
            raise InvalidInput(
                f"commit changes store key {change.key!r} twice",
                hint="put or delete each key at most once per commit",
            )
        seen.add(change.key)
        out.append(change)
    return out


def expectations(expect: Mapping[str, int] | None) -> Expectations:
    """Validated expectations, sorted by key so the first conflict is stable."""
    items = sorted((expect or {}).items())
    for key, want in items:
        check_key(key)
        if want is None:
            raise InvalidInput(f"expected revision for key {key!r} is None", hint="use 0 or N")
        check_expect(key, want)
    return items


def expectation(key: str, expect: int | None) -> Expectations:
    """The expectations of a single-key put or delete."""
    check_expect(key, expect)
    return [] if expect is None else [(key, expect)]


def check_history(history: int) -> int:
    if type(history) is not int or history < 1:
        raise InvalidInput(f"store history {history!r} is not valid", hint="keep >= 1 events")
    return history


def closed(what: str) -> StoreUnavailable:
    return StoreUnavailable(f"{what} is closed", hint="open the store again")


def conflict(key: str, expected: int, actual: int) -> StoreConflict:
    """The error for a failed compare-and-swap."""
    return StoreConflict(
        f"store key {key!r} changed: expected {_revision(expected)}, found {_revision(actual)}",
        hint="read the key again and retry with its current revision",
    )


def compacted(prefix: str, after: int, oldest: int) -> StoreConflict:
    """The error for a watch that starts before the retained history."""
    return StoreConflict(
        f"cannot watch {prefix!r} after revision {after}: history up to revision "
        f"{oldest} was compacted",
        hint="list the keys again (snapshot) and watch from that list's revision",
    )


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``.

    ``prefix <= key < prefix_end(prefix)`` is ``key.startswith(prefix)`` in
    code point order, which is also SQLite's byte order for UTF-8 text. None
    means no upper bound (empty prefix, or only U+10FFFF characters).
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code in _SURROGATES:
            code = _SURROGATES.stop
        if code <= _MAX_CODE_POINT:
            return "".join(chars) + chr(code)
    return None


def compaction_point(keep_from: int, compacted: int) -> int | None:
    """The new compacted revision, or None if no event is to be dropped.

    Backends keep the last ``history`` events widened to whole revisions: when
    the oldest of those has revision ``keep_from``, every event below it goes,
    so a watch never sees half of a commit. ``compacted`` is the current point.
    """
    point = keep_from - 1
    return point if point > compacted else None


def _change(op: Any) -> Change:
    if isinstance(op, Put):
        return Change(check_key(op.key), encode(op.key, op.value))
    if isinstance(op, Delete):
        return Change(check_key(op.key), None)
    raise InvalidInput(f"commit op {op!r} is not a Put or a Delete", hint="use Put or Delete")


def _not_json(key: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"value for store key {key!r} is not JSON: {why}",
        hint="use only dicts with string keys, lists, strings, finite numbers, booleans and None",
    )


def _revision(revision: int) -> str:
    return "no key (revision 0)" if revision == 0 else f"revision {revision}"


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class Writes:
    """``put``, ``delete`` and ``commit`` of every backend, expressed through
    one ``_apply(changes, expectations) -> (revision, how many changed)``."""

    def _apply(self, changes: Changes, expect: Expectations) -> tuple[int, int]:
        raise NotImplementedError

    def put(self, key: str, value: JSON, *, expect: int | None = None) -> int:
        change = Change(check_key(key), encode(key, value))
        return self._apply([change], expectation(key, expect))[0]

    def delete(self, key: str, *, expect: int | None = None) -> bool:
        change = Change(check_key(key), None)
        return self._apply([change], expectation(key, expect))[1] > 0

    def commit(
        self, ops: Sequence[Put | Delete], *, expect: Mapping[str, int] | None = None
    ) -> int:
        return self._apply(changes(ops), expectations(expect))[0]
