"""Completions driven below the server: THE request builder, a typing trace, the engine."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from codellama_lsp.completion.request import InfillRequest
from codellama_lsp.documents.text_document import TextDocument
from codellama_lsp.settings import Settings

TEST_SETTINGS = {"context_tokens": 1024, "max_new_tokens": 6, "time_budget_ms": 10_000}
"""Over the defaults: a window and an answer the tiny model gives quickly, and time to give it
on a loaded machine."""


def request(
    lines, line: int, column: int, order: str = "spm", eol: str = "\n", extra=None, **settings
) -> InfillRequest:
    """A request as the server builds one (`InfillRequest.at`), from `Settings`: the defaults,
    then TEST_SETTINGS, then `settings` (field names of `Settings`, such as `context_tokens=400`
    or `token_healing=False`)."""
    chosen = Settings(**{**TEST_SETTINGS, "order": order, **settings})
    return InfillRequest.at(chosen, lines, line, column, eol, extra)


def complete_with(loaded, request, state, counter, cancelled):
    """One completion through the in-process engine, with `state` as the document's cache."""
    from codellama_lsp.completion.infill import complete
    from codellama_lsp.engine.in_process import InProcessEngine

    engine = InProcessEngine(loaded, cache_documents=1, cache_bytes=2**40)
    engine.sessions["file:///t.py"] = state
    return complete(engine, "file:///t.py", request, counter, cancelled)


def typing_trace(length: int = 40) -> list[tuple[list[str], int, int]]:
    """A real file typed character by character on one line: (lines, line, column) per keystroke."""
    source = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    line = next(i for i, text in enumerate(lines) if len(text.strip()) > length and i > 200)
    typed = lines[line].rstrip("\n")
    indent = len(typed) - len(typed.lstrip())
    trace = []
    for column in range(indent, indent + length):
        document = TextDocument("file:///t.py", "python", 1, "".join(lines))
        document.lines[line] = typed[:column] + "\n"
        trace.append((list(document.lines), line, column))
    return trace


def checks_per_chunk(model) -> int:
    """Cancellation checks in one prefill chunk: each decoder layer and each linear map in it."""
    import torch

    return sum(
        module is layer or isinstance(module, torch.nn.Linear)
        for layer in model.get_decoder().layers
        for module in layer.modules()
    )
