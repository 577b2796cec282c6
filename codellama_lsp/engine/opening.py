"""The engine the settings name, set up: the model loaded, or a server's client made."""

from __future__ import annotations

from codellama_lsp.checkpoint.download import Progress
from codellama_lsp.checkpoint.tokenizer import FimTokenizer
from codellama_lsp.engine.interface import Engine
from codellama_lsp.settings import Settings


def open_engine(
    settings: Settings, tokenizer: FimTokenizer, progress: Progress | None = None
) -> Engine:
    """For a remote engine only `tokenizer` is needed of the checkpoint, never its weights (the
    in-process engine's download, on first use of a hub id, is reported to `progress`)."""
    if settings.engine == "llama.cpp":
        from codellama_lsp.engine.remote.llama_cpp import LlamaCppEngine

        return LlamaCppEngine(settings, tokenizer)
    if settings.engine == "openai":
        from codellama_lsp.engine.remote.openai_compatible import OpenAIEngine

        return OpenAIEngine(settings, tokenizer)
    from codellama_lsp.engine.in_process import InProcessEngine
    from codellama_lsp.engine.model import load_model

    return InProcessEngine(
        load_model(settings, progress, tokenizer),
        settings.cache_documents,
        settings.cache_megabytes * 2**20,
    )
