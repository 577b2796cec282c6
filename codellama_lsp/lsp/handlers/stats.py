"""`codellama/stats`: the scheduler's counters, and reuse's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


def stats(ls: CodeLlamaServer, params: Any) -> dict[str, Any]:
    assert ls.scheduler is not None
    reuse = {"reused": ls.suggestions.reused, "usedTokens": ls.suggestions.used_tokens}
    return {**ls.scheduler.stats(), **reuse}
