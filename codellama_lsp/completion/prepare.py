"""The prompt of a request, prepared once for a completion, its preview and the command line.

request -> fitted to the model's positions (`fit_to_model`) -> the window around the cursor and
its prompt ids (`prompt_for`) -> healed where the engine heals (`prompt.heal`). What
`codellama/prompt` and `codellama-lsp prompt` show is what `infill.complete` sends: the same
function makes both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from codellama_lsp.checkpoint.tokenizer import FimTokenizer
from codellama_lsp.completion.request import InfillRequest
from codellama_lsp.context.extra_context import fit_snippets
from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.context.prompt import (
    assemble_prompt,
    build_prompt,
    encode_infilling_lines,
    encode_lines,
    heal,
    render_prompt,
)
from codellama_lsp.context.window import Window, clip_lines, fit_window
from codellama_lsp.settings import Settings

MIN_CONTEXT_TOKENS = 16
"""The markers and a few tokens of text: a smaller window is no prompt at all."""


@dataclass(frozen=True)
class Prepared:
    request: InfillRequest
    """The request as fitted to the model's positions: its budgets are the ones generation has."""
    window: Window
    ids: list[int]
    """The prompt ids the engine gets."""
    forced: bytes
    """Token healing: the bytes the backed-off token spelled, which generation must start with
    (empty without healing)."""


@dataclass(frozen=True)
class PromptView:
    """A prepared prompt as users see it (`codellama/prompt`, `codellama-lsp prompt`)."""

    text: str
    """The prompt ids as text, markers spelled out."""
    ids: list[int]
    first_line: int
    end_line: int
    """The window's lines, in the request's `lines`."""
    must_start_with: str
    """The bytes healing backed off, which the completion's first tokens must spell (empty
    without healing), as text: the bytes of an unfinished character as U+FFFD."""

    @classmethod
    def of(cls, tokenizer: FimTokenizer, prepared: Prepared) -> PromptView:
        window = prepared.window
        return cls(
            render_prompt(tokenizer, prepared.ids),
            prepared.ids,
            window.first_line,
            window.end_line,
            prepared.forced.decode("utf-8", errors="replace"),
        )


def prepare(
    tokenizer: FimTokenizer,
    request: InfillRequest,
    line_tokens: LineTokenCounter,
    max_positions: int | None,
    heals: bool,
) -> Prepared:
    """The prompt `request` sends to an engine of `max_positions` (None: not known, not fitted)
    that heals or not (`Engine.heals`; `engine_heals` where no engine is open)."""
    if max_positions is not None:
        request = fit_to_model(request, max_positions)
    window, ids = prompt_for(tokenizer, request, line_tokens)
    forced = b""
    if request.token_healing and heals:
        ids, forced = heal(tokenizer, ids, request.order)
    return Prepared(request, window, ids, forced)


def engine_heals(settings: Settings) -> bool:
    """Whether the settings' engine heals, known before it is open: only the in-process engine
    constrains its first tokens (a remote server has no such option: `Engine.heals`)."""
    return settings.engine == "transformers"


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
    budget, order = request.context_tokens, request.order
    extra, extra_used = "", 0
    if request.extra_context is not None:
        extra_budget = min(request.extra_context_tokens, budget // 2)
        extra, extra_used = fit_snippets(request.extra_context, extra_budget, line_tokens)
    reach = budget * tokenizer.max_piece_chars
    lines, column = clip_lines(request.lines, request.line, request.column, reach)
    window = fit_window(lines, request.line, column, budget - extra_used, line_tokens)
    if not tokenizer.lines_tokenize_alone:
        return window, build_prompt(tokenizer, extra + window.prefix, window.suffix, order, budget)
    prefix_lines = [*extra.splitlines(keepends=True), *window.prefix_lines]
    ids = assemble_prompt(
        tokenizer,
        encode_lines(tokenizer, prefix_lines, line_tokens.ids),
        encode_infilling_lines(window.suffix_lines, line_tokens.ids),
        order,
        budget,
    )
    return window, ids


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
