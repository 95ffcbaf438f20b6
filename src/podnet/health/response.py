"""The status of an HTTP/1 response, read from its head without I/O.

A health check needs one number: the final status. :class:`StatusReader`
takes the response's bytes as they arrive and returns that status once the
final head (status line and headers, up to the blank line) is complete. It
skips interim 1xx heads (103 Early Hints), never reads a body, and refuses to
buffer more than ``max_head`` bytes in all, so a peer cannot make a check
hold memory. A peer that does not speak HTTP is caught by its first bytes,
not by the check's timeout.
"""

from __future__ import annotations

import re

__all__ = ["MAX_HEAD", "ResponseError", "StatusReader", "status_of"]

#: Most bytes of response heads a check reads.
MAX_HEAD = 16384

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?: [^\r\n]*)?\r?")
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_PREFIX = b"HTTP/"
_SWITCHING = 101


class ResponseError(Exception):
    """The response cannot be read as HTTP/1; the message is the check's reason."""


def status_of(line: bytes) -> int:
    """The status code of an HTTP/1 status line (its CR, if any, included).

    Raises:
        ResponseError: it is not a status line.
    """
    match = _STATUS_LINE.fullmatch(line)
    if match is None:
        raise ResponseError("malformed response")
    return int(match[1])


def _final(status: int) -> bool:
    return not 100 <= status < 200 or status == _SWITCHING


class StatusReader:
    """Bytes of a response in, its final status out.

    Args:
        max_head: most bytes to take in before giving up.
    """

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self._buffer = bytearray()
        self._taken = 0
        self._max_head = max_head

    def feed(self, data: bytes) -> int | None:
        """Take the next bytes; the final status once its head is complete, else None.

        Raises:
            ResponseError: not HTTP/1, or no final head within ``max_head`` bytes.
        """
        self._taken += len(data)
        self._buffer += data
        while (end := _END_OF_HEAD.search(self._buffer)) is not None:
            status = status_of(bytes(self._buffer[: self._buffer.find(b"\n")]))
            del self._buffer[: end.end()]
            if _final(status):
                return status
        self._check_start()
        if self._taken > self._max_head:
            raise ResponseError(f"response head over {self._max_head} bytes")
        return None

    def _check_start(self) -> None:
        # Fail on the first line, or the first bytes, rather than at the timeout.
        line_end = self._buffer.find(b"\n")
        if line_end >= 0:
            status_of(bytes(self._buffer[:line_end]))
        elif not _PREFIX.startswith(bytes(self._buffer[: len(_PREFIX)])):
            raise ResponseError("malformed response")
