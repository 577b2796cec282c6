"""The language server: thin pygls handlers over the document store, the worker and the replies.

Handlers that answer completions are `async`: they await the worker's future, so a
`$/cancelRequest` reaches them as `CancelledError`, which sets the job's cancel flag (the worker
stops before its next forward pass) and lets pygls answer RequestCancelled. A request that comes
while the model loads awaits the load first, in the same cancellable way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
from cattrs import ClassValidationError, transform_error
from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.lsp.server import LanguageServer
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCProtocol,
    JsonRPCRequestMessage,
    LanguageServerProtocol,
    lsp_method,
)
from pygls.uris import to_fs_path

from codellama_lsp import __version__
from codellama_lsp.completion.jobs import Job, Outcome
from codellama_lsp.completion.loading import LoadEvent
from codellama_lsp.completion.prepare import new_tokens_room
from codellama_lsp.completion.request import Infill, InfillRequest
from codellama_lsp.completion.scheduler import Scheduler
from codellama_lsp.completion.suggestions import Context, RecentSuggestions, context_at, next_piece
from codellama_lsp.completion.typing_pace import TypingPace
from codellama_lsp.context import extra_context
from codellama_lsp.context.extra_context import (
    ExtraContext,
    OpenFile,
    StableChoice,
    choose_snippets,
    comment_marker,
)
from codellama_lsp.context.window import BLOCK_LINES
from codellama_lsp.documents.git_ignore import GitIgnored
from codellama_lsp.documents.language_ids import lsp_language_id
from codellama_lsp.documents.text_document import Encoding, TextDocument
from codellama_lsp.lsp.replies import completion_items, inline_items, word_start
from codellama_lsp.settings import Settings, parse_settings

log = logging.getLogger(__name__)

STATS = "codellama/stats"
PROMPT = "codellama/prompt"
SETTINGS_SECTION = "codellama"
RECENTLY_CLOSED = 8
"""Closed documents whose text stays a source of extra context, the most recent first."""


@dataclass(frozen=True)
class Source:
    """An other document as the chooser sees it: its lines and version when the request came."""

    document: TextDocument
    version: int
    lines: tuple[str, ...]


@attrs.define
class PromptRequest:
    """`codellama/prompt`, typed so that its params are checked as a built-in request's are."""

    id: int | str
    params: types.TextDocumentPositionParams
    method: str = PROMPT
    jsonrpc: str = "2.0"


@attrs.define
class Unstructured:
    """A request or notification whose params do not fit its method: answered, never run."""

    method: Any
    msg_id: int | str | None
    is_request: bool
    problem: str


class CodeLlamaProtocol(LanguageServerProtocol):
    """pygls' protocol, minus its own copy of every document, plus answers to malformed requests.

    The server keeps its own document store, which splits lines as LSP does and edits only the
    lines a change touches. pygls raises in its read loop on a request whose params do not
    structure, so the client never gets a reply; here it gets InvalidParams.

    The LSP state machine is kept here, once for every method: before `initialize` a request is
    answered ServerNotInitialized and a notification other than `exit` is dropped; a second
    `initialize`, and any request after `shutdown`, is answered InvalidRequest (pygls would run
    the one and leave the other unanswered). A body that is JSON but not one JSON-RPC 2.0
    message (a batch: LSP has none) is answered InvalidRequest with id null.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initialize_received = False

    @functools.lru_cache  # noqa: B019 (cached as pygls caches the method it overrides)
    def get_message_type(self, method: str) -> type[Any] | None:
        return PromptRequest if method == PROMPT else super().get_message_type(method)

    def structure_message(self, data: dict[str, Any]) -> Any:
        if "jsonrpc" not in data or "method" not in data or "error" in data:
            return super().structure_message(data)  # a response, or a dict inside a message
        is_request = "id" in data
        try:
            typed = self.get_message_type(data["method"])
            if typed is None:  # JSON-RPC lets params be left out; pygls' generic types do not
                generic = JsonRPCRequestMessage if is_request else JsonRPCNotification
                return self._converter.structure({"params": None, **data}, generic)
            return self._converter.structure(data, typed)
        except Exception as error:
            msg_id = data.get("id")
            return Unstructured(
                method=data["method"],
                msg_id=msg_id if isinstance(msg_id, (int, str)) else None,
                is_request=is_request,
                problem=_problem(error),
            )

    def handle_message(self, message: Any) -> None:
        unstructured = isinstance(message, Unstructured)
        if not unstructured and getattr(message, "jsonrpc", None) != JsonRPCProtocol.VERSION:
            what = "a batch (LSP has none)" if isinstance(message, list) else "not JSON-RPC 2.0"
            log.warning("refused a message that is %s", what)
            self.reply_error(None, JsonRpcInvalidRequest(f"refused a message that is {what}"))
            return
        method = message.method if unstructured else getattr(message, "method", None)
        if method is not None:  # a request or a notification, not a response
            is_request = message.is_request if unstructured else hasattr(message, "id")
            refusal = self.refusal(method)
            if refusal is not None:
                log.warning("%.64r: %s", method, refusal.message)
                if is_request:
                    self.reply_error(message.msg_id if unstructured else message.id, refusal)
                return
            if method == types.INITIALIZE and not unstructured:
                self.initialize_received = True
        if unstructured:
            log.warning("invalid params for %.64r: %s", message.method, message.problem)
            if message.is_request:
                self.reply_error(message.msg_id, JsonRpcInvalidParams(message.problem))
            return
        super().handle_message(message)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(
        self, params: types.InitializeParams
    ) -> Generator[Any, Any, types.InitializeResult]:
        """pygls' result, less the static completion provider where it is registered at run time.

        LSP forbids registering a capability both ways; a dynamic one can change its trigger
        characters when the settings do.
        """
        result: types.InitializeResult = yield from super().lsp_initialize(params)
        if registers_completion(params.capabilities):
            result.capabilities.completion_provider = None
        return result

    def refusal(self, method: Any) -> JsonRpcException | None:
        """Why `method` may not run in the server's state (LSP 3.17's lifecycle), or None."""
        if method == types.EXIT:
            return None
        if not self.initialize_received:
            if method == types.INITIALIZE:
                return None
            return JsonRpcServerNotInitialized("the server is not initialized yet")
        if method == types.INITIALIZE:
            return JsonRpcInvalidRequest("the server is already initialized")
        if self._shutdown:
            return JsonRpcInvalidRequest("the server is shut down: only exit is accepted")
        return None

    def reply_error(self, msg_id: int | str | None, error: JsonRpcException) -> None:
        """An error reply written by hand: lsprotocol's would leave out a null id."""
        response = self._converter.unstructure(error.to_response_error())
        self._send_data({"jsonrpc": JsonRPCProtocol.VERSION, "id": msg_id, "error": response})

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: Any) -> Generator[Any, Any, None]:
        yield from self._user(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: Any) -> Generator[Any, Any, None]:
        yield from self._user(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: Any) -> Generator[Any, Any, None]:
        yield from self._user(types.TEXT_DOCUMENT_DID_CLOSE, params)

    def _user(self, method: str, params: Any) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(method)) is not None:
            yield handler, (params,), None


def file_path(uri: str) -> Path | None:
    """The local file a `file:` URI names; None for another scheme (an unsaved buffer)."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    return Path(path) if path is not None else None


def registers_completion(capabilities: types.ClientCapabilities) -> bool:
    """Whether the client takes completion's registration at run time (and so its changes)."""
    completion = capabilities.text_document and capabilities.text_document.completion
    return bool(completion and completion.dynamic_registration)


def _problem(error: Exception) -> str:
    """What did not fit, by path and expected type, never the value (it may be document text)."""
    if isinstance(error, ClassValidationError):
        return "; ".join(transform_error(error))
    return f"cannot be read ({type(error).__name__})"


class CodeLlamaServer(LanguageServer):
    protocol: CodeLlamaProtocol

    def __init__(self, base: Settings) -> None:
        super().__init__(
            "codellama-lsp",
            __version__,
            protocol_cls=CodeLlamaProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.base_settings = base
        self.settings = base
        self.documents: dict[str, TextDocument] = {}
        self.closed: OrderedDict[str, TextDocument] = OrderedDict()
        self.git_ignored = GitIgnored()
        self.extra_choice = StableChoice()
        """Used on `chooser` only, as the extra-context memos are."""
        self.chooser = ThreadPoolExecutor(1, thread_name_prefix="codellama-extra-context")
        self.scheduler: Scheduler | None = None
        self._progress: asyncio.Task[str | None] | None = None
        self.encoding: Encoding = "utf-16"
        self.event_loop: asyncio.AbstractEventLoop | None = None
        self.initial_problems: list[str] = []
        self.shut_down = False
        self.recent = RecentSuggestions()
        self.pace = TypingPace()
        """One for all documents: the pace is the typist's, and it carries to the next file."""
        self.reused = 0
        self.loading = False
        """A model load is under way: completion requests wait for it rather than go empty."""
        self.awaiting_load: dict[str, asyncio.Future[bool]] = {}
        """Per document, the newest request waiting for the load (an older one is superseded)."""
        self.warned_room: tuple[int, int] | None = None
        """(maxNewTokens, model positions) last warned about as too many, to warn only once."""
        self.completion_registration: str | None = None
        """The id of completion's run-time registration with the client, once made."""
        self.used_tokens = 0
        """Continued tokens of kept middles that were shown beyond their first answer."""

    def configure_scheduler(self) -> None:
        """Hand the settings to the worker; note a load it starts, for requests to wait on."""
        assert self.scheduler is not None
        if self.scheduler.configure(self.settings):
            self.loading = True

    def apply_settings(self, raw: Any) -> None:
        """Settings changed at run time: what is named changes, the rest stays."""
        triggers = self.settings.trigger_characters
        self.settings, problems = parse_settings(raw, self.settings, self.base_settings)
        for problem in problems:
            self.tell(types.MessageType.Warning, f"codellama-lsp: {problem}")
        if self.settings.trigger_characters != triggers:
            if registers_completion(self.client_capabilities):
                self.register_completion()
            else:
                log.info("the client cannot take new trigger characters before a restart")
        if self.scheduler is not None:
            self.configure_scheduler()
            self.check_new_tokens()

    def check_new_tokens(self) -> None:
        """Warn once when `maxNewTokens` is more than the model's positions allow.

        Completions still run, with as many as they allow (`fit_to_model`).
        """
        positions = self.scheduler.max_positions if self.scheduler is not None else None
        if positions is None:
            return
        asked, room = self.settings.max_new_tokens, new_tokens_room(positions)
        if asked <= room or room < 1 or self.warned_room == (asked, positions):
            return  # (no room at all: each completion fails and says why)
        self.warned_room = (asked, positions)
        self.tell(
            types.MessageType.Warning,
            f"codellama-lsp: maxNewTokens {asked} is more than the model's {positions} positions "
            f"allow; using {room}",
        )

    def completion_options(self) -> types.CompletionOptions:
        return types.CompletionOptions(trigger_characters=list(self.settings.trigger_characters))

    def register_completion(self) -> None:
        """Register completion with the client, with the settings' trigger characters.

        An earlier registration is withdrawn first, so the editor never holds two.
        """
        method = types.TEXT_DOCUMENT_COMPLETION
        if self.completion_registration is not None:
            gone = types.Unregistration(id=self.completion_registration, method=method)
            self.client_unregister_capability(types.UnregistrationParams(unregisterations=[gone]))
        self.completion_registration = f"codellama-completion-{uuid.uuid4()}"
        options = types.CompletionRegistrationOptions(
            document_selector=None, trigger_characters=list(self.settings.trigger_characters)
        )
        registration = types.Registration(
            id=self.completion_registration, method=method, register_options=options
        )
        self.client_register_capability(types.RegistrationParams(registrations=[registration]))

    def end(self) -> None:
        """End the process now, 0 after `shutdown` and 1 without, as the spec says of `exit`."""
        if self.scheduler is not None:
            self.scheduler.stop()
        terminate(0 if self.shut_down else 1)

    def report_server_error(self, error: Exception, source: type[Exception]) -> None:
        """Log, rather than pop up as pygls does, errors outside any request: a client's junk.

        A body that is not JSON, or nested too deeply to read, is answered ParseError with id
        null, as JSON-RPC asks.
        """
        if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
            log.warning("a message that is not JSON: %s", error)
            self.protocol.reply_error(None, JsonRpcParseError(f"not JSON: {error}"))
            return
        if isinstance(error, RecursionError):  # json.loads: nested deeper than Python recurses
            log.warning("a message nested too deeply to read")
            self.protocol.reply_error(None, JsonRpcParseError("nested too deeply"))
            return
        log.warning("%s: %s", source.__name__, error)

    def tell(self, kind: types.MessageType, message: str) -> None:
        log.warning("%s", message) if kind <= types.MessageType.Warning else log.info("%s", message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def on_load_event(self, event: LoadEvent) -> None:
        """Called on the loader thread: hop to the event loop, which owns the connection."""
        assert self.event_loop is not None
        self.event_loop.call_soon_threadsafe(self._show_load_event, event)

    def _show_load_event(self, event: LoadEvent) -> None:
        if event.kind == "begin":
            self._progress = asyncio.ensure_future(self._begin_progress(event.message))
            return
        if event.kind == "report":
            if self._progress is not None:
                self._progress.add_done_callback(lambda task: self._report_progress(task, event))
            return
        if event.kind == "failed":
            self.tell(types.MessageType.Error, event.message)
        else:
            self.check_new_tokens()
        self._end_load_wait()
        if self._progress is not None:
            self._progress.add_done_callback(lambda task: self._end_progress(task, event.message))
            self._progress = None

    def _end_load_wait(self) -> None:
        """The load ended or failed: the requests waiting for it go on to the worker, which
        completes them, or answers them empty if there is no model."""
        self.loading = False
        for waiter in self.awaiting_load.values():
            if not waiter.done():
                waiter.set_result(True)
        self.awaiting_load.clear()

    async def load_settled(self, key: str) -> bool:
        """Wait out a model load under way; False if a newer request for `key` came meanwhile.

        Editors ask once as insert mode starts and again only when the cursor moves: answering
        that request empty while the model loads leaves the user without a suggestion until
        they type. As in the worker, only the newest request per document is kept waiting.
        """
        if not self.loading:
            return True
        older = self.awaiting_load.pop(key, None)
        if older is not None and not older.done():
            older.set_result(False)
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.awaiting_load[key] = waiter
        try:
            return await waiter
        finally:
            if self.awaiting_load.get(key) is waiter:
                del self.awaiting_load[key]

    async def _begin_progress(self, title: str) -> str | None:
        capabilities = self.client_capabilities
        if not (capabilities.window and capabilities.window.work_done_progress):
            return None
        token = f"codellama-load-{uuid.uuid4()}"
        try:
            await self.work_done_progress.create_async(token)
        except Exception:  # a client that refuses progress still gets completions
            return None
        self.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title="Code Llama", message=title, percentage=0)
        )
        return token

    def _report_progress(self, begun: asyncio.Task[str | None], event: LoadEvent) -> None:
        """A download's bytes, after the begin (done callbacks run in the order added)."""
        if not begun.cancelled() and (token := begun.result()) is not None:
            report = types.WorkDoneProgressReport(
                message=event.message, percentage=event.percentage
            )
            self.work_done_progress.report(token, report)

    def _end_progress(self, begun: asyncio.Task[str | None], message: str) -> None:
        if not begun.cancelled() and (token := begun.result()) is not None:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    def document(self, uri: str) -> TextDocument | None:
        return self.documents.get(uri)

    def completable(self, uri: str) -> TextDocument | None:
        """The document to complete in: open, in step with the editor, its language enabled."""
        document = self.documents.get(uri)
        if document is None or not document.in_step:
            return None
        return document if self.settings.language_enabled(document.language_id) else None

    def locate(self, document: TextDocument, position: types.Position) -> tuple[int, int]:
        try:
            return document.location(position, self.encoding)
        except ValueError as error:
            raise JsonRpcInvalidParams(str(error)) from error

    async def request_at(
        self, document: TextDocument, line: int, column: int, typed: tuple[int, str] | None = None
    ) -> tuple[InfillRequest, int]:
        """A snapshot of the lines the window can reach, and the document line it starts at.

        Snapshots keep later edits, which arrive while the extra context is chosen, from racing
        the chooser and the worker. Every line costs at least one token,
        so `contextTokens` lines each way is enough; the snapshot starts on a block boundary so
        the window's own block edges stay put. `typed` = (from column, text) replaces the line's
        text from that column to the cursor, as when a popup item is selected.
        """
        reach = self.settings.context_tokens
        first = max(0, (line - reach) // BLOCK_LINES * BLOCK_LINES)
        lines = document.lines[first : line + reach + 1]
        if typed is not None:
            start, text = typed
            current = lines[line - first]
            lines[line - first] = current[:start] + text + current[column:]
            column = start + len(text)
        extra = await self.extra_context_at(document, line)
        request = InfillRequest.at(
            self.settings, lines, line - first, column, document.eol(), extra
        )
        return request, first

    async def extra_context_at(self, document: TextDocument, line: int) -> ExtraContext | None:
        """Snippets of the other open and recently closed files, kept while typing in one place.

        Chosen on the chooser thread, from snapshots of the documents' lines taken here: reading
        a large neighbour (or asking git about it) would hold up every other message on the
        event loop. Awaited, so a `$/cancelRequest` still reaches the handler.
        """
        budget = self.settings.extra_context_tokens
        if budget == 0:
            return None
        sources = [
            Source(other, other.version, tuple(other.lines))
            for other in [*self.documents.values(), *reversed(self.closed.values())]
            if other.uri != document.uri
        ]
        choice = functools.partial(
            self._choose_extra,
            document.uri,
            tuple(document.lines),
            line,
            sources,
            budget,
            comment_marker(document.language_id, document.uri),
            time.monotonic(),
        )
        return await asyncio.get_running_loop().run_in_executor(self.chooser, choice)

    def _choose_extra(
        self,
        uri: str,
        lines: tuple[str, ...],
        line: int,
        sources: list[Source],
        budget: int,
        marker: str,
        now: float,
    ) -> ExtraContext | None:
        """On the chooser thread (one, so the choice and the memos see one call at a time)."""
        others = [source for source in sources if self._may_share(source.document)]
        key = (uri, budget, tuple((other.document.uri, other.version) for other in others))

        def choose() -> ExtraContext:
            files = [
                OpenFile(other.document.uri, self._shown_path(other.document.uri), other.lines)
                for other in others
            ]
            return ExtraContext(choose_snippets(lines, line, files, budget), marker)

        return self.extra_choice.get(key, line, now, choose)

    def _may_share(self, document: TextDocument) -> bool:
        """Whether a document's text may go into another's prompt: not excluded, inside a
        workspace folder (after symlinks, unless `shareOutsideWorkspace`), and neither the file
        nor what it links to git-ignored. Safe from any thread; undecidable means no."""
        if not self.settings.language_enabled(document.language_id):
            return False
        path = file_path(document.uri)
        if path is None:
            return True
        try:
            real = path.resolve()
        except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop
            return False
        if not self.settings.share_outside_workspace and not any(
            real.is_relative_to(folder) for folder in self._workspace_folders()
        ):
            return False
        return not self.git_ignored(path) and (real == path or not self.git_ignored(real))

    def _workspace_folders(self) -> list[Path]:
        """The workspace's folders (symlinks resolved): `initialize`'s folders or root, as
        pygls keeps them up to date with `workspace/didChangeWorkspaceFolders`."""
        uris = [folder.uri for folder in list(self.workspace.folders.values())]
        if not uris and self.workspace.root_uri:
            uris = [self.workspace.root_uri]
        folders = []
        for uri in uris:
            path = file_path(uri)
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                if path is not None:
                    folders.append(path.resolve())
        return folders

    def _shown_path(self, uri: str) -> str:
        """A file's path as the prompt names it: relative to its workspace folder if under one."""
        path = file_path(uri)
        if path is None:
            return uri
        roots = [file_path(folder.uri) for folder in list(self.workspace.folders.values())]
        root = self.workspace.root_path
        for folder in [*roots, Path(root) if root else None]:
            if folder is not None and path.is_relative_to(folder):
                return path.relative_to(folder).as_posix()
        return str(path)

    async def complete(
        self,
        document: TextDocument,
        line: int,
        column: int,
        debounce: bool,
        typed: tuple[int, str] | None = None,
    ) -> str | None:
        """The completion at a cursor: from a recent suggestion if typing agrees with it."""
        context = context_at(document.lines, line, column)
        if self.settings.reuse_completions and typed is None:
            found = self.recent.lookup(document.uri, context)
            if found is not None:
                rest, suggestion = found
                if suggestion.continued:
                    rest = next_piece(rest, context, suggestion.ended)
                if rest:
                    self.reused += 1
                    if suggestion.continued and not suggestion.used:
                        suggestion.used = True
                        self.used_tokens += suggestion.tokens
                    return rest
        request, _ = await self.request_at(document, line, column, typed)
        keep = self.settings.reuse_completions and typed is None
        outcome = await self.run(
            document.uri, request, debounce, (document, context) if keep else None
        )
        if outcome.infill is None:
            return None
        if typed is None and self.documents.get(document.uri) is document:
            # Only while this opening of the document lasts: one closed meanwhile keeps nothing.
            self.recent.remember(document.uri, context, outcome.infill.text)
        return outcome.infill.text

    def keep(
        self, document: TextDocument, context: Context, shown: Infill, kept: Infill | None
    ) -> None:
        """A continued middle, kept for asking again: on the event loop, which owns `recent`;
        only while the same opening of the document lasts."""
        if kept is not None and self.documents.get(document.uri) is document:
            tokens = kept.generated - shown.generated
            self.recent.remember(
                document.uri, context, kept.text, continued=True, ended=kept.ended, tokens=tokens
            )

    async def run(
        self,
        key: str,
        request: InfillRequest,
        debounce: bool,
        keep_in: tuple[TextDocument, Context] | None = None,
    ) -> Outcome:
        """The worker's outcome; with `keep_in`, a middle generated on is kept there."""
        assert self.scheduler is not None
        delay = 0.0
        if debounce:
            delay = self.pace.wait(time.monotonic(), self.settings.debounce_ms / 1000)
        if not await self.load_settled(key):
            return Outcome("superseded")
        job: Job = self.scheduler.submit(key, request, delay, continues=keep_in is not None)
        try:
            outcome = await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            self.scheduler.cancel(job)
            raise
        if outcome.status == "failed" and outcome.message:  # empty: the same failure again
            self.tell(types.MessageType.Error, outcome.message)
        if keep_in is not None and outcome.infill is not None:
            loop, shown = asyncio.get_running_loop(), outcome.infill
            job.kept.add_done_callback(
                lambda done: loop.call_soon_threadsafe(self.keep, *keep_in, shown, done.result())
            )
        return outcome


def terminate(code: int) -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a pipe the client closed, say
            stream.flush()
    os._exit(code)


def create_server(base: Settings) -> CodeLlamaServer:
    server = CodeLlamaServer(base)

    @server.feature(types.INITIALIZE)
    def initialize(ls: CodeLlamaServer, params: types.InitializeParams) -> None:
        ls.event_loop = asyncio.get_running_loop()
        negotiated = ls.workspace.position_encoding
        ls.encoding = getattr(negotiated, "value", negotiated) or "utf-16"  # type: ignore[assignment]
        ls.scheduler = Scheduler(ls.on_load_event)
        options = params.initialization_options
        ls.settings, ls.initial_problems = parse_settings(options, ls.base_settings)
        # Read by pygls after this handler, to build the capabilities the result advertises.
        ls.protocol.fm.feature_options[types.TEXT_DOCUMENT_COMPLETION] = ls.completion_options()

    @server.feature(types.INITIALIZED)
    def initialized(ls: CodeLlamaServer, params: types.InitializedParams) -> None:
        for problem in ls.initial_problems:
            ls.tell(types.MessageType.Warning, f"codellama-lsp: {problem}")
        if ls.settings.trust_remote_code:
            ls.tell(
                types.MessageType.Warning,
                "codellama-lsp: --trust-remote-code is on: the checkpoint's own Python code "
                "may run on this machine",
            )
        if registers_completion(ls.client_capabilities):
            ls.register_completion()
        ls.configure_scheduler()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(
        ls: CodeLlamaServer, params: types.DidChangeConfigurationParams
    ) -> None:
        raw = params.settings
        if isinstance(raw, dict) and isinstance(raw.get(SETTINGS_SECTION), dict):
            raw = raw[SETTINGS_SECTION]
        if raw in (None, {}):
            return
        ls.apply_settings(raw)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CodeLlamaServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        language_id = lsp_language_id(item.language_id)
        ls.documents[item.uri] = TextDocument(item.uri, language_id, item.version, item.text)
        ls.closed.pop(item.uri, None)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodeLlamaServer, params: types.DidChangeTextDocumentParams) -> None:
        document = ls.documents.get(params.text_document.uri)
        if document is None:
            log.warning("change to a document that is not open: %s", params.text_document.uri)
            return
        version = params.text_document.version
        problem = None
        if version < document.version:
            problem = f"version {version} is older than the document's {document.version}"
        else:
            try:
                document.apply_changes(params.content_changes, ls.encoding)
            except ValueError as error:
                problem = str(error)
        if problem is not None:
            # The editor's text and this copy now differ: completing from it would be wrong.
            log.warning(
                "refused a change to %s (%s): completions there stop until the editor sends "
                "the whole text again (reopen the file)",
                params.text_document.uri,
                problem,
            )
            document.in_step = False
            return
        whole = types.TextDocumentContentChangeWholeDocument
        if any(isinstance(change, whole) for change in params.content_changes):
            document.in_step = True
        document.version = version

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodeLlamaServer, params: types.DidCloseTextDocumentParams) -> None:
        closed = ls.documents.pop(params.text_document.uri, None)
        if closed is not None:
            ls.closed[closed.uri] = closed
            while len(ls.closed) > RECENTLY_CLOSED:
                gone, _ = ls.closed.popitem(last=False)
                ls.chooser.submit(extra_context.forget, gone)  # after any choice under way
        ls.recent.forget(params.text_document.uri)
        if ls.scheduler is not None:
            ls.scheduler.forget(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CodeLlamaServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        empty = types.InlineCompletionList(items=[])
        document = ls.completable(params.text_document.uri)
        if document is None:
            return empty
        line, column = ls.locate(document, params.position)
        # Replies use the position clamped into the document (a cursor past the end of a line
        # is at its end), taken before awaiting: edits may arrive meanwhile.
        end = document.position(line, column, ls.encoding)
        start, typed = end, ""
        selected = params.context.selected_completion_info
        if selected is not None:
            # The popup's selected item becomes part of the prefix: complete after it.
            start_line, start_column = ls.locate(document, selected.range.start)
            if start_line == line and start_column <= column:
                start = document.position(line, start_column, ls.encoding)
                typed = selected.text
        automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        text = await ls.complete(
            document, line, column, automatic, (start_column, typed) if typed else None
        )
        return inline_items(text or "", start, end, typed)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION)  # options: from the settings, at initialize
    async def completion(
        ls: CodeLlamaServer, params: types.CompletionParams
    ) -> types.CompletionList:
        empty = types.CompletionList(is_incomplete=True, items=[])
        document = ls.completable(params.text_document.uri)
        if document is None:
            return empty
        context = params.context
        kind = context.trigger_kind if context else types.CompletionTriggerKind.Invoked
        if (
            kind == types.CompletionTriggerKind.TriggerCharacter
            and context is not None
            and context.trigger_character not in ls.settings.trigger_characters
        ):
            return empty
        line, column = ls.locate(document, params.position)
        text = document.line_text(line)
        begin = word_start(text, column)
        start = document.position(line, begin, ls.encoding)
        end = document.position(line, column, ls.encoding)  # clamped, taken before awaiting
        completed = await ls.complete(
            document, line, column, debounce=kind != types.CompletionTriggerKind.Invoked
        )
        return completion_items(
            completed or "", text[begin:column], start, end, document.language_id
        )

    @server.feature(STATS)
    def stats(ls: CodeLlamaServer, params: Any) -> dict[str, Any]:
        assert ls.scheduler is not None
        return {**ls.scheduler.stats(), "reused": ls.reused, "usedTokens": ls.used_tokens}

    @server.feature(PROMPT)
    async def prompt(
        ls: CodeLlamaServer, params: types.TextDocumentPositionParams
    ) -> dict[str, Any]:
        uri = params.text_document.uri
        document = ls.document(uri)
        if document is None:
            raise JsonRpcInvalidParams(f"document not open: {uri}")
        assert ls.scheduler is not None
        line, column = ls.locate(document, params.position)
        request, first = await ls.request_at(document, line, column)
        view = await asyncio.wrap_future(ls.scheduler.prompt(request))
        return {
            "text": view.text,
            "ids": view.ids,
            "order": request.order,
            "firstLine": first + view.first_line,
            "endLine": first + view.end_line,
            "mustStartWith": view.must_start_with,
        }

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: CodeLlamaServer, params: None) -> None:
        ls.shut_down = True
        if ls.scheduler is not None:
            ls.scheduler.stop()

    @server.feature(types.EXIT)
    def exit_(ls: CodeLlamaServer, params: None) -> None:
        """Exit now, 0 after `shutdown` and 1 without, as the spec says.

        The process ends here rather than through interpreter teardown, which a loader thread
        still inside torch or transformers can turn into a crash with another exit code.
        """
        ls.end()

    return server
