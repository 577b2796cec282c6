"""Which part of a document goes into the prompt: whole lines around the cursor, within a budget.

The window's edges snap to blocks of lines, so while the user types they stay put and the prompt
of the previous keystroke stays a prefix of the next one (which is what makes a KV cache pay).
The prefix gets about three quarters of the budget: the code before the cursor says the most.
Its text is in the model's line endings, "\\n" (`as_lf`, the one place they are normalised).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

BLOCK_LINES = 16
PREFIX_SHARE = 0.75


@dataclass(frozen=True)
class Window:
    prefix_lines: list[str]
    """The lines before the cursor, ending in "\n", then the head of the cursor's line."""
    suffix_lines: list[str]
    """The tail of the cursor's line, then the lines after it, ending in "\n"."""
    first_line: int
    """The document line where the prefix starts."""
    end_line: int
    """The document line after the last one in the suffix."""

    @cached_property
    def prefix(self) -> str:
        return "".join(self.prefix_lines)

    @cached_property
    def suffix(self) -> str:
        return "".join(self.suffix_lines)


def as_lf(text: str) -> str:
    """`text` with its line endings ("\r\n", "\r") spelled "\n", the model's style.

    Text without a "\r" is returned as it is: a document's own line, whose hash Python keeps,
    so looking its token ids up costs no copy and no hashing.
    """
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def clip_lines(
    lines: Sequence[str], line: int, column: int, reach: int
) -> tuple[Sequence[str], int]:
    """`lines` with every line over `reach` characters cut to its `reach` next to the cursor,
    and the cursor's column in the cut line.

    A window of `n` tokens spans at most `n * max_piece_chars` characters each way (`reach`), so
    the cut changes nothing it could hold, and a minified line of megabytes costs no more to
    tokenize than `reach` characters: lines before the cursor keep their end, lines after it
    their start, the cursor's line `reach` each side of the cursor. Terminators are kept.
    """
    if all(len(text) <= reach for text in lines):
        return lines, column
    clipped = list(lines)
    for index, text in enumerate(lines):
        if len(text) <= reach:
            continue
        body = text.rstrip("\r\n")
        end = text[len(body) :]
        if index < line:
            clipped[index] = body[-reach:] + end
        elif index > line:
            clipped[index] = body[:reach] + end
        else:
            head = body[max(0, column - reach) : column]
            clipped[index] = head + body[column : column + reach] + end
            column = len(head)
    return clipped, column


def fit_window(
    lines: Sequence[str],
    line: int,
    column: int,
    budget: int,
    count_tokens: Callable[[str], int],
) -> Window:
    """Whole lines before and after the cursor whose token counts fit in `budget`.

    `lines` are the document's lines with their terminators; the window's text uses "\\n" line
    ends whatever the document uses. The cursor's own line is always included; a line too long
    for the budget on its own is left to the prompt builder's hard cap.
    """
    first, end = _fit_lines(lines, line, column, budget, count_tokens)
    prefix, suffix = _window_lines(lines, line, column, first, end)
    return Window(prefix, suffix, first, end)


def _fit_lines(
    lines: Sequence[str],
    line: int,
    column: int,
    budget: int,
    count_tokens: Callable[[str], int],
) -> tuple[int, int]:
    """The first line and the end line of the window (its text not built yet)."""
    current = as_lf(lines[line])
    head, tail = current[:column], current[column:]
    used = count_tokens(head) + count_tokens(tail)

    suffix_budget = budget * (1 - PREFIX_SHARE) - count_tokens(tail)
    end = _snap_end(
        lines, line, _reach(lines, range(line + 1, len(lines)), suffix_budget, count_tokens)
    )
    suffix_used = sum(count_tokens(as_lf(text)) for text in lines[line + 1 : end])
    prefix_budget = budget - used - suffix_used
    before = _reach(lines, range(line - 1, -1, -1), prefix_budget, count_tokens)
    if before.count == line and end < len(lines):
        # The prefix ran out of document: give what it left to the suffix.
        room = budget - used - before.tokens
        end = _snap_end(lines, line, _reach(lines, range(line + 1, len(lines)), room, count_tokens))
    first = line - before.count
    if first > 0:
        first = min(-(-first // BLOCK_LINES) * BLOCK_LINES, line)
    return first, end


def _window_lines(
    lines: Sequence[str], line: int, column: int, first: int, end: int
) -> tuple[list[str], list[str]]:
    """The prefix and suffix of a window (`first` to `end`) as lines ending in "\n".

    The cursor's line is split at the cursor: the prefix ends with its head, the suffix starts
    with its tail. Every other piece is a whole line, which is what per-line token ids are kept
    for (see `prompt.encode_lines`).
    """
    current = as_lf(lines[line])
    prefix = [as_lf(text) for text in lines[first:line]]
    prefix.append(current[:column])
    suffix = [current[column:]]
    suffix.extend(as_lf(text) for text in lines[line + 1 : end])
    return prefix, suffix


def _snap_end(lines: Sequence[str], line: int, after: _Reach) -> int:
    """The suffix's end line, moved back to a block boundary unless it is the document's end."""
    end = line + 1 + after.count
    if end < len(lines):
        end = max(end // BLOCK_LINES * BLOCK_LINES, line + 1)
    return end


@dataclass(frozen=True)
class _Reach:
    count: int
    tokens: int


def _reach(
    lines: Sequence[str], order: range, budget: float, count_tokens: Callable[[str], int]
) -> _Reach:
    """How many lines, walking in `order`, fit in `budget` tokens."""
    count = tokens = 0
    for index in order:
        cost = count_tokens(as_lf(lines[index]))
        if tokens + cost > budget:
            break
        count += 1
        tokens += cost
    return _Reach(count, tokens)
