"""Typed-through reuse: answer from a recent suggestion while the user types what it suggested.

When the text typed since a suggestion is the suggestion's beginning, its rest is still the
model's answer for the new cursor (the model would be asked the same question with part of the
answer given), so it is shown at once, without the model. Typing something else, or any edit
elsewhere near the cursor, makes the suggestion stale and the model is asked again.

A continued suggestion is the whole middle, generated on after the shown part went out: once
the shown part is accepted, its next piece is shown from it, cut as a fresh completion would be.

The words, as this module and the scheduler use them:

- shown: the answer a request got, the middle cut where a completion stops (the early stop).
- continued: generation went on after the shown answer, to the model's end of the middle or a
  bound; the whole middle, once it arrives from the scheduler's thread, is remembered "later".
- kept: that whole middle, remembered beside the shown answer for asking again.
- ended: the model ended the middle itself (so its last piece needs no cut); else a bound did.
- used: a piece of a continued suggestion beyond the shown answer has been shown; its continued
  tokens then count in `used_tokens` (`usedTokens` in `codellama/stats`), once.
- typed since: what the user typed at a suggestion's cursor to get to the cursor now.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from codellama_lsp.completion.postprocess import shown_part
from codellama_lsp.completion.request import Infill
from codellama_lsp.context.window import as_lf

REMEMBERED = 8
CONTEXT_LINES = 64


@dataclass(frozen=True)
class Context:
    """The cursor's surroundings: the text of up to CONTEXT_LINES lines each way, split at the
    cursor; `first` is the line `before` starts at."""

    line: int
    first: int
    before: str
    after: str

    def typed_since(self, then: Context) -> str | None:
        """What was typed at `then`'s cursor to get here (None: something else changed).

        Typing line breaks moves the cursor down, and the window's first line with it.
        """
        if self.after != then.after or self.line < then.line:
            return None
        before = then.before
        for _ in range(self.first - then.first):  # lines that left the window
            before = before[before.find("\n") + 1 :] if "\n" in before else ""
        if not self.before.startswith(before):
            return None
        typed = self.before[len(before) :]
        return typed if typed.count("\n") == self.line - then.line else None


def context_at(lines: Sequence[str], line: int, column: int) -> Context:
    """The cursor's `Context` in `lines` (a document's lines, with their terminators)."""
    first = max(0, line - CONTEXT_LINES)
    text = lines[line]
    before = "".join(lines[first:line]) + text[:column]
    after = text[column:] + "".join(lines[line + 1 : line + 1 + CONTEXT_LINES])
    return Context(line, first, before, after)


@dataclass
class Suggestion:
    context: Context
    text: str
    continued: bool = False
    """The whole middle, generated on after the answer: shown piece by piece."""
    ended: bool = True
    """The model ended it (else a bound did: its last piece is cut as any completion's)."""
    tokens: int = 0
    """Tokens generated on after the answer."""
    used: bool = False
    """A piece of it beyond the answer has been shown."""


def next_piece(rest: str, now: Context, ended: bool) -> str:
    """What a fresh completion at the cursor shows of a continued suggestion's rest."""
    eol = "\r\n" if "\r\n" in rest else "\n"
    piece = shown_part(as_lf(rest), as_lf(now.before), as_lf(now.after), ended=ended)
    return piece.replace("\n", eol)


class RecentSuggestions:
    """The last few suggestions of each document, and how often reusing them paid."""

    def __init__(self) -> None:
        self._by_document: dict[str, deque[Suggestion]] = {}
        self.reused = 0
        """Requests answered from a suggestion, without the model."""
        self.used_tokens = 0
        """Continued tokens of kept middles that were shown beyond their first answer."""

    def reuse(self, uri: str, now: Context) -> str | None:
        """What to show at `now` from a suggestion that typing agrees with; None: ask the model."""
        found = self.lookup(uri, now)
        if found is None:
            return None
        rest, suggestion = found
        if suggestion.continued:
            rest = next_piece(rest, now, suggestion.ended)
        if not rest:
            return None
        self.reused += 1
        if suggestion.continued and not suggestion.used:
            suggestion.used = True
            self.used_tokens += suggestion.tokens
        return rest

    def remember(self, uri: str, context: Context, text: str) -> None:
        """A shown answer, at the cursor it was asked at."""
        self._add(uri, Suggestion(context, text))

    def remember_later(
        self,
        uri: str,
        context: Context,
        shown: Infill,
        kept: Future[Infill | None],
        still_open: Callable[[], bool],
    ) -> None:
        """The whole middle `kept` will hold, remembered once the scheduler's thread has it.

        It is remembered on the event loop (which owns this memory), and only while
        `still_open()`: a document closed meanwhile keeps nothing.
        """
        loop = asyncio.get_running_loop()
        kept.add_done_callback(
            lambda done: loop.call_soon_threadsafe(
                self._keep, uri, context, shown, done.result(), still_open
            )
        )

    def _keep(
        self,
        uri: str,
        context: Context,
        shown: Infill,
        kept: Infill | None,
        still_open: Callable[[], bool],
    ) -> None:
        if kept is not None and still_open():
            self.keep(uri, context, shown, kept)

    def keep(self, uri: str, context: Context, shown: Infill, kept: Infill) -> None:
        """The whole middle `kept`, generated on after `shown` went out (on the event loop)."""
        tokens = kept.generated - shown.generated
        self._add(uri, Suggestion(context, kept.text, True, kept.ended, tokens))

    def _add(self, uri: str, suggestion: Suggestion) -> None:
        if suggestion.text:
            self._by_document.setdefault(uri, deque(maxlen=REMEMBERED)).append(suggestion)

    def forget(self, uri: str) -> None:
        self._by_document.pop(uri, None)

    def lookup(self, uri: str, now: Context) -> tuple[str, Suggestion] | None:
        """The rest of a suggestion that what was typed since agrees with, if any."""
        for then in reversed(self._by_document.get(uri, ())):
            typed, text = now.typed_since(then.context), then.text
            if typed is not None and text.startswith(typed) and len(text) > len(typed):
                return text[len(typed) :], then
        return None
