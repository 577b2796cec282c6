"""Turn what the model generated between prefix and suffix into what the editor inserts.

Everything here is a pure function of text that uses "\\n" line endings. A fill-in-the-middle
model often writes past the middle: it goes on into the next lines, echoes the suffix, or closes
a bracket the suffix already closes. These functions cut such output back to the middle, and
`should_stop` says when further tokens could only be thrown away, so generation can stop early.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

CONTROL_PIECES = ("<EOT>", "<PRE>", "<SUF>", "<MID>")

_CONTROL = re.compile("|".join(map(re.escape, CONTROL_PIECES)))
_TAB_WIDTH = 4  # columns a tab stands for when indentation widths are compared or converted
_CLOSERS = ")]}"
_BLOCK_OPENERS = (":", "{", "(", "[")
_COMMENT_STARTS = ("#", "//", "/*", "*")
_LONE_CLOSER = re.compile(r"[)\]}]+[;,]?")
_TRIPLE_QUOTES = re.compile(r"\"\"\"|'''")
_BRACKET_TOKENS = re.compile(r"\\.|\"\"\"|'''|[\"'`#()\[\]{}]")


class _Cut(NamedTuple):
    """Where a completion ends before the model's own end, found from the text so far."""

    keep: int  # end of the text kept
    block: bool  # a block end: search the kept text for the suffix's start, else drop trailing ws
    settled: bool  # later tokens cannot undo this cut


def is_single_line(prefix: str, suffix: str) -> bool:
    """Whether only the rest of the cursor's line is to be completed.

    Text to the right of the cursor means the user is inside a line, so a completion that
    spans lines would split it. Only the suffix decides; the prefix is taken for symmetry.
    """
    end = suffix.find("\n")
    return bool((suffix if end < 0 else suffix[:end]).strip())


def postprocess(completion: str, prefix: str, suffix: str, *, ended: bool) -> str:
    """The text to insert at the cursor, given the model's decoded middle.

    `ended` says the model ended the middle itself; its end is then trusted and only
    structural cuts apply. Otherwise the output is cut where it runs into the suffix.
    """
    text = _kept(_strip_control(completion), prefix, suffix, ended=ended)[0]
    if not ended:
        text = _trailing_newline(text, suffix)
    return _drop_supplied_closers(text, prefix, suffix)


def should_stop(completion: str, prefix: str, suffix: str) -> bool:
    """Whether further tokens can no longer change `postprocess(..., ended=False)`.

    Called after each token, so generation stops as soon as the rest would be cut away.
    """
    if _CONTROL.search(completion):
        return True
    if any(
        piece.startswith(completion[-size:])
        for piece in CONTROL_PIECES
        for size in range(1, min(len(piece), len(completion) + 1))
    ):
        return False  # the next token may complete a control piece that starts earlier
    return _kept(completion, prefix, suffix, ended=False)[1]


def to_document_style(text: str, eol: str, indent: str) -> str:
    """Convert model-style text ("\\n", its own indentation) to the document's style.

    The first line continues the cursor's line and is left as it is; later lines get their
    leading tabs or spaces converted to the document's unit (`indent`: "\\t" or spaces).
    Line endings are normalised first, so converting twice changes nothing.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return eol.join([lines[0], *(_reindent(line, indent) for line in lines[1:])])


def detect_indent(text: str) -> str:
    """The indentation unit of a piece of code ("\\t", or a run of spaces).

    Tabs win when more lines start with a tab than with a space; otherwise the unit is the
    most common increase of indentation between successive non-blank lines (smallest on ties).
    """
    tabbed = spaced = previous = 0
    steps: Counter[int] = Counter()
    for line in text.splitlines():
        body = line.lstrip(" \t")
        if not body.strip():
            continue
        lead = line[: len(line) - len(body)]
        if lead.startswith("\t"):
            tabbed += 1
            continue
        spaced += bool(lead)
        width = len(lead.expandtabs(_TAB_WIDTH))
        if width > previous:
            steps[width - previous] += 1
        previous = width
    if tabbed > spaced:
        return "\t"
    if not steps:
        return "    "
    return " " * max(sorted(steps), key=steps.__getitem__)


def _strip_control(text: str) -> str:
    """Text before the first control piece: such text must never reach the document."""
    found = _CONTROL.search(text)
    return text[: found.start()] if found else text


def _kept(text: str, prefix: str, suffix: str, *, ended: bool) -> tuple[str, bool]:
    """The text kept from a completion, and whether more tokens could still change it.

    A cut found in the text so far (a line end in single-line mode, an echo of a whole
    suffix line, a block end) is final once settled, unless the tail of the text may still
    grow into an echo that starts before it. Without a cut, an unfinished completion that
    runs exactly into the suffix loses that part.
    """
    echo_start = None if ended else _echo_start(text, suffix)
    cut = _first_cut(text, prefix, suffix, ended=ended)
    if cut is None:
        return (text if echo_start is None else text[:echo_start]), False
    settled = cut.settled and (echo_start is None or echo_start >= cut.keep)
    kept = text[: cut.keep]
    if not cut.block:
        return kept, settled
    block_echo = None if ended else _echo_start(kept, suffix)
    return (kept.rstrip() if block_echo is None else kept[:block_echo]), settled


def _first_cut(text: str, prefix: str, suffix: str, *, ended: bool) -> _Cut | None:
    """The earliest cut in the text; a block end wins a tie with an echo."""
    cuts = []
    if is_single_line(prefix, suffix):
        line_end = text.find("\n")
        if line_end >= 0:
            cuts.append(_Cut(line_end, block=False, settled=True))
    else:
        block_end = _block_end(text, prefix, suffix)
        if block_end is not None:
            cuts.append(block_end)
    if not ended:
        echoed_line, line_end = _first_text_line(suffix)
        if echoed_line:
            echo = text.find(suffix[:line_end] + "\n")
            if echo >= 0:
                cuts.append(_Cut(echo, block=False, settled=True))
    return min(cuts, key=lambda cut: (cut.keep, not cut.block), default=None)


def _block_end(text: str, prefix: str, suffix: str) -> _Cut | None:
    """Where a multi-line completion leaves the cursor's block.

    A later line indented less than the cursor's line leaves the block, and so does one at
    the same indentation when the cursor's line opens a deeper body, or when the cursor is in
    the middle of a statement (finish it, don't invent the next ones). A lone closing bracket
    there is kept (then the completion ends) unless the suffix's next line already has it.
    """
    lines = text.split("\n")
    typed = prefix[prefix.rfind("\n") + 1 :]
    cursor_line = typed + lines[0]
    indent = _indent_width(cursor_line)
    code = cursor_line.strip()
    comment = code.startswith(_COMMENT_STARTS)
    opens = code.endswith(_BLOCK_OPENERS) and not comment
    finishing = bool(typed.strip() and lines[0].strip()) and not comment
    supplied = _first_text_line(suffix.partition("\n")[2])[0]
    start = len(lines[0]) + 1
    for number, line in enumerate(lines[1:], start=2):
        body = line.strip()
        width = _indent_width(line)
        if body and (width < indent or (width == indent and (opens or finishing))):
            complete = number < len(lines)
            if _LONE_CLOSER.fullmatch(body) and line.rstrip() != supplied.rstrip():
                return _Cut(start + len(line), block=True, settled=complete)
            return _Cut(start, block=True, settled=complete or not body.startswith(tuple(_CLOSERS)))
        start += len(line) + 1
    return None


def _indent_width(line: str) -> int:
    """Columns of a line's leading whitespace."""
    return len(line[: len(line) - len(line.lstrip(" \t"))].expandtabs(_TAB_WIDTH))


def _first_text_line(text: str) -> tuple[str, int]:
    """The first line holding non-blank text and the index just past it ("", -1 if none)."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if text[start:end].strip():
            return text[start:end], end
        start = end + 1
    return "", -1


def _echo_start(text: str, suffix: str) -> int | None:
    """The earliest index from which the rest of the text is a (non-empty) start of the suffix."""
    start = text.find(suffix[:1]) if suffix else -1
    while start >= 0:
        if suffix.startswith(text[start:]):
            return start
        start = text.find(suffix[0], start + 1)
    return None


def _trailing_newline(text: str, suffix: str) -> str:
    """Avoid a blank line: a cut-off completion ending in a line break before a suffix that
    starts a new line loses it; otherwise trailing blank lines shrink to one line break."""
    stripped = text.rstrip()
    if "\n" not in text[len(stripped) :]:
        return text
    return stripped if suffix.lstrip(" \t").startswith("\n") else stripped + "\n"


def _drop_supplied_closers(text: str, prefix: str, suffix: str) -> str:
    """Drop trailing closing brackets that the suffix starts with and that over-close.

    Models often write the closer the suffix already holds ("bar)" before ")"); a closer is
    dropped only while the brackets before the cursor cannot match it, so balanced text stays.
    """
    rest = suffix.lstrip(" \t")
    leading = rest[: len(rest) - len(rest.lstrip(_CLOSERS))]
    echoed = next((size for size in range(len(leading), 0, -1) if text.endswith(leading[:size])), 0)
    context = suffix[: len(suffix) - len(rest) + len(leading)]
    for _ in range(echoed):
        if not _over_closed(prefix + text + context) or _in_triple_quotes(prefix + text):
            break  # balanced, or prose in a docstring, whose brackets need not balance
        text = text[:-1]
    return text


def _in_triple_quotes(text: str) -> bool:
    """Whether the text ends inside a triple-quoted string."""
    quote = ""
    for found in _TRIPLE_QUOTES.finditer(text):
        if not quote or found.group() == quote:
            quote = "" if quote else found.group()
    return bool(quote)


def _over_closed(text: str) -> bool:
    """Whether the closing brackets at the end of the text lack openers before them.

    Scans back from the end, a line at a time, over brackets outside quotes and comments; it
    stops at the opener matching the first closer, so it usually reads only one statement.
    """
    start = text.rfind("\n") + 1
    brackets, in_text = _brackets(text[start:])
    if in_text:
        return False  # the closers are part of a string or a comment
    pending = 0
    while True:
        for bracket in reversed(brackets):
            pending += 1 if bracket in _CLOSERS else -1
            if pending <= 0:
                return False
        if not start:
            return pending > 0
        end = start - 1
        start = text.rfind("\n", 0, end) + 1
        brackets = _brackets(text[start:end])[0]


def _brackets(line: str) -> tuple[str, bool]:
    """The brackets of a line outside quotes and "#" comments, and whether it ends inside one.

    Quotes are tracked within the line. Triple quotes are skipped: their strings usually span
    lines, and the prose inside them is better read as (mostly balanced) text than as a string.
    """
    quote = ""
    found = []
    for token in _BRACKET_TOKENS.findall(line):
        if token.startswith("\\") or len(token) == 3:
            continue
        if quote:
            quote = "" if token == quote else quote
        elif token == "#":
            return "".join(found), True
        elif token in "\"'`":
            quote = token
        else:
            found.append(token)
    return "".join(found), bool(quote)


def _reindent(line: str, indent: str) -> str:
    """A line with its leading tabs or spaces converted to the document's indentation unit."""
    body = line.lstrip(" \t")
    lead = line[: len(line) - len(body)]
    if indent == "\t":
        width = len(lead.expandtabs(_TAB_WIDTH))
        lead = "\t" * (width // _TAB_WIDTH) + " " * (width % _TAB_WIDTH)
    else:
        lead = lead.replace("\t", indent)
    return lead + body
