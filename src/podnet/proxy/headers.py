"""Header fields: an immutable, validated list, and the parser of field blocks.

A :class:`Headers` keeps every field line in order, with its name as received
(for forwarding) and lower-cased (for lookups). It can only hold valid fields:
the constructor checks names and values, and the parser builds one only from
bytes its regular expression accepted. Serialising one therefore never needs
a second check, and a value can never smuggle CR/LF onto the wire.

Field block syntax (RFC 9110 §5.5, RFC 9112 §5):

* name: a token, immediately followed by ``:`` -- whitespace before the colon
  is rejected (§5.1), because some servers would treat ``Name :`` as ``Name``;
* value: visible ASCII, obs-text (0x80-0xFF), SP and HTAB; leading and trailing
  SP/HTAB are stripped; every other control character (NUL, bare CR, bare LF,
  DEL, ...) is rejected;
* a line starting with SP or HTAB is obs-fold (§5.2) and rejected;
* every line ends in CRLF; a bare LF is rejected (see :mod:`podnet.proxy.head`).

The whole block is checked by one regular expression (``findall`` anchored at
line starts) plus a count of LF bytes: every LF must end a matched line, so
equal counts prove that every line matched completely. Only when they differ
does :func:`parse_fields` look at the lines one by one to say what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from podnet.proxy.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["Headers", "parse_fields", "split_list"]

TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(TOKEN)
# A value without surrounding whitespace: runs of visible bytes joined by SP/HTAB.
# Possessive quantifiers over disjoint classes: linear time, never backtracks.
_VALUE = rb"(?:[\x21-\x7e\x80-\xff]++(?:[ \t]++[\x21-\x7e\x80-\xff]++)*+)?+"
_VALUE_RE = re.compile(_VALUE)
_FIELD_LINE_RE = re.compile(rb"^(" + TOKEN + rb"):[ \t]*+(" + _VALUE + rb")[ \t]*+\r\n", re.M)
_OWS = b" \t"

Pair = tuple[bytes, bytes]


def _as_bytes(text: bytes | str) -> bytes:
    if not isinstance(text, str):
        return bytes(text)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"header text {text!r} is not Latin-1") from None


def _checked(name: bytes | str, value: bytes | str) -> Pair:
    raw_name, raw_value = _as_bytes(name), _as_bytes(value)
    if not _TOKEN_RE.fullmatch(raw_name):
        raise LocalProtocolError(f"invalid header name {raw_name!r}")
    stripped = raw_value.strip(_OWS)
    if not _VALUE_RE.fullmatch(stripped):
        raise LocalProtocolError(f"invalid value for header {raw_name!r}: {raw_value!r}")
    return raw_name, stripped


class Headers:
    """An ordered, immutable list of header fields.

    Iterating yields ``(lower-case name, value)``; :meth:`raw_items` keeps the
    names' case as received, which is what gets forwarded. Lookups take
    lower-case names.

    Raises:
        LocalProtocolError: (constructor) a name is not a token or a value
            holds a control character.
    """

    __slots__ = ("_names", "_pairs")

    def __init__(self, pairs: Iterable[tuple[bytes | str, bytes | str]] = ()) -> None:
        self._pairs: list[Pair] = [_checked(name, value) for name, value in pairs]
        self._names: list[bytes] = [name.lower() for name, _ in self._pairs]

    @classmethod
    def _trusted(cls, pairs: list[Pair], names: list[bytes]) -> Headers:
        """Wrap fields that were already validated (by the parser or a Headers)."""
        headers = cls.__new__(cls)
        headers._pairs = pairs
        headers._names = names
        return headers

    def __iter__(self) -> Iterator[Pair]:
        return zip(self._names, (value for _, value in self._pairs), strict=True)

    def __len__(self) -> int:
        return len(self._pairs)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def raw_items(self) -> list[Pair]:
        """The fields as ``(name as received, value)`` pairs."""
        return list(self._pairs)

    def names(self) -> list[bytes]:
        """The lower-case names, in order, with repeats."""
        return list(self._names)

    def get(self, name: bytes) -> bytes | None:
        """The value of the first field called ``name`` (lower-case), or None."""
        try:
            return self._pairs[self._names.index(name)][1]
        except ValueError:
            return None

    def get_all(self, name: bytes) -> list[bytes]:
        """The values of every field called ``name`` (lower-case), in order."""
        return [
            pair[1] for lname, pair in zip(self._names, self._pairs, strict=True) if lname == name
        ]

    def select(self, names: frozenset[bytes]) -> dict[bytes, list[bytes]]:
        """The values of the fields whose lower-case name is in ``names``, by name."""
        found: dict[bytes, list[bytes]] = {}
        for name in names.intersection(self._names):
            if self._names.count(name) == 1:
                found[name] = [self._pairs[self._names.index(name)][1]]
            else:
                found[name] = self.get_all(name)
        return found

    def without(self, names: Iterable[bytes]) -> Headers:
        """A copy without the fields whose lower-case name is in ``names``."""
        drop = set(names)
        keep = [i for i, lname in enumerate(self._names) if lname not in drop]
        if len(keep) == len(self._names):
            return self
        return Headers._trusted([self._pairs[i] for i in keep], [self._names[i] for i in keep])

    def with_field(self, name: bytes | str, value: bytes | str) -> Headers:
        """A copy with one more field line at the end."""
        pair = _checked(name, value)
        return Headers._trusted([*self._pairs, pair], [*self._names, pair[0].lower()])

    def extended(self, pairs: Iterable[tuple[bytes | str, bytes | str]]) -> Headers:
        """A copy with the given field lines appended (they are validated)."""
        added = [_checked(name, value) for name, value in pairs]
        return Headers._trusted(
            [*self._pairs, *added], [*self._names, *(name.lower() for name, _ in added)]
        )

    def _extended_trusted(self, pairs: list[Pair]) -> Headers:
        """A copy with ``pairs`` appended; the caller guarantees they are valid fields."""
        return Headers._trusted(
            [*self._pairs, *pairs], [*self._names, *(name.lower() for name, _ in pairs)]
        )

    def replaced(self, name: bytes | str, value: bytes | str) -> Headers:
        """A copy where every field called ``name`` is replaced by one line at the end."""
        return self.without([_as_bytes(name).lower()]).with_field(name, value)

    def field_block(self) -> bytes:
        """The fields as they go on the wire: ``name: value CRLF`` per line."""
        return b"".join([name + b": " + value + b"\r\n" for name, value in self._pairs])


def parse_fields(buf: bytes | bytearray, start: int, end: int, *, max_fields: int) -> Headers:
    """Parse the field lines in ``buf[start:end]``; every line ends in CRLF.

    Raises:
        RemoteProtocolError: 400 for a malformed line, 431 for too many fields.
    """
    pairs: list[Pair] = _FIELD_LINE_RE.findall(buf, start, end)
    if len(pairs) != buf.count(b"\n", start, end):
        _diagnose(bytes(buf[start:end]))
    if len(pairs) > max_fields:
        raise RemoteProtocolError(f"more than {max_fields} header fields", status=431)
    return Headers._trusted(pairs, [name.lower() for name, _ in pairs])


def _diagnose(block: bytes) -> None:
    """Raise the error that explains why ``block`` did not match."""
    for line in block.split(b"\r\n")[:-1]:
        _diagnose_line(line)
    raise RemoteProtocolError("header field line not terminated by CRLF (bare LF)")


def _diagnose_line(line: bytes) -> None:
    if b"\n" in line:
        raise RemoteProtocolError("bare LF in header section")
    if line[:1] in (b" ", b"\t"):
        raise RemoteProtocolError("obsolete line folding (obs-fold) in header section")
    name, colon, value = line.partition(b":")
    if not colon:
        raise RemoteProtocolError(f"header line without a colon: {line[:40]!r}")
    if name != name.rstrip(_OWS):
        raise RemoteProtocolError(f"whitespace between header name and colon: {name!r}")
    if not _TOKEN_RE.fullmatch(name):
        raise RemoteProtocolError(f"invalid header name {name[:40]!r}")
    if not _VALUE_RE.fullmatch(value.strip(_OWS)):
        raise RemoteProtocolError(f"invalid character in value of header {name!r}")


def split_list(values: Sequence[bytes]) -> list[bytes]:
    """Split comma-separated list fields into lower-case elements (RFC 9110 §5.6.1).

    Empty elements are dropped, as recipients must accept them.
    """
    if len(values) == 1 and b"," not in values[0]:  # the common case, one element
        element = values[0].strip(_OWS).lower()
        return [element] if element else []
    elements = []
    for value in values:
        for raw in value.split(b","):
            element = raw.strip(_OWS)
            if element:
                elements.append(element.lower())
    return elements
