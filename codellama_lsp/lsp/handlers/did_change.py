"""`textDocument/didChange`: incremental changes, in the negotiated encoding."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


def did_change(ls: CodeLlamaServer, params: types.DidChangeTextDocumentParams) -> None:
    document = params.text_document
    ls.documents.change(document.uri, document.version, params.content_changes, ls.encoding)
