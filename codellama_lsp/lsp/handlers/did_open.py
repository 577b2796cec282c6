"""`textDocument/didOpen`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from codellama_lsp.documents.language_ids import lsp_language_id

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


def did_open(ls: CodeLlamaServer, params: types.DidOpenTextDocumentParams) -> None:
    item = params.text_document
    ls.documents.open(item.uri, lsp_language_id(item.language_id), item.version, item.text)
