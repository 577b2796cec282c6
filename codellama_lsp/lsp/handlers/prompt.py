"""`codellama/prompt`: the prompt a completion at the position would send, and its lines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from codellama_lsp.completion.cursor import cursor_at

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


async def prompt(ls: CodeLlamaServer, params: types.TextDocumentPositionParams) -> dict[str, Any]:
    """Of any open document, in step with the editor or not."""
    uri = params.text_document.uri
    document = ls.documents.get(uri)
    if document is None:
        raise JsonRpcInvalidParams(f"document not open: {uri}")
    cursor = cursor_at(document, params.position, ls.encoding)
    request, first = await ls.completions.request_at(cursor, ls.settings)
    view = await ls.completions.prompt(request)
    return {
        "text": view.text,
        "ids": view.ids,
        "order": request.order,
        "firstLine": first + view.first_line,
        "endLine": first + view.end_line,
        "mustStartWith": view.must_start_with,
    }
