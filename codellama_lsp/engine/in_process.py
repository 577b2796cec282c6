"""The in-process engine: the model in this process (torch), and one KV cache per document."""

from __future__ import annotations

import gc
from collections import OrderedDict

from codellama_lsp.engine.generation import CachedSequence, generate
from codellama_lsp.engine.interface import Cancelled, Generated, Limits
from codellama_lsp.engine.model import LoadedModel


class InProcessEngine:
    """Generation over a loaded model, each document's cache kept for its next prompt."""

    def __init__(self, loaded: LoadedModel, cache_documents: int, cache_bytes: int) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.max_positions = loaded.max_positions
        self.description = loaded.description
        self.heals = True
        self.sessions: OrderedDict[str, CachedSequence] = OrderedDict()
        """Newest last; only the scheduler's thread touches them."""
        self._documents = cache_documents
        self._bytes = cache_bytes

    def connect(self) -> None:
        """Loaded is connected."""

    def generate(self, document: str, prompt: list[int], limits: Limits) -> Generated:
        state = self.sessions.pop(document, None) or CachedSequence()
        try:
            generated = generate(
                self.loaded.model,
                prompt,
                state,
                max_new_tokens=limits.max_new_tokens,
                stop_ids=limits.stop_ids,
                temperature=limits.temperature,
                should_stop=limits.should_stop,
                cancelled=limits.cancelled,
                forced=limits.forced,
                tokenizer=self.tokenizer,
                deadline=limits.deadline,
                static_capacity=limits.prompt_budget if self.loaded.decode_graphs else 0,
            )
        except Cancelled:
            self._keep(document, state)  # valid for what it holds
            raise
        self._keep(document, state)
        return generated

    def set_cache_limits(self, documents: int, nbytes: int) -> None:
        self._documents, self._bytes = documents, nbytes

    def forget(self, document: str | None = None) -> None:
        if document is None:
            self.sessions.clear()
        else:
            self.sessions.pop(document, None)

    def cached(self) -> tuple[int, int]:
        return len(self.sessions), sum(s.nbytes() for s in self.sessions.values())

    def recover(self, error: Exception) -> str:
        """Drop every cache (a failure may have left one half-written, or memory short)."""
        import torch

        self.sessions.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if is_out_of_memory(error):
            return "out of memory while generating: the cache was dropped; lower contextTokens"
        return f"completion failed: {type(error).__name__}: {error}"

    def close(self) -> None:
        self.sessions.clear()

    def _keep(self, document: str, state: CachedSequence) -> None:
        """Keep a document's cache, newest last, dropping the oldest beyond the limits.

        The byte budget never drops the cache just used (it already exists, and without it
        every keystroke would prefill the whole prompt again); `cacheDocuments` 0 does.
        """
        self.sessions[document] = state
        while len(self.sessions) > self._documents or (
            len(self.sessions) > 1 and sum(s.nbytes() for s in self.sessions.values()) > self._bytes
        ):
            self.sessions.popitem(last=False)


def is_out_of_memory(error: Exception) -> bool:
    """Whether `error` means memory ran out, on any device.

    torch raises OutOfMemoryError only on accelerators: a CPU allocation failure is a
    RuntimeError ("DefaultCPUAllocator: can't allocate memory", "not enough memory" on
    Windows), and Python's own allocations raise MemoryError.
    """
    import torch

    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text
    )
