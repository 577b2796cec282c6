"""What one completion is asked (InfillRequest) and what it answers (Infill).

A request is built from the settings only (`InfillRequest.at`): its fields have no defaults of
their own, so what a completion, the preview and the command line use is what settings.py says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from codellama_lsp.context.extra_context import ExtraContext
from codellama_lsp.context.prompt import Order
from codellama_lsp.settings import Settings


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
    token_healing: bool
    time_budget_s: float
    extra_context: ExtraContext | None
    """Snippets of other files for the prompt's start, chosen by the caller (extra_context.py)."""
    extra_context_tokens: int

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
    ended: bool
    """The model ended the middle itself (<EOT> or </s>), rather than a bound or the early stop."""
