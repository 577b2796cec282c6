"""`textDocument/didClose`: the document's suggestions and jobs go; its text stays a while."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


def did_close(ls: CodeLlamaServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    for gone in ls.documents.close(uri):  # recently closed no longer
        ls.chooser.forget(gone)
    ls.suggestions.forget(uri)
    if ls.scheduler is not None:
        ls.scheduler.forget(uri)
