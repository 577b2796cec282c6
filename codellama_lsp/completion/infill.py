"""One completion, start to end: context window -> prompt -> generation -> post-processing.

Plain functions over an engine, so the one-shot CLI and the server's worker run exactly the
same path whatever the engine (and the benchmarks measure the path editors get).
"""

from __future__ import annotations

import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from codellama_lsp.bounded_memo import BoundedMemo
from codellama_lsp.checkpoint.tokenizer import FimTokenizer
from codellama_lsp.completion.postprocess import (
    detect_indent,
    postprocess,
    should_stop,
    shown_part,
    to_document_style,
)
from codellama_lsp.context.extra_context import ExtraContext, fit_snippets
from codellama_lsp.context.prompt import (
    Order,
    assemble_prompt,
    build_prompt,
    encode_infilling_lines,
    encode_lines,
    heal,
)
from codellama_lsp.context.window import Window, clip_lines, fit_lines, window_lines
from codellama_lsp.engine.interface import Generated, Limits
from codellama_lsp.engine.prompt_lookup import MAX_DRAFT
from codellama_lsp.settings import Settings

if TYPE_CHECKING:
    from codellama_lsp.engine.interface import Engine

LINE_COUNT_MEMO_BYTES = 8 * 2**20
"""What the line-token memo may hold: a window of 100,000 tokens is well under 1 MiB of text, and
one long line edited keystroke by keystroke adds a new entry of its whole length each time."""


@dataclass(frozen=True)
class InfillRequest:
    """A cursor in a snapshot of a document's lines (with their terminators)."""

    lines: Sequence[str]
    line: int
    column: int
    eol: str
    order: Order
    context_tokens: int
    max_new_tokens: int
    temperature: float
    token_healing: bool = True
    time_budget_s: float = 10.0
    extra_context: ExtraContext | None = None
    """Snippets of other files for the prompt's start, chosen by the caller (extra_context.py)."""
    extra_context_tokens: int = 0

    @classmethod
    def at(
        cls,
        settings: Settings,
        lines: Sequence[str],
        line: int,
        column: int,
        eol: str,
        extra_context: ExtraContext | None = None,
    ) -> InfillRequest:
        """A request with the settings' prompt and generation options."""
        return cls(
            lines=lines,
            line=line,
            column=column,
            eol=eol,
            order=settings.order,
            context_tokens=settings.context_tokens,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            token_healing=settings.token_healing,
            time_budget_s=settings.time_budget_ms / 1000,
            extra_context=extra_context,
            extra_context_tokens=settings.extra_context_tokens,
        )


@dataclass(frozen=True)
class Infill:
    text: str
    """What to insert at the cursor, in the document's line endings and indentation."""
    prompt_tokens: int
    prefilled: int
    generated: int
    first_token_s: float
    total_s: float
    ended: bool = False
    """The model ended the middle itself (<EOT> or </s>), rather than a bound or the early stop."""


class LineTokenCounter:
    """Token ids of lines, remembered: a window re-tokenizes the same lines every keystroke.

    Called, it counts a line's tokens (how the window is fitted); `ids` gives the ids the
    prompt is assembled from, so a keystroke tokenizes only the lines it changed.
    """

    def __init__(self, tokenizer: FimTokenizer) -> None:
        self._tokenizer = tokenizer
        self._memo: BoundedMemo[str, array[int]] = BoundedMemo(LINE_COUNT_MEMO_BYTES, _entry_bytes)

    @property
    def nbytes(self) -> int:
        """What the memo holds, bounded by LINE_COUNT_MEMO_BYTES (least recently used go first)."""
        return self._memo.nbytes

    def __call__(self, text: str) -> int:
        return len(self.ids(text))

    def ids(self, text: str) -> array[int]:
        """`encode_infilling(text)`, kept as 4-byte ids (a tuple of ints would take 36 each)."""
        ids = self._memo.get(text)
        if ids is None:
            ids = array("I", self._tokenizer.encode_infilling(text))
            self._memo.put(text, ids)
        return ids


def _entry_bytes(text: str, ids: array[int]) -> int:
    return sys.getsizeof(text) + sys.getsizeof(ids)


def prompt_for(
    tokenizer: FimTokenizer, request: InfillRequest, line_tokens: LineTokenCounter
) -> tuple[Window, list[int]]:
    """The window around the cursor and its prompt: the extra context first, then the window.

    Lines too long for the window are cut first (`clip_lines`): what is tokenized stays within
    what the budget can use, however long a line is, so a cancel is never stuck behind it.

    The extra context takes at most half of the prompt's budget; the window gets the rest. The
    prompt is assembled from per-line token ids, so a keystroke tokenizes only the lines it
    changed; a tokenizer with a piece that spans a line break (not Code Llama's) gets the prompt
    tokenized whole.
    """
    extra_budget = min(request.extra_context_tokens, request.context_tokens // 2)
    extra, extra_used = "", 0
    if request.extra_context is not None:
        extra, extra_used = fit_snippets(request.extra_context, extra_budget, line_tokens)
    reach = request.context_tokens * tokenizer.max_piece_chars
    lines, column = clip_lines(request.lines, request.line, request.column, reach)
    line = request.line
    first, end = fit_lines(lines, line, column, request.context_tokens - extra_used, line_tokens)
    prefix, suffix = window_lines(lines, line, column, first, end)
    window = Window("".join(prefix), "".join(suffix), first, end)
    if not tokenizer.lines_tokenize_alone:
        ids = build_prompt(
            tokenizer, extra + window.prefix, window.suffix, request.order, request.context_tokens
        )
        return window, ids
    ids = assemble_prompt(
        tokenizer,
        encode_lines(tokenizer, [*extra.splitlines(keepends=True), *prefix], line_tokens.ids),
        encode_infilling_lines(suffix, line_tokens.ids),
        request.order,
        request.context_tokens,
    )
    return window, ids


MIN_CONTEXT_TOKENS = 16
"""The markers and a few tokens of text: a smaller window is no prompt at all."""


def new_tokens_room(max_positions: int) -> int:
    """The most tokens a completion can generate in the positions, after a minimal prompt."""
    return max_positions - MIN_CONTEXT_TOKENS - 1


def fit_to_model(request: InfillRequest, max_positions: int) -> InfillRequest:
    """The request with a window that leaves room for the answer in the model's positions.

    A model completes poorly from prompts longer than it was trained on, and a prompt that fills
    every position leaves none to generate in: `contextTokens` is an upper bound, the model's
    positions (less `maxNewTokens` and a healed token) are the other. A `maxNewTokens` that
    leaves no room for a prompt is cut to what does (the server warns once).
    """
    room = new_tokens_room(max_positions)
    if room < 1:
        raise ValueError(f"the model's {max_positions} positions leave no room for a prompt")
    max_new_tokens = min(request.max_new_tokens, room)
    budget = min(request.context_tokens, max_positions - max_new_tokens - 1)
    if (budget, max_new_tokens) == (request.context_tokens, request.max_new_tokens):
        return request
    return replace(request, context_tokens=budget, max_new_tokens=max_new_tokens)


def complete(
    engine: Engine,
    document: str,
    request: InfillRequest,
    line_tokens: LineTokenCounter,
    cancelled: Callable[[], bool],
    on_shown: Callable[[Infill], None] | None = None,
) -> Infill:
    """The completion of `request` in `document` (whose cache the engine reuses).

    With `on_shown`, the early stop does not end generation: it hands `on_shown` the text to
    show now, and generation goes on until the model ends the middle or a bound; what is then
    returned is the whole middle (`ended` says whether the model ended it), kept for asking again.
    """
    started = time.perf_counter()
    tokenizer = engine.tokenizer
    request = fit_to_model(request, engine.max_positions)
    window, prompt = prompt_for(tokenizer, request, line_tokens)

    forced = b""
    if request.token_healing and engine.heals:
        prompt, forced = heal(tokenizer, prompt, request.order)

    def text_of(ids: list[int]) -> str:
        """The middle: what was generated after the healed bytes (which the prefix has)."""
        spelled = tokenizer.decode_bytes(ids)
        if not spelled.startswith(forced):
            return ""
        return tokenizer.decode_text(spelled[len(forced) :])

    indent = detect_indent(window.prefix + window.suffix)
    edges = window.prefix, window.suffix

    def infill_of(generated: Generated, middle: str, ended: bool) -> Infill:
        return Infill(
            text=to_document_style(middle, request.eol, indent),
            prompt_tokens=generated.prompt_tokens,
            prefilled=generated.prefilled,
            generated=len(generated.ids),
            first_token_s=generated.first_token_s,
            total_s=time.perf_counter() - started,
            ended=ended,
        )

    shown = False
    first_token_s = 0.0

    def finished(ids: list[int]) -> bool:
        nonlocal shown, first_token_s
        first_token_s = first_token_s or time.perf_counter() - started
        if shown or not should_stop(text_of(ids), *edges):
            return False
        if on_shown is None:
            return True
        answer = postprocess(text_of(ids), *edges, ended=False)
        if not answer:  # nothing to show: the whole middle may have a next piece to show
            return False
        shown = True  # the engine's prefill count comes at the end: 0 for now
        on_shown(
            infill_of(Generated(list(ids), None, len(prompt), 0, first_token_s, 0), answer, False)
        )
        return False

    limits = Limits(
        max_new_tokens=request.max_new_tokens + bool(forced),  # fit_to_model left room
        stop_ids=tokenizer.control_ids,
        temperature=request.temperature,
        deadline=started + request.time_budget_s,
        should_stop=finished,
        cancelled=cancelled,
        forced=forced,
        prompt_budget=request.context_tokens + request.max_new_tokens + 1 + MAX_DRAFT,
    )
    generated = engine.generate(document, prompt, limits)
    # Only these end a middle; another control id (<PRE>, <s>, ...) is the model going astray.
    ended = generated.stop_id in (tokenizer.ids.eot, tokenizer.ids.eos)
    text = text_of(generated.ids)
    if shown:  # kept whole: the early stop applies to it when it is shown
        middle = postprocess(text, *edges, ended=True)
    elif on_shown is not None and ended:  # the early stop showed nothing: the next piece
        middle = shown_part(text, *edges, ended=True)
    else:
        middle = postprocess(text, *edges, ended=ended)
    return infill_of(generated, middle, ended)
