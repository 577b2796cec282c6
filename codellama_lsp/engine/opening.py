"""The engine the settings name, set up: the model loaded, or a server's client made."""

from __future__ import annotations

from ..settings import Settings
from ..tokenizer import FimTokenizer
from .interface import Engine


def open_engine(settings: Settings, tokenizer: FimTokenizer) -> Engine:
    """For a remote engine only `tokenizer` is needed of the checkpoint, never its weights."""
    if settings.engine == "llama.cpp":
        from .llama_cpp import LlamaCppEngine

        return LlamaCppEngine(settings, tokenizer)
    if settings.engine == "openai":
        from .openai_compatible import OpenAIEngine

        return OpenAIEngine(settings, tokenizer)
    from .in_process import InProcessEngine
    from .model import load_model

    return InProcessEngine(
        load_model(settings), settings.cache_documents, settings.cache_megabytes * 2**20
    )
