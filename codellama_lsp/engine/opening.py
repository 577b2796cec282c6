"""The engine the settings name, set up: the model loaded, or a server's client made."""

from __future__ import annotations

from ..download_progress import Progress
from ..settings import Settings
from ..tokenizer import FimTokenizer
from .interface import Engine


def open_engine(
    settings: Settings, tokenizer: FimTokenizer, progress: Progress | None = None
) -> Engine:
    """For a remote engine only `tokenizer` is needed of the checkpoint, never its weights (the
    in-process engine's download, on first use of a hub id, is reported to `progress`)."""
    if settings.engine == "llama.cpp":
        from .llama_cpp import LlamaCppEngine

        return LlamaCppEngine(settings, tokenizer)
    if settings.engine == "openai":
        from .openai_compatible import OpenAIEngine

        return OpenAIEngine(settings, tokenizer)
    from .in_process import InProcessEngine
    from .model import load_model

    return InProcessEngine(
        load_model(settings, progress, tokenizer),
        settings.cache_documents,
        settings.cache_megabytes * 2**20,
    )
