"""One completion, start to end: context window -> prompt -> generation -> post-processing.

Plain functions over an engine, so the one-shot CLI and the server's worker run exactly the
same path whatever the engine (and the benchmarks measure the path editors get).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..context_window import Window, fit_window
from ..postprocess import (
    detect_indent,
    postprocess,
    should_stop,
    shown_part,
    to_document_style,
)
from ..prompt import Order, build_prompt, heal
from ..settings import Settings
from ..tokenizer import FimTokenizer
from .interface import Generated, Limits
from .prompt_lookup import MAX_DRAFT

if TYPE_CHECKING:
    from .interface import Engine

LINE_COUNT_MEMO = 50_000


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

    @classmethod
    def at(
        cls, settings: Settings, lines: Sequence[str], line: int, column: int, eol: str
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
    """Token counts of lines, remembered: a window re-counts the same lines every keystroke."""

    def __init__(self, tokenizer: FimTokenizer) -> None:
        self._tokenizer = tokenizer
        self._memo: OrderedDict[str, int] = OrderedDict()

    def __call__(self, text: str) -> int:
        count = self._memo.get(text)
        if count is None:
            count = len(self._tokenizer.encode_infilling(text))
            self._memo[text] = count
            if len(self._memo) > LINE_COUNT_MEMO:
                self._memo.popitem(last=False)
        return count


def prompt_for(
    tokenizer: FimTokenizer, request: InfillRequest, count_tokens: Callable[[str], int]
) -> tuple[Window, list[int]]:
    window = fit_window(
        request.lines, request.line, request.column, request.context_tokens, count_tokens
    )
    ids = build_prompt(
        tokenizer, window.prefix, window.suffix, request.order, request.context_tokens
    )
    return window, ids


MIN_CONTEXT_TOKENS = 16
"""The markers and a few tokens of text: a smaller window is no prompt at all."""


def fit_to_model(request: InfillRequest, max_positions: int) -> InfillRequest:
    """The request with a window that leaves room for the answer in the model's positions.

    A model completes poorly from prompts longer than it was trained on, and a prompt that fills
    every position leaves none to generate in: `contextTokens` is an upper bound, the model's
    positions (less `maxNewTokens` and a healed token) are the other.
    """
    budget = min(request.context_tokens, max_positions - request.max_new_tokens - 1)
    if budget < MIN_CONTEXT_TOKENS:
        raise ValueError(
            f"maxNewTokens {request.max_new_tokens} leaves no room for a prompt in the model's "
            f"{max_positions} positions: lower maxNewTokens"
        )
    return request if budget == request.context_tokens else replace(request, context_tokens=budget)


def complete(
    engine: Engine,
    document: str,
    request: InfillRequest,
    count_tokens: Callable[[str], int],
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
    window, prompt = prompt_for(tokenizer, request, count_tokens)

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
