"""A model load as the editor sees it: work-done progress, and requests that wait for the load.

The scheduler reports a load as `LoadEvent`s on its loader thread; they hop to the event loop,
which owns the connection. Editors ask once as insert mode starts and again only when the cursor
moves: answering that request empty while the model loads would leave the user without a
suggestion until they type, so a completion request waits for the load instead.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from codellama_lsp.completion.loading import LoadEvent


class LoadProgress:
    """The load under way, shown as work-done progress where the client takes it."""

    def __init__(self, server: LanguageServer, settled: Callable[[LoadEvent], None]) -> None:
        self._server = server
        self._settled = settled
        """Told of the load's end or failure, before the waiting requests go on."""
        self.loop: asyncio.AbstractEventLoop | None = None
        """The event loop, once the server runs on one (at `initialize`)."""
        self.loading = False
        """A model load is under way: completion requests wait for it rather than go empty."""
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        """Per document, the newest request waiting for the load (an older one is superseded)."""
        self._progress: asyncio.Task[str | None] | None = None

    def on_load_event(self, event: LoadEvent) -> None:
        """Called on the loader thread: hop to the event loop, which owns the connection."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._show, event)

    async def settled(self, key: str) -> bool:
        """Wait out a model load under way; False if a newer request for `key` came meanwhile.

        As in the scheduler, only the newest request per document is kept waiting.
        """
        if not self.loading:
            return True
        older = self._waiting.pop(key, None)
        if older is not None and not older.done():
            older.set_result(False)
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[key] = waiter
        try:
            return await waiter
        finally:
            if self._waiting.get(key) is waiter:
                del self._waiting[key]

    def _show(self, event: LoadEvent) -> None:
        if event.kind == "begin":
            self._progress = asyncio.ensure_future(self._begin(event.message))
            return
        if event.kind == "report":
            if self._progress is not None:
                self._progress.add_done_callback(lambda task: self._report(task, event))
            return
        self._settled(event)
        self._end_wait()
        if self._progress is not None:
            self._progress.add_done_callback(lambda task: self._end(task, event.message))
            self._progress = None

    def _end_wait(self) -> None:
        """The load ended or failed: the requests waiting for it go on to the scheduler, which
        completes them, or answers them empty if there is no model."""
        self.loading = False
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(True)
        self._waiting.clear()

    async def _begin(self, title: str) -> str | None:
        capabilities = self._server.client_capabilities
        if not (capabilities.window and capabilities.window.work_done_progress):
            return None
        token = f"codellama-load-{uuid.uuid4()}"
        progress = self._server.work_done_progress
        try:
            await progress.create_async(token)
        except Exception:  # a client that refuses progress still gets completions
            return None
        progress.begin(
            token, types.WorkDoneProgressBegin(title="Code Llama", message=title, percentage=0)
        )
        return token

    def _report(self, begun: asyncio.Task[str | None], event: LoadEvent) -> None:
        """A download's bytes, after the begin (done callbacks run in the order added)."""
        if not begun.cancelled() and (token := begun.result()) is not None:
            report = types.WorkDoneProgressReport(
                message=event.message, percentage=event.percentage
            )
            self._server.work_done_progress.report(token, report)

    def _end(self, begun: asyncio.Task[str | None], message: str) -> None:
        if not begun.cancelled() and (token := begun.result()) is not None:
            self._server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
