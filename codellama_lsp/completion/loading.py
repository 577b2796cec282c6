"""Opening the settings' engine (on a thread of its own), connecting it (on the worker thread,
which owns it), and the news of both for the editor.

A load reads the tokenizer first and hands it over at once, so prompts can be built (and
previewed) while the weights load or download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from codellama_lsp.checkpoint.download import describe, percentage
from codellama_lsp.checkpoint.tokenizer import FimTokenizer, TokenizerError, load_tokenizer
from codellama_lsp.engine.interface import Cancelled, Engine, EngineSetupError, EngineUnavailable
from codellama_lsp.engine.opening import open_engine
from codellama_lsp.settings import Settings


@dataclass(frozen=True)
class LoadEvent:
    """Loading news for the editor: `begin`, `report` (download progress), `end` or `failed`,
    with a message."""

    kind: Literal["begin", "report", "end", "failed"]
    message: str
    percentage: int | None = None


def load(
    settings: Settings,
    on_event: Callable[[LoadEvent], None],
    on_tokenizer: Callable[[FimTokenizer], None],
) -> Engine | None:
    """The settings' engine, open but not yet connected (the worker thread, which owns it,
    connects it); None if it cannot be opened, which `on_event` has been told."""
    on_event(LoadEvent("begin", f"Loading {settings.model}"))

    def report_download(done: int, total: int) -> None:
        message = f"Downloading {settings.model}: {describe(done, total)}"
        on_event(LoadEvent("report", message, percentage(done, total)))

    try:
        tokenizer = load_tokenizer(settings.model)
        on_tokenizer(tokenizer)
        return open_engine(settings, tokenizer, report_download)
    except (EngineSetupError, TokenizerError) as error:
        on_event(LoadEvent("failed", f"codellama-lsp: {error}"))
    except Exception as error:  # a broken checkpoint can fail in many ways: say so, stay up
        message = f"codellama-lsp: cannot load {settings.model}: {type(error).__name__}: {error}"
        on_event(LoadEvent("failed", message))
    return None


def connect(engine: Engine, on_event: Callable[[LoadEvent], None]) -> str | None:
    """Reach the engine; the message of its failure (not yet told), if it failed.

    An engine that cannot be reached is ready all the same: each request tries again (at most
    once a second), and answers empty at once meanwhile.
    """
    try:
        engine.connect()
    except Cancelled:
        return None  # interrupted: replaced, or the server stops; nothing to tell
    except EngineUnavailable as error:
        return f"codellama-lsp: {error}"
    on_event(LoadEvent("end", f"Code Llama ready: {engine.description}"))
    return None
