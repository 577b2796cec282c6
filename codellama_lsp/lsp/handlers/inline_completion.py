"""`textDocument/inlineCompletion`: ghost text at the cursor, after a selected popup item."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from codellama_lsp.completion.cursor import inline_cursor
from codellama_lsp.lsp.replies import inline_items

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


async def inline_completion(
    ls: CodeLlamaServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList:
    document = ls.documents.completable(params.text_document.uri, ls.settings)
    if document is None:
        return types.InlineCompletionList(items=[])
    context = params.context
    cursor = inline_cursor(document, params.position, context.selected_completion_info, ls.encoding)
    automatic = context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
    text = await ls.completions.complete(cursor, debounce=automatic)
    return inline_items(text or "", cursor.start, cursor.end, cursor.selected)
