"""What the one-shot commands (`complete`, `prompt`) read: the source file and its cursor, the
files beside it, and the request they make of them, as the server would.

Every problem with them is a UsageError, which the command prints as one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from codellama_lsp.completion.request import InfillRequest
from codellama_lsp.context.extra_context import (
    ExtraContext,
    OpenFile,
    choose_snippets,
    comment_marker,
)
from codellama_lsp.settings import Settings


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line."""


SOURCE_LIMIT = 16 * 2**20
"""The most a source file may hold: far more than a prompt can use."""

FILL_ME = "<FILL_ME>"
"""The hole marker of the transformers docs' Code Llama examples, read by `complete FILE`."""


@dataclass(frozen=True)
class Cursor:
    path: Path
    line: int
    """0-based."""
    column: int
    """0-based, in characters."""


@dataclass(frozen=True)
class Source:
    """A file's lines (as the server keeps them), its line ending and the cursor in it."""

    path: Path
    lines: list[str]
    eol: str
    line: int
    column: int
    around: tuple[str, str] | None = None
    """The text before and after the `<FILL_ME>` that marked the cursor, if one did."""


def parse_cursor(spec: str) -> Cursor:
    path, sep, rest = spec.rpartition(":")
    path, sep2, line_text = path.rpartition(":")
    if not (sep and sep2) or not line_text.isdigit() or not rest.isdigit():
        raise UsageError(f"expected FILE:LINE:COL (1-based), got {spec!r}")
    line, column = int(line_text), int(rest)
    if line < 1 or column < 1:
        raise UsageError(f"LINE and COL count from 1, got {line}:{column}")
    return Cursor(Path(path), line - 1, column - 1)


def read_source(spec: str) -> Source:
    """FILE:LINE:COL, or a FILE whose one `<FILL_ME>` marks the cursor (and is taken out)."""
    if re.search(r":[0-9]*$", spec):
        return read_cursor(parse_cursor(spec))
    return read_fill_me(Path(spec))


def read_text(path: Path) -> str:
    """A source file's text: a regular file of at most SOURCE_LIMIT bytes, so that a FIFO
    named by mistake cannot hang the command, nor /dev/zero fill the memory."""
    from codellama_lsp.checkpoint.files import UnreadableFile, read_regular_file

    try:
        return read_regular_file(path, SOURCE_LIMIT).decode("utf-8")
    except UnreadableFile as error:
        raise UsageError(f"{path}: {error}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not UTF-8 text ({error.reason})") from None


def read_cursor(cursor: Cursor) -> Source:
    """The file at the cursor, the cursor checked."""
    from codellama_lsp.documents.text_document import TextDocument

    text = read_text(cursor.path)  # first: it explains a path that cannot be resolved
    document = TextDocument(cursor.path.resolve().as_uri(), "", 0, text)
    if cursor.line >= len(document.lines):
        raise UsageError(
            f"{cursor.path}: line {cursor.line + 1} is past the end ({len(document.lines)} lines)"
        )
    width = len(document.line_text(cursor.line))
    if cursor.column > width:
        raise UsageError(
            f"{cursor.path}:{cursor.line + 1}: column {cursor.column + 1} is past the end "
            f"of the line ({width} characters)"
        )
    return Source(cursor.path, document.lines, document.eol(), cursor.line, cursor.column)


def read_fill_me(path: Path) -> Source:
    """The file with its one `<FILL_ME>` taken out, the cursor where it was."""
    from codellama_lsp.documents.text_document import TextDocument

    text = read_text(path)
    count = text.count(FILL_ME)
    if count != 1:
        found = "no" if count == 0 else str(count)
        raise UsageError(
            f"{path}: {found} {FILL_ME} markers; mark the hole with exactly one, "
            "or give FILE:LINE:COL"
        )
    before, after = text.split(FILL_ME)
    head = TextDocument("", "", 0, before).lines
    document = TextDocument(path.resolve().as_uri(), "", 0, before + after)
    return Source(
        path, document.lines, document.eol(), len(head) - 1, len(head[-1]), (before, after)
    )


def request_at(settings: Settings, source: Source, others: list[Path]) -> InfillRequest:
    """The request at the source's cursor, with the snippets of `others` (files as if open
    beside it) that the server would choose."""
    files = []
    for path in others:
        # Read before resolved: reading says why a path is bad (a link loop, say).
        lines = tuple(read_cursor(Cursor(path, 0, 0)).lines)
        if path.resolve() != source.path.resolve():
            files.append(OpenFile(str(path.resolve()), _shown(path), lines))
    extra = ExtraContext(
        choose_snippets(source.lines, source.line, files, settings.extra_context_tokens),
        comment_marker("", str(source.path)),
    )
    return InfillRequest.at(settings, source.lines, source.line, source.column, source.eol, extra)


def _shown(path: Path) -> str:
    """A path as the prompt names it: relative to the working folder if under it."""
    absolute, here = path.resolve(), Path.cwd()
    return absolute.relative_to(here).as_posix() if absolute.is_relative_to(here) else str(absolute)
