"""Completions driven below the server: a request builder, a typing trace, the engine."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch

from codellama_lsp.completion.infill import InfillRequest, complete
from codellama_lsp.documents.text_document import TextDocument
from codellama_lsp.engine.generation import CachedSequence
from codellama_lsp.engine.in_process import InProcessEngine
from codellama_lsp.engine.model import LoadedModel


def complete_with(loaded: LoadedModel, request, state: CachedSequence, counter, cancelled):
    """One completion through the in-process engine, with `state` as the document's cache."""
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


def request(lines: list[str], line: int, column: int, order: str = "spm") -> InfillRequest:
    return InfillRequest(
        lines=lines,
        line=line,
        column=column,
        eol="\n",
        order=order,
        context_tokens=1024,
        max_new_tokens=6,
        temperature=0.0,
    )


def checks_per_chunk(model) -> int:
    """Cancellation checks in one prefill chunk: each decoder layer and each linear map in it."""
    return sum(
        module is layer or isinstance(module, torch.nn.Linear)
        for layer in model.get_decoder().layers
        for module in layer.modules()
    )
