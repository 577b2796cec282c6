"""What every engine offers the scheduler: prompt ids and stop conditions in, new ids out.

An engine runs in-process (torch) or on an inference server (llama.cpp, OpenAI-compatible); the
documents, window, exact prompt ids, debounce, supersession and post-processing are the same for
all of them, and so is when generation stops: every engine pushes the ids it produces into a token
sink (token_sink.py), which owns the stop rule and builds the `Generated`. Nothing here imports
torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from codellama_lsp.checkpoint.tokenizer import FimTokenizer


class Cancelled(Exception):
    """The request was cancelled or superseded; the cache stays valid for what it holds."""

    def __init__(self, generated: int, prefilled: int = 0) -> None:
        super().__init__(f"cancelled after {generated} generated tokens")
        self.generated = generated
        self.prefilled = prefilled
        """Prompt tokens run through the model before the stop (0 if it stopped in the prefill):
        a continuation stopped after its answer went out still prefilled its prompt."""


class EngineSetupError(Exception):
    """The engine cannot be set up as the settings say; the message is meant for the user."""


class EngineUnavailable(Exception):
    """The engine cannot answer now (not reachable, refusing, too slow); the message is for
    the user, and the engine is tried again shortly."""


@dataclass(frozen=True)
class Limits:
    """When generation stops, whichever comes first."""

    max_new_tokens: int
    stop_ids: frozenset[int]
    """Ids that end generation; the one met is reported, not returned."""
    temperature: float
    deadline: float
    """`time.perf_counter()` past which generation stops and returns what it has."""
    should_stop: Callable[[list[int]], bool]
    """The post-processor's early stop: the shown text is complete."""
    cancelled: Callable[[], bool]
    """Superseded or cancelled: stop at once, raising `Cancelled`."""
    forced: bytes = b""
    """Token healing: the first new tokens must spell these bytes (engines that `heal`)."""
    prompt_budget: int = 0
    """The most positions a request with these settings needs: a preallocated cache fits it."""


@dataclass
class Generated:
    ids: list[int]
    stop_id: int | None
    """The stop id the model emitted itself, if it did (None: a limit or `should_stop`)."""
    prompt_tokens: int
    prefilled: int
    """Prompt tokens run through the model: the rest came from the cache."""
    first_token_s: float
    """From the moment the engine's `generate` was called, as `total_s`."""
    total_s: float


class Engine(Protocol):
    """Generation for one language server; called on the scheduler's thread only."""

    tokenizer: FimTokenizer
    max_positions: int
    description: str
    heals: bool
    """Whether it can constrain the first generated tokens (token healing)."""

    def connect(self) -> None:
        """Reach the engine and check it can serve prompts of this tokenizer; raises
        `EngineUnavailable` (and is tried again by the next `generate`)."""
        ...

    def generate(self, document: str, prompt: list[int], limits: Limits) -> Generated:
        """New ids after `prompt`, reusing what `document`'s last prompt left cached."""
        ...

    def forget(self, document: str | None = None) -> None:
        """Drop a document's cache (all of them with None)."""
        ...

    def set_cache_limits(self, documents: int, nbytes: int) -> None: ...

    def cached(self) -> tuple[int, int]:
        """Documents with a cache here, and the bytes they hold here."""
        ...

    def recover(self, error: Exception) -> str:
        """Free what a failed generation left behind; what to tell the user."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Interruptible(Protocol):
    """An engine whose calls wait on something outside this process (a server), which may
    never answer: the scheduler interrupts them from another thread when it drops the engine."""

    def interrupt(self) -> None:
        """Thread-safe: end the call under way now (it raises `Cancelled`), and every later
        one but `close`."""
        ...
