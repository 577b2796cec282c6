"""Typed-through reuse: answer from a recent suggestion while the user types what it suggested.

When the text typed since a suggestion is the suggestion's beginning, its rest is still the
model's answer for the new cursor (the model would be asked the same question with part of the
answer given), so it is shown at once, without the model. Typing something else, or any edit
elsewhere near the cursor, makes the suggestion stale and the model is asked again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

REMEMBERED = 8
CONTEXT_LINES = 64


@dataclass(frozen=True)
class Context:
    """The cursor's surroundings: its line split at the cursor, and the lines around it."""

    line: int
    before: str
    after: str
    around: tuple[str, ...]


def context_at(lines: list[str], line: int, column: int) -> Context:
    text = lines[line].rstrip("\r\n")
    around = (
        *lines[max(0, line - CONTEXT_LINES) : line],
        *lines[line + 1 : line + 1 + CONTEXT_LINES],
    )
    return Context(line, text[:column], text[column:], around)


class RecentSuggestions:
    """The last few suggestions of each document."""

    def __init__(self) -> None:
        self._by_document: dict[str, deque[tuple[Context, str]]] = {}

    def remember(self, uri: str, context: Context, text: str) -> None:
        if text:
            self._by_document.setdefault(uri, deque(maxlen=REMEMBERED)).append((context, text))

    def forget(self, uri: str) -> None:
        self._by_document.pop(uri, None)

    def lookup(self, uri: str, now: Context) -> str | None:
        """The rest of a suggestion that what was typed since agrees with, if any."""
        for then, text in reversed(self._by_document.get(uri, ())):
            if (then.line, then.after, then.around) != (now.line, now.after, now.around):
                continue
            if not now.before.startswith(then.before):
                continue
            typed = now.before[len(then.before) :]
            if text.startswith(typed) and len(text) > len(typed):
                return text[len(typed) :]
        return None
