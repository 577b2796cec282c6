"""The server: one editor session's settings, documents, scheduler and completions.

The handlers (lsp/handlers/, one module per method) read their params and call into it; the
protocol (protocol.py) has already answered every message that may not reach them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import uuid
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcParseError
from pygls.lsp.server import LanguageServer

from codellama_lsp import __version__
from codellama_lsp.completion.loading import LoadEvent
from codellama_lsp.completion.prepare import new_tokens_room
from codellama_lsp.completion.scheduler import Scheduler
from codellama_lsp.completion.service import CompletionService
from codellama_lsp.completion.suggestions import RecentSuggestions
from codellama_lsp.context.chooser import ExtraContextChooser
from codellama_lsp.documents.store import DocumentStore, Workspace
from codellama_lsp.documents.text_document import Encoding
from codellama_lsp.lsp.load_progress import LoadProgress
from codellama_lsp.lsp.protocol import CodeLlamaProtocol, registers_completion
from codellama_lsp.settings import Settings, parse_settings

log = logging.getLogger(__name__)


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
        self.initial_problems: list[str] = []
        self.encoding: Encoding = "utf-16"
        self.documents = DocumentStore()
        self.chooser = ExtraContextChooser(self.documents)
        self.suggestions = RecentSuggestions()
        self.load = LoadProgress(self, self._load_settled)
        self.scheduler: Scheduler | None = None
        self._completions: CompletionService | None = None
        self.shut_down = False
        self.warned_room: tuple[int, int] | None = None
        """(maxNewTokens, model positions) last warned about as too many, to warn only once."""
        self.completion_registration: str | None = None
        """The id of completion's run-time registration with the client, once made."""

    @property
    def completions(self) -> CompletionService:
        assert self._completions is not None, "the protocol lets no request before initialize"
        return self._completions

    def start(self, encoding: Encoding, options: Any) -> None:
        """At `initialize`: the negotiated encoding, the first settings, a scheduler (idle until
        `initialized` configures it) and the completions it serves."""
        self.load.loop = asyncio.get_running_loop()
        self.encoding = encoding
        self.scheduler = Scheduler(self.load.on_load_event)
        self._completions = CompletionService(
            self, self.scheduler, self.documents, self.chooser, self.suggestions, self.load.settled
        )
        self.settings, self.initial_problems = parse_settings(options, self.base_settings)
        # Read by pygls after initialize's handler, to build the capabilities the result advertises.
        self.protocol.fm.feature_options[types.TEXT_DOCUMENT_COMPLETION] = types.CompletionOptions(
            trigger_characters=list(self.settings.trigger_characters)
        )

    def configure_scheduler(self) -> None:
        """Hand the settings to the scheduler; note a load it starts, for requests to wait on."""
        assert self.scheduler is not None
        if self.scheduler.configure(self.settings):
            self.load.loading = True

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

    def workspace_now(self) -> Workspace:
        """The workspace's folders and root as pygls holds them now."""
        folders = tuple(folder.uri for folder in self.workspace.folders.values())
        return Workspace(folders, self.workspace.root_uri, self.workspace.root_path)

    def tell(self, kind: types.MessageType, message: str) -> None:
        log.warning("%s", message) if kind <= types.MessageType.Warning else log.info("%s", message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

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

    def _load_settled(self, event: LoadEvent) -> None:
        """A load ended (the model's positions may bound `maxNewTokens` now) or failed."""
        if event.kind == "failed":
            self.tell(types.MessageType.Error, event.message)
        else:
            self.check_new_tokens()


def terminate(code: int) -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a pipe the client closed, say
            stream.flush()
    os._exit(code)
