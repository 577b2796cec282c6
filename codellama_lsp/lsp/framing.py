"""Content-Length framing over stdio that finds the next frame again after a bad one.

pygls' own reader matches only `Content-Length: N\\r\\n` exactly, alone on its line. A lower-case
header, or the rest of a too-short frame that joins the next header's line, loses that frame and,
as the length is never found again, every frame after it. It also hands whatever length a header
claims to one `read` call, where an absurd one raises OverflowError and ends the server.

`FrameReader` sits between stdin and pygls: it reads each frame itself, accepting header names in
any case and spacing, skipping garbage up to the next valid `Content-Length:` header (also at the
end of a garbage line), refusing lengths no editor sends, and hands pygls each body under the one
header pygls reads. A stream that starts with an HTTP request line is not an editor (over `--tcp`
it is what any web page can send to a loopback port): it ends there, unread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import BinaryIO

log = logging.getLogger(__name__)

MAX_CONTENT_LENGTH = 1 << 30
"""Far more than any document an editor sends: a larger length is a broken header, not a frame."""
LINE_CHUNK = 1 << 16
"""Header lines are read this much at a time, so a long line without a newline costs no memory."""
LINE_TAIL = 256
"""What a long line keeps of its earlier chunks: more than any header, which may end the line."""
BODY_CHUNK = 1 << 20
"""Bodies are read this much at a time: memory is taken as bytes arrive, not as a header claims."""

_CONTENT_LENGTH_REVERSED = re.compile(
    rb"\n\r?[ \t]*(\S*)[ \t]*:[ \t]*htgnel-tnetnoc", re.IGNORECASE
)
"""A Content-Length header, name, colon, value, ending a line: matched on the reversed line."""
_HEADER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*:[^\r\n]*\r?\n")
_HTTP_REQUEST_LINE = re.compile(rb"[A-Za-z]+ \S+ HTTP/\d")


class FrameReader:
    """A reader for `LanguageServer.start_io` that gives pygls only well-formed frames.

    pygls calls `readline` until a blank line, then `read(length)`: each frame is passed on as
    exactly `Content-Length: N\\r\\n`, `\\r\\n` and its body.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._header: list[bytes] = []
        self._body = b""
        self._started = False
        """Whether a line other than a blank one has been read: only the first may be HTTP's."""

    def readline(self) -> bytes:
        if not self._header:
            body = self._next_body()
            if body is None:
                return b""
            self._header = [b"Content-Length: %d\r\n" % len(body), b"\r\n"]
            self._body = body
        return self._header.pop(0)

    def read(self, size: int) -> bytes:
        data, self._body = self._body[:size], self._body[size:]
        return data

    def _next_body(self) -> bytes | None:
        """The body of the next frame with a valid Content-Length; None at the end of input."""
        length: int | None = None
        while line := self._line():
            if not line.strip():
                if length is not None:
                    return self._read_body(length)
                continue  # a blank line between frames
            if not self._started:
                self._started = True
                if _HTTP_REQUEST_LINE.match(line):
                    log.warning("refused a stream that starts with an HTTP request")
                    return None
            found = _content_length(line)
            if found is not None:
                start, value = found
                if start:
                    log.warning("skipped %d bytes before a Content-Length header", start)
                length = _length(value)
            elif not _HEADER.fullmatch(line):
                log.warning("skipped %d bytes that are not a header", len(line))
                length = None
        return None

    def _line(self) -> bytes:
        """The next line; of a very long one only the end, which may hold the next header."""
        line = self._stream.readline(LINE_CHUNK)
        while line and not line.endswith(b"\n"):
            more = self._stream.readline(LINE_CHUNK)
            if not more:
                return b""
            line = line[-LINE_TAIL:] + more
        return line

    def _read_body(self, length: int) -> bytes | None:
        chunks: list[bytes] = []
        left = length
        while left:
            chunk = self._stream.read(min(left, BODY_CHUNK))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def _content_length(line: bytes) -> tuple[int, bytes] | None:
    """Where the Content-Length header that ends `line` starts, and its value; None if none does.

    Matched from the end, where the header must be, in one pass: a forward search tried each
    `content-length` in the line to its end, seconds of CPU for one 64 KiB line of them. The
    greedy value makes the match the longest, so the header found is the one a search finds.
    """
    found = _CONTENT_LENGTH_REVERSED.match(line[::-1])
    if found is None:
        return None
    return len(line) - found.end(), found.group(1)[::-1]


def _length(value: bytes) -> int | None:
    """A Content-Length value, or None (logged) when it is not a length a frame can have."""
    if value.isdigit() and len(value) <= len(str(MAX_CONTENT_LENGTH)):
        length = int(value)
        if 0 < length <= MAX_CONTENT_LENGTH:
            return length
    log.warning("ignored a frame with Content-Length %r", value[:32])
    return None


class PipeWriter:
    """The server's stdout for pygls: a client that closed its end has gone, which is an end.

    An editor may close the pipe without reading the last replies (Neovim does on a quick quit,
    right after `shutdown`). pygls would log a traceback for each write and raise it into the
    handler; here the first write that finds the pipe closed calls `on_closed`, which ends the
    server quietly.
    """

    def __init__(self, stream: BinaryIO, on_closed: Callable[[], None]) -> None:
        self._stream = stream
        self._on_closed = on_closed

    def write(self, data: bytes) -> None:
        try:
            self._stream.write(data)
        except BrokenPipeError:
            self._on_closed()

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._on_closed()

    def close(self) -> None:
        self._stream.close()
