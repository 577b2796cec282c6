"""Turn what the model generated between prefix and suffix into what the editor inserts.

Everything here is a pure function of text that uses "\\n" line endings. A fill-in-the-middle
model often writes past the middle: it goes on into the next lines, echoes the suffix, or closes
a bracket the suffix already closes. These functions cut such output back to the middle (a
middle the model ended itself is trusted), and `should_stop` says when further tokens could only
be thrown away, so generation can stop early.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

from codellama_lsp.context.window import as_lf

CONTROL_PIECES = ("<EOT>", "<PRE>", "<SUF>", "<MID>")
GRACE_LINES = 3
"""Non-blank lines a model that has not ended may write past a block's end before it is taken
as its middle's end: enough for a middle that goes on a little past it (the `return` after a
loop) to reach its <EOT> or its echo of the suffix, few enough that a model writing new code is
stopped soon. Each line more lets more true middles through and costs a rambling model a line
of tokens (bench/QUALITY.md). In single-line mode (text right of the cursor) the line's end is
final: a completion there is one line, and it shows as soon as that line is written."""

_CONTROL = re.compile("|".join(map(re.escape, CONTROL_PIECES)))
_TAB_WIDTH = 4  # columns a tab stands for when indentation widths are compared or converted
_CLOSERS = ")]}"
_BLOCK_OPENERS = (":", "{", "(", "[")
_COMMENT_STARTS = ("#", "//", "/*", "*")
_WORD = re.compile(r"\w")
_LONE_CLOSER = re.compile(r"[)\]}]+[;,]?")
_TRIPLE_QUOTES = re.compile(r"\"\"\"|'''")
_BRACKET_TOKENS = re.compile(r"\\.|\"\"\"|'''|[\"'`#()\[\]{}]")


class _Cut(NamedTuple):
    """Where a completion the model did not end is cut, found from the text so far."""

    keep: int  # end of the text kept
    block: bool  # a block end: search the kept text for the suffix's start, else drop trailing ws
    settled: bool  # later tokens cannot move this boundary


def is_single_line(prefix: str, suffix: str) -> bool:
    """Whether only the rest of the cursor's line is to be completed.

    Text to the right of the cursor means the user is inside a line, so a completion that
    spans lines would split it. Only the suffix decides; the prefix is taken for symmetry.
    """
    end = suffix.find("\n")
    return bool((suffix if end < 0 else suffix[:end]).strip())


def postprocess(completion: str, prefix: str, suffix: str, *, ended: bool) -> str:
    """The text to insert at the cursor, given the model's decoded middle.

    `ended` says the model ended the middle itself (it emitted <EOT> or </s>). A fill-in-the-
    middle model is trained to end exactly where the suffix takes over, so its extent is then
    trusted: no block end, line end or echo cut, since a true middle may leave a block or span
    lines (HumanEval multi-line and random-span tasks do). What still applies is not a guess at
    the middle's extent: control text is stripped (it must never reach the document) and a
    closer the suffix already supplies is dropped (it would over-close the code). Otherwise
    the output is cut back to the middle where it runs on past it.
    """
    text = _strip_control(completion)
    if not ended:
        text = _trailing_newline(_kept(text, prefix, suffix)[0], suffix)
    return _drop_supplied_closers(text, prefix, suffix)


def should_stop(completion: str, prefix: str, suffix: str) -> bool:
    """Whether further tokens can no longer change `postprocess(..., ended=False)`.

    Called after each token, so generation stops as soon as the rest would be cut away. Past a
    block's end that waits GRACE_LINES lines: stopping there would rob a model whose middle goes
    on past it of its chance to end (its extent is then trusted) or to echo the suffix. In
    single-line mode it stops at the line's end.
    """
    if _CONTROL.search(completion):
        return True
    if any(
        piece.startswith(completion[-size:])
        for piece in CONTROL_PIECES
        for size in range(1, min(len(piece), len(completion) + 1))
    ):
        return False  # the next token may complete a control piece that starts earlier
    return _kept(completion, prefix, suffix)[1]


def shown_part(kept: str, prefix: str, suffix: str, *, ended: bool) -> str:
    """What asking again at this cursor shows of a middle generated before (`kept`).

    The early stop is applied to it as it would be to tokens arriving: the start up to where the
    stop would answer, all of it if it never would. Line breaks and indentation it starts with
    come along with the text after them, which the stop is applied to: once the shown part is
    accepted, the next piece is shown, not cut back to nothing at the line's or block's end.
    """
    if not kept.strip():
        return kept if ended else ""  # the line breaks or indentation that end the middle
    lead = len(kept) - len(kept.lstrip())
    prefix, end = prefix + kept[:lead], len(kept)
    for stop in range(lead + 1, len(kept) + 1):
        if should_stop(kept[lead:stop], prefix, suffix):
            end, ended = stop, False
            break
    piece = postprocess(kept[lead:end], prefix, suffix, ended=ended)
    return kept[:lead] + piece if piece else ""


def to_document_style(text: str, eol: str, indent: str) -> str:
    """Convert model-style text ("\\n", its own indentation) to the document's style.

    The first line continues the cursor's line and is left as it is; later lines get their
    leading tabs or spaces converted to the document's unit (`indent`: "\\t" or spaces).
    Line endings are normalised first, so converting twice changes nothing.
    """
    lines = as_lf(text).split("\n")
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


def _kept(text: str, prefix: str, suffix: str) -> tuple[str, bool]:
    """The text kept from a completion the model did not end, and whether more tokens could
    still change it.

    The cut is final once the text reaches its horizon, unless the tail of the text may still
    grow into an echo that starts before the horizon. Without a cut, an unfinished completion
    that runs exactly into the suffix loses that part.
    """
    echo_start = _echo_start(text, suffix)
    cut, horizon = _cut(text, prefix, suffix)
    if cut is None:
        return (text if echo_start is None else text[:echo_start]), False
    settled = horizon <= len(text) and (echo_start is None or echo_start >= horizon)
    kept = text[: cut.keep]
    if not cut.block:
        return kept, settled
    block_echo = _echo_start(kept, suffix)
    return (kept.rstrip() if block_echo is None else kept[:block_echo]), settled


def _cut(text: str, prefix: str, suffix: str) -> tuple[_Cut | None, int]:
    """The cut in the text so far, and its horizon: an echo that starts before the horizon
    would still become the cut (the horizon is past the text's end until the cut is settled).

    An echo of the suffix (up to the end of its first text line) shows where the model ran
    past the middle. A block's end is only a guess, since true middles cross them, so an echo
    that starts within GRACE_LINES lines past it still wins; the line's end in single-line mode
    is final. Past a boundary only an echo holding a word counts: a lone ":" or ")"
    at a line's end turns up in any code. A block end wins a tie with an echo.
    """
    line, line_end = _first_text_line(suffix)
    echoed = suffix[:line_end] if line else ""
    found = text.find(echoed + "\n") if echoed else -1
    echo = _Cut(found, block=False, settled=True) if found >= 0 else None
    boundary = _boundary(text, prefix, suffix)
    if boundary is None or (echo is not None and echo.keep < boundary.keep):
        return echo, len(text) + 1 if echo is None else echo.keep
    reach = _grace_end(text, boundary.keep) if boundary.block else boundary.keep + 1
    if echo is not None and boundary.keep < echo.keep < reach and _WORD.search(echoed):
        return echo, echo.keep
    return boundary, reach if boundary.settled else len(text) + 1


def _boundary(text: str, prefix: str, suffix: str) -> _Cut | None:
    """Where the text leaves the cursor's line (single-line mode) or block, if it does."""
    if not is_single_line(prefix, suffix):
        return _block_end(text, prefix, suffix)
    line_end = text.find("\n")
    return _Cut(line_end, block=False, settled=True) if line_end >= 0 else None


def _grace_end(text: str, start: int) -> int:
    """Just past the line break that ends the GRACE_LINES-th non-blank line from `start` on,
    or len(text) + 1 while fewer such lines are complete."""
    lines = 0
    while lines < GRACE_LINES:
        found = text.find("\n", start)
        if found < 0:
            return len(text) + 1
        lines += bool(text[start:found].strip())
        start = found + 1
    return start


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
    found: list[str] = []
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
