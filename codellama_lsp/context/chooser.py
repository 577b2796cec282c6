"""The extra context of a request, chosen off the event loop.

Reading a large neighbour (or asking whether git ignores it) would hold up every other message
on the event loop, so the choice runs on one thread of its own, from snapshots of the documents'
lines taken on the loop. One thread, so the choice and the memos of extra_context.py see one
call at a time; forgetting a closed file runs there too, after any choice under way.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor

from codellama_lsp.context import extra_context
from codellama_lsp.context.extra_context import (
    ExtraContext,
    OpenFile,
    StableChoice,
    choose_snippets,
    comment_marker,
)
from codellama_lsp.documents.store import DocumentStore, Source, Workspace, shown_path
from codellama_lsp.documents.text_document import TextDocument
from codellama_lsp.settings import Settings


class ExtraContextChooser:
    """Snippets of the other open and recently closed files, kept while typing in one place."""

    def __init__(self, documents: DocumentStore) -> None:
        self._documents = documents
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="codellama-extra-context")
        self._choice = StableChoice()
        """Used on `_thread` only, as the extra-context memos are."""

    async def choose(
        self,
        document: TextDocument,
        lines: tuple[str, ...],
        line: int,
        settings: Settings,
        workspace: Workspace,
    ) -> ExtraContext | None:
        """The extra context for a cursor at `line` of `lines` (a snapshot of `document`).

        Awaited, so a `$/cancelRequest` still reaches the handler.
        """
        budget = settings.extra_context_tokens
        if budget == 0:
            return None
        choice = functools.partial(
            self._choose,
            document.uri,
            lines,
            line,
            self._documents.sources(document.uri),
            budget,
            comment_marker(document.language_id, document.uri),
            time.monotonic(),
            settings,
            workspace,
        )
        return await asyncio.get_running_loop().run_in_executor(self._thread, choice)

    def forget(self, uri: str) -> None:
        """A file gone from the store: its memos go too, after any choice under way."""
        self._thread.submit(extra_context.forget, uri)

    def _choose(
        self,
        uri: str,
        lines: tuple[str, ...],
        line: int,
        sources: list[Source],
        budget: int,
        marker: str,
        now: float,
        settings: Settings,
        workspace: Workspace,
    ) -> ExtraContext | None:
        """On the chooser thread."""
        others = [
            source
            for source in sources
            if self._documents.may_share(source.document, settings, workspace)
        ]
        key = (uri, budget, tuple((other.document.uri, other.version) for other in others))

        def choose() -> ExtraContext:
            files = [
                OpenFile(other.document.uri, shown_path(other.document.uri, workspace), other.lines)
                for other in others
            ]
            return ExtraContext(choose_snippets(lines, line, files, budget), marker)

        return self._choice.get(key, line, now, choose)
