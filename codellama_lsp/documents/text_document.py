"""An open text document, kept as a list of lines so that edits cost O(edited lines).

The server holds every open document and applies the client's incremental changes to it; a
10 MB file edited keystroke by keystroke must not be re-joined or re-split per keystroke. Lines
and positions follow LSP 3.17: the only line terminators are "\\r\\n", "\\r" and "\\n" (unlike
`str.splitlines`), and a position's character counts units of the negotiated encoding.

JSON strings can carry lone surrogates, and a client may send the two halves of a pair in two
edits. The document holds text as a UTF-16 editor does: halves side by side are one character
(as a JSON reader joins them within one string), and a UTF-16 edit that lands between the halves
of a character splits it, so the server's text stays the editor's whatever the edits.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from lsprotocol import types

Encoding = Literal["utf-8", "utf-16", "utf-32"]

# "\r\n" first, so that it is one terminator rather than "\r" then an empty line.
_TERMINATOR = re.compile(r"(\r\n|\r|\n)")
# In order of preference when two terminators are equally common.
_TERMINATORS = ("\n", "\r\n", "\r")
_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
"""A high surrogate followed by a low one: one character, not two."""


def _split_lines(text: str) -> list[str]:
    """Split `text` after each LSP line terminator; the last element has none (may be "")."""
    parts = _TERMINATOR.split(text)
    # parts alternates content and terminator, ending with the (unterminated) last content.
    pairs = zip(parts[::2], parts[1::2], strict=False)
    lines = [content + terminator for content, terminator in pairs]
    lines.append(parts[-1])
    return lines


def _join_pairs(text: str) -> str:
    """`text` with each pair of surrogate halves side by side made the one character they are."""
    return _PAIR.sub(_joined, text) if _PAIR.search(text) else text


def _joined(pair: re.Match[str]) -> str:
    high, low = map(ord, pair[0])
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def _halves(char: str) -> tuple[str, str]:
    """The high and low surrogates that `char` (outside the BMP) is in UTF-16."""
    high, low = divmod(ord(char) - 0x10000, 0x400)
    return chr(0xD800 + high), chr(0xDC00 + low)


def _count_terminators(text: str) -> Counter[str]:
    """How many of each terminator `text` holds, counted in C rather than line by line."""
    crlf = text.count("\r\n")
    return Counter({"\r\n": crlf, "\r": text.count("\r") - crlf, "\n": text.count("\n") - crlf})


def _terminator(line: str) -> str:
    """The terminator that ends `line` ("" for the last line)."""
    if line.endswith("\n"):
        return "\r\n" if line.endswith("\r\n") else "\n"
    return "\r" if line.endswith("\r") else ""


def _column(text: str, character: int, encoding: Encoding) -> tuple[int, bool]:
    """The code-point column of `character` units into `text`, clamped, rounded down, and
    whether it was rounded: the position fell between the two halves of a UTF-16 pair.

    Only `text[:character]` is encoded: every code point is at least one unit, so it covers the
    position, and the cost stays bounded by the position, not the line. "surrogatepass" keeps
    lone surrogates (which JSON escapes can carry) from raising; decoding cannot join two of
    them, as the document never holds halves side by side.
    """
    prefix = text[:character]
    if encoding == "utf-32" or prefix.isascii():
        return len(prefix), False
    if encoding == "utf-16":
        data = prefix.encode("utf-16-le", "surrogatepass")
        cut = 2 * character
        if len(data) <= cut:
            return len(prefix), False
        # Little-endian: the high byte of unit i is data[2 * i + 1].
        inside = 0xD8 <= data[cut - 1] <= 0xDB and 0xDC <= data[cut + 1] <= 0xDF
        cut -= 2 * inside
        return len(data[:cut].decode("utf-16-le", "surrogatepass")), inside
    data = prefix.encode("utf-8", "surrogatepass")
    cut = character
    if len(data) <= cut:
        return len(prefix), False
    while data[cut] & 0xC0 == 0x80:  # a continuation byte: inside a character
        cut -= 1
    return len(data[:cut].decode("utf-8", "surrogatepass")), False


def _units(prefix: str, encoding: Encoding) -> int:
    """The length of `prefix` in units of `encoding`."""
    if encoding == "utf-32" or prefix.isascii():
        return len(prefix)
    if encoding == "utf-16":
        return len(prefix.encode("utf-16-le", "surrogatepass")) // 2
    return len(prefix.encode("utf-8", "surrogatepass"))


def _range_problem(change: types.TextDocumentContentChangeEvent) -> str | None:
    """Why `change` fits no document (a negative position, an end before its start), or None."""
    if isinstance(change, types.TextDocumentContentChangeWholeDocument):
        return None
    start, end = change.range.start, change.range.end
    if min(start.line, start.character, end.line, end.character) < 0:
        return f"negative position in range {change.range}"
    if (end.line, end.character) < (start.line, start.character):
        return f"range end {end} is before its start {start}"
    return None


class TextDocument:
    """An open document: its identity, its version and its text as a list of lines.

    `lines` holds every line with its terminator except the last, which has none, so
    `"".join(lines)` is the text; it is never joined except when `text` is asked for.
    """

    def __init__(self, uri: str, language_id: str, version: int, text: str) -> None:
        self.uri = uri
        self.language_id = language_id
        self.version = version
        self.in_step = True
        """False after a change was refused, until the editor sends the whole text again."""
        text = _join_pairs(text)
        self.lines: list[str] = _split_lines(text)
        # Terminator counts, updated per edit so that `eol()` need not scan the document.
        self._terminators = _count_terminators(text)

    @property
    def text(self) -> str:
        """The whole text (O(document): for consumers that need it all, not per position)."""
        return "".join(self.lines)

    def apply_changes(
        self, changes: Sequence[types.TextDocumentContentChangeEvent], encoding: Encoding
    ) -> None:
        """Apply one `didChange`'s changes in order, or none of them (ValueError) if one is bad.

        A bad change (a negative position, an end before its start) is bad whatever the text,
        so all are checked before the first applies: a document is never left half-edited.
        """
        for index, change in enumerate(changes):
            problem = _range_problem(change)
            if problem is not None:
                raise ValueError(f"change {index + 1} of {len(changes)}: {problem}")
        for change in changes:
            self.apply_change(change, encoding)

    def apply_change(
        self, change: types.TextDocumentContentChangeEvent, encoding: Encoding
    ) -> None:
        """Apply one `didChange` content change; `version` is left for the caller to set.

        Only the lines the range touches are re-split and replaced, plus the line before when
        it ends in a lone "\\r" and the new text starts with "\\n": the two then form one "\\r\\n"
        terminator. (No such merge can happen at the far end: the replaced region ends with a
        whole terminator or with the end of the document.) A UTF-16 range end between the
        halves of a character splits it, as it does in the editor; elsewhere a range end inside
        a character means its start, as in `location`.
        """
        if isinstance(change, types.TextDocumentContentChangeWholeDocument):
            text = _join_pairs(change.text)
            self.lines = _split_lines(text)
            self._terminators = _count_terminators(text)
            return
        problem = _range_problem(change)
        if problem is not None:
            raise ValueError(problem)
        start, end = change.range.start, change.range.end
        first, start_column, start_inside = self._locate(start, encoding)
        last, end_column, end_inside = self._locate(end, encoding)
        head = self.lines[first][:start_column]
        tail = self.lines[last][end_column:]
        if start_inside:
            head += _halves(self.lines[first][start_column])[0]
        if end_inside:
            tail = _halves(tail[0])[1] + tail[1:]
        region = _join_pairs(head + change.text + tail)
        if first > 0 and region.startswith("\n") and self.lines[first - 1].endswith("\r"):
            first -= 1
            region = self.lines[first] + region
        new_lines = _split_lines(region)
        if last < len(self.lines) - 1:
            new_lines.pop()  # the "" after the region's final terminator: the next line follows
        # Joined, the replaced lines count the same: a lone "\r" never precedes a "\n" line.
        self._terminators.subtract(_count_terminators("".join(self.lines[first : last + 1])))
        self._terminators.update(_count_terminators(region))
        self.lines[first : last + 1] = new_lines

    def location(self, position: types.Position, encoding: Encoding) -> tuple[int, int]:
        """The (line index, code-point column) of `position`, as LSP 3.17 resolves it.

        A character past the end of its line means the end of the line, a line past the last
        means the end of the document, and a position inside a character (a surrogate pair,
        a UTF-8 sequence) means the start of that character.
        """
        line, column, _ = self._locate(position, encoding)
        return line, column

    def _locate(self, position: types.Position, encoding: Encoding) -> tuple[int, int, bool]:
        """`location`, and whether the position fell between the halves of a UTF-16 pair."""
        if position.line < 0 or position.character < 0:
            raise ValueError(f"negative position {position}")
        if position.line >= len(self.lines):
            last = len(self.lines) - 1
            return last, len(self.lines[last]), False
        text = self.line_text(position.line)
        return position.line, *_column(text, position.character, encoding)

    def position(self, line: int, column: int, encoding: Encoding) -> types.Position:
        """The `Position` of code-point `column` in `line`; raises ValueError when out of range."""
        if not 0 <= line < len(self.lines):
            raise ValueError(f"line {line} is not in the document")
        text = self.line_text(line)
        if not 0 <= column <= len(text):
            raise ValueError(f"column {column} is not in line {line}")
        return types.Position(line=line, character=_units(text[:column], encoding))

    def line_text(self, line: int) -> str:
        """Line `line` without its terminator."""
        text = self.lines[line]
        return text[: len(text) - len(_terminator(text))]

    def eol(self) -> str:
        """The most common line terminator, for text the server writes ("\\n" when none)."""
        return max(_TERMINATORS, key=self._terminators.__getitem__)
