"""`textDocument/completion`: one item that completes the word before the cursor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from codellama_lsp.completion.cursor import word_cursor
from codellama_lsp.lsp.replies import completion_items

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


async def completion(ls: CodeLlamaServer, params: types.CompletionParams) -> types.CompletionList:
    """Options: from the settings, at `initialize` or registered at run time."""
    document = ls.documents.completable(params.text_document.uri, ls.settings)
    context = params.context
    kind = context.trigger_kind if context else types.CompletionTriggerKind.Invoked
    if document is None or (
        kind == types.CompletionTriggerKind.TriggerCharacter
        and context is not None
        and context.trigger_character not in ls.settings.trigger_characters
    ):
        return types.CompletionList(is_incomplete=True, items=[])
    cursor = word_cursor(document, params.position, ls.encoding)
    debounce = kind != types.CompletionTriggerKind.Invoked
    text = await ls.completions.complete(cursor, debounce=debounce)
    return completion_items(
        text or "", cursor.replaced, cursor.start, cursor.end, document.language_id
    )
