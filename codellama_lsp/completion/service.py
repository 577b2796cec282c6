"""A completion request, start to end: reuse, extra context, debounce, the scheduler, memory.

A request awaits the scheduler's future, so a `$/cancelRequest` reaches it as `CancelledError`,
which cancels the job (the scheduler stops it before its next forward pass) and lets pygls answer
RequestCancelled. A request that comes while the model loads awaits the load first, in the same
cancellable way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from lsprotocol import types

from codellama_lsp.completion.cursor import Cursor
from codellama_lsp.completion.jobs import Job, Outcome
from codellama_lsp.completion.prepare import PromptView
from codellama_lsp.completion.request import InfillRequest
from codellama_lsp.completion.scheduler import Scheduler
from codellama_lsp.completion.suggestions import RecentSuggestions
from codellama_lsp.completion.typing_pace import TypingPace
from codellama_lsp.context.chooser import ExtraContextChooser
from codellama_lsp.documents.store import DocumentStore, Workspace
from codellama_lsp.settings import Settings


class Host(Protocol):
    """What a completion needs of the server it runs in."""

    @property
    def settings(self) -> Settings: ...

    def workspace_now(self) -> Workspace: ...

    def tell(self, kind: types.MessageType, message: str) -> None: ...


class CompletionService:
    """Completions and prompt previews for the cursors of one server."""

    def __init__(
        self,
        host: Host,
        scheduler: Scheduler,
        documents: DocumentStore,
        chooser: ExtraContextChooser,
        suggestions: RecentSuggestions,
        load_settled: Callable[[str], Awaitable[bool]],
    ) -> None:
        self._host = host
        self._scheduler = scheduler
        self._documents = documents
        self._chooser = chooser
        self._suggestions = suggestions
        self._load_settled = load_settled
        self._pace = TypingPace()
        """One for all documents: the pace is the typist's, and it carries to the next file."""

    async def complete(self, cursor: Cursor, debounce: bool) -> str | None:
        """The completion at a cursor: from a recent suggestion if typing agrees with it.

        `debounce`: an automatic request, which waits for the typist's next keystroke first.
        """
        settings = self._host.settings
        uri, context = cursor.document.uri, cursor.context()
        keep = settings.reuse_completions and not cursor.selected
        if keep and (rest := self._suggestions.reuse(uri, context)):
            return rest
        request, _ = await self.request_at(cursor, settings)
        outcome, job = await self._run(uri, request, settings, debounce, continues=keep)
        if outcome.infill is None:
            return None
        if not cursor.selected and self._documents.is_open(cursor.document):
            # Only while this opening of the document lasts: one closed meanwhile keeps nothing.
            self._suggestions.remember(uri, context, outcome.infill.text)
        if keep and job is not None:
            self._suggestions.remember_later(
                uri,
                context,
                outcome.infill,
                job.kept,
                lambda: self._documents.is_open(cursor.document),
            )
        return outcome.infill.text

    async def request_at(self, cursor: Cursor, settings: Settings) -> tuple[InfillRequest, int]:
        """The cursor's request, with its extra context; the document line its lines start at."""
        extra = await self._chooser.choose(
            cursor.document, cursor.lines, cursor.line, settings, self._host.workspace_now()
        )
        return cursor.window_request(settings, extra)

    async def prompt(self, request: InfillRequest) -> PromptView:
        """The prompt the request's completion would send."""
        return await asyncio.wrap_future(self._scheduler.prompt(request))

    async def _run(
        self,
        key: str,
        request: InfillRequest,
        settings: Settings,
        debounce: bool,
        continues: bool,
    ) -> tuple[Outcome, Job | None]:
        """The scheduler's outcome, and its job (None: superseded while the model loaded)."""
        delay = 0.0
        if debounce:
            delay = self._pace.wait(time.monotonic(), settings.debounce_ms / 1000)
        if not await self._load_settled(key):
            return Outcome("superseded"), None
        job = self._scheduler.submit(key, request, delay, continues=continues)
        try:
            outcome = await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            self._scheduler.cancel(job)
            raise
        if outcome.status == "failed" and outcome.message:  # empty: the same failure again
            self._host.tell(types.MessageType.Error, outcome.message)
        return outcome, job
