"""The LSP methods the server answers, one module each, registered on a new server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lsprotocol import types

from codellama_lsp.lsp.handlers import (
    completion,
    configuration,
    did_change,
    did_close,
    did_open,
    exit,
    initialize,
    initialized,
    inline_completion,
    prompt,
    shutdown,
    stats,
)
from codellama_lsp.lsp.protocol import PROMPT, STATS
from codellama_lsp.lsp.server import CodeLlamaServer
from codellama_lsp.settings import Settings

HANDLERS: tuple[tuple[str, Callable[..., Any], Any], ...] = (
    (types.INITIALIZE, initialize.initialize, None),
    (types.INITIALIZED, initialized.initialized, None),
    (types.WORKSPACE_DID_CHANGE_CONFIGURATION, configuration.did_change_configuration, None),
    (types.TEXT_DOCUMENT_DID_OPEN, did_open.did_open, None),
    (types.TEXT_DOCUMENT_DID_CHANGE, did_change.did_change, None),
    (types.TEXT_DOCUMENT_DID_CLOSE, did_close.did_close, None),
    (
        types.TEXT_DOCUMENT_INLINE_COMPLETION,
        inline_completion.inline_completion,
        types.InlineCompletionOptions(),
    ),
    (types.TEXT_DOCUMENT_COMPLETION, completion.completion, None),
    (STATS, stats.stats, None),
    (PROMPT, prompt.prompt, None),
    (types.SHUTDOWN, shutdown.shutdown, None),
    (types.EXIT, exit.exit_, None),
)
"""(method, handler, static options) for every method the server answers."""


def create_server(base: Settings) -> CodeLlamaServer:
    server = CodeLlamaServer(base)
    for method, handler, options in HANDLERS:
        server.feature(method, options)(handler)
    return server
