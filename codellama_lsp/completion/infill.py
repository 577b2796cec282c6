"""One completion, start to end: the prepared prompt -> generation -> post-processing.

Plain functions over an engine, so the one-shot CLI and the server's scheduler run exactly the
same path whatever the engine (and the benchmarks measure the path editors get).

Vocabulary: the early stop (`postprocess.should_stop`) says the text generated so far is a
complete answer. Without `on_shown` it ends generation. With it, that answer is *shown* (handed
to `on_shown` at once) and generation goes on until the model *ends* the middle (<EOT>, </s>) or
a bound: the whole middle then returned is what the caller *keeps* for asking again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from codellama_lsp.completion.postprocess import (
    detect_indent,
    postprocess,
    should_stop,
    shown_part,
    to_document_style,
)
from codellama_lsp.completion.prepare import Prepared, prepare
from codellama_lsp.completion.request import Infill, InfillRequest
from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.engine.interface import Generated, Limits
from codellama_lsp.engine.prompt_lookup import MAX_DRAFT

if TYPE_CHECKING:
    from codellama_lsp.checkpoint.tokenizer import FimTokenizer
    from codellama_lsp.engine.interface import Engine


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
    prepared = prepare(tokenizer, request, line_tokens, engine.max_positions, engine.heals)
    middle = _Middle(tokenizer, prepared, started, on_shown)
    fitted = prepared.request
    limits = Limits(
        max_new_tokens=fitted.max_new_tokens + bool(prepared.forced),  # fit_to_model left room
        stop_ids=tokenizer.control_ids,
        temperature=fitted.temperature,
        deadline=started + fitted.time_budget_s,
        should_stop=middle.should_stop,
        cancelled=cancelled,
        forced=prepared.forced,
        prompt_budget=fitted.context_tokens + fitted.max_new_tokens + 1 + MAX_DRAFT,
    )
    return middle.finish(engine.generate(document, prepared.ids, limits))


class _Middle:
    """The generated ids read as the middle: the early stop while they come, then the answer."""

    def __init__(
        self,
        tokenizer: FimTokenizer,
        prepared: Prepared,
        started: float,
        on_shown: Callable[[Infill], None] | None,
    ) -> None:
        self._tokenizer = tokenizer
        self._forced = prepared.forced
        self._edges = prepared.window.prefix, prepared.window.suffix
        self._indent = detect_indent(prepared.window.prefix + prepared.window.suffix)
        self._eol = prepared.request.eol
        self._prompt_tokens = len(prepared.ids)
        self._started = started
        self._on_shown = on_shown
        self._shown = False
        self._first_token_s = 0.0

    def text(self, ids: list[int]) -> str:
        """The middle: what was generated after the healed bytes (which the prefix has)."""
        spelled = self._tokenizer.decode_bytes(ids)
        if not spelled.startswith(self._forced):
            return ""
        return self._tokenizer.decode_text(spelled[len(self._forced) :])

    def should_stop(self, ids: list[int]) -> bool:
        """The early stop, called after each new id; with `on_shown`, it shows instead."""
        self._first_token_s = self._first_token_s or time.perf_counter() - self._started
        if self._shown or not should_stop(self.text(ids), *self._edges):
            return False
        if self._on_shown is None:
            return True
        answer = postprocess(self.text(ids), *self._edges, ended=False)
        if not answer:  # nothing to show: the whole middle may have a next piece to show
            return False
        self._shown = True  # the engine's prefill count comes at the end: 0 for now
        so_far = Generated(list(ids), None, self._prompt_tokens, 0, self._first_token_s, 0)
        self._on_shown(self._infill(so_far, answer, ended=False))
        return False

    def finish(self, generated: Generated) -> Infill:
        """The answer once generation is over (the kept middle, if an answer was shown)."""
        ids = self._tokenizer.ids
        # Only these end a middle; another control id (<PRE>, <s>, ...) is the model going astray.
        ended = generated.stop_id in (ids.eot, ids.eos)
        text = self.text(generated.ids)
        if self._shown:  # kept whole: the early stop applies to it when it is shown
            middle = postprocess(text, *self._edges, ended=True)
        elif self._on_shown is not None and ended:  # the early stop showed nothing: the next piece
            middle = shown_part(text, *self._edges, ended=True)
        else:
            middle = postprocess(text, *self._edges, ended=ended)
        return self._infill(generated, middle, ended)

    def _infill(self, generated: Generated, middle: str, ended: bool) -> Infill:
        return Infill(
            text=to_document_style(middle, self._eol, self._indent),
            prompt_tokens=generated.prompt_tokens,
            prefilled=generated.prefilled,
            generated=len(generated.ids),
            first_token_s=generated.first_token_s,
            total_s=time.perf_counter() - self._started,
            ended=ended,
        )
