"""One request's cursor: a snapshot of its document, taken before the request awaits anything.

Edits arrive while a request waits (for the extra context, the debounce, the model), so
everything a request needs of its document comes from this one snapshot: the window request,
the reuse context and the reply's range.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from codellama_lsp.completion.request import InfillRequest
from codellama_lsp.completion.suggestions import Context, context_at
from codellama_lsp.context.extra_context import ExtraContext
from codellama_lsp.context.window import BLOCK_LINES
from codellama_lsp.documents.text_document import Encoding, TextDocument
from codellama_lsp.settings import Settings


@dataclass(frozen=True)
class Cursor:
    """A cursor in a snapshot of a document's lines, and the range its reply replaces.

    The reply replaces `start` to `end` (positions clamped into the document: a cursor past the
    end of a line is at its end) with `replaced` or `selected`, then the completion.
    """

    document: TextDocument
    lines: tuple[str, ...]
    """The document's lines (with their terminators) when the request came."""
    line: int
    column: int
    """In code points."""
    eol: str
    start_column: int
    """Where on the cursor's line the reply's range starts (at or before `column`)."""
    start: types.Position
    end: types.Position
    selected: str = ""
    """The text of the popup item the editor has selected (inline completion's
    `selectedCompletionInfo`): it stands for the line from `start_column` to the cursor, and the
    completion comes after it."""

    @property
    def replaced(self) -> str:
        """The document's text from the reply's start to the cursor (a completion's word)."""
        return self.lines[self.line][self.start_column : self.column]

    def context(self) -> Context:
        """The cursor's surroundings, for reusing a recent suggestion."""
        return context_at(self.lines, self.line, self.column)

    def window_request(
        self, settings: Settings, extra_context: ExtraContext | None
    ) -> tuple[InfillRequest, int]:
        """The request for the lines the window can reach, and the document line they start at.

        Every line costs at least one token, so `contextTokens` lines each way is enough; they
        start on a block boundary so that the window's own block edges stay put. A selected
        popup item replaces the line from `start_column` to the cursor.
        """
        reach = settings.context_tokens
        first = max(0, (self.line - reach) // BLOCK_LINES * BLOCK_LINES)
        lines = list(self.lines[first : self.line + reach + 1])
        column = self.column
        if self.selected:
            current = lines[self.line - first]
            tail = current[self.column :]
            lines[self.line - first] = current[: self.start_column] + self.selected + tail
            column = self.start_column + len(self.selected)
        request = InfillRequest.at(
            settings, lines, self.line - first, column, self.eol, extra_context
        )
        return request, first


def cursor_at(document: TextDocument, position: types.Position, encoding: Encoding) -> Cursor:
    """The cursor at `position`, whose reply replaces nothing."""
    line, column = _locate(document, position, encoding)
    return _cursor(document, line, column, column, encoding)


def word_cursor(document: TextDocument, position: types.Position, encoding: Encoding) -> Cursor:
    """The cursor at `position`, whose reply replaces the word before it (a completion item's
    edit covers the word, so that every client filters and sorts the item like its own)."""
    line, column = _locate(document, position, encoding)
    return _cursor(document, line, column, word_start(document.line_text(line), column), encoding)


def inline_cursor(
    document: TextDocument,
    position: types.Position,
    selected: types.SelectedCompletionInfo | None,
    encoding: Encoding,
) -> Cursor:
    """The cursor at `position`, after the popup's selected item where one is (and starts on
    the cursor's line, before it): the reply replaces the item's range with its text."""
    line, column = _locate(document, position, encoding)
    if selected is not None:
        start_line, start_column = _locate(document, selected.range.start, encoding)
        if start_line == line and start_column <= column:
            return _cursor(document, line, column, start_column, encoding, selected.text)
    return _cursor(document, line, column, column, encoding)


def word_start(line_text: str, column: int) -> int:
    """Where the identifier that ends at the cursor starts: a client filters items by it."""
    start = column
    while start > 0 and (line_text[start - 1].isalnum() or line_text[start - 1] == "_"):
        start -= 1
    return start


def _cursor(
    document: TextDocument,
    line: int,
    column: int,
    start_column: int,
    encoding: Encoding,
    selected: str = "",
) -> Cursor:
    return Cursor(
        document=document,
        lines=tuple(document.lines),
        line=line,
        column=column,
        eol=document.eol(),
        start_column=start_column,
        start=document.position(line, start_column, encoding),
        end=document.position(line, column, encoding),
        selected=selected,
    )


def _locate(
    document: TextDocument, position: types.Position, encoding: Encoding
) -> tuple[int, int]:
    """`position` in code points; one that fits no document is the client's error."""
    try:
        return document.location(position, encoding)
    except ValueError as error:
        raise JsonRpcInvalidParams(str(error)) from error
