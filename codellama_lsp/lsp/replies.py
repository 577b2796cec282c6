"""LSP replies built from a completion: pure functions from text and positions."""

from __future__ import annotations

from lsprotocol import types

from codellama_lsp.context.window import as_lf

LABEL_LENGTH = 80


def inline_items(
    text: str, start: types.Position, end: types.Position, selected: str = ""
) -> types.InlineCompletionList:
    """Ghost text replacing [start, end): `selected` (a popup item's text) then the completion."""
    if not text:
        return types.InlineCompletionList(items=[])
    item = types.InlineCompletionItem(insert_text=selected + text, range=types.Range(start, end))
    return types.InlineCompletionList(items=[item])


def completion_items(
    text: str, word: str, start: types.Position, end: types.Position, language_id: str
) -> types.CompletionList:
    """One item whose edit replaces the word before the cursor with itself plus the completion.

    Covering the word (not an empty range) lets every client filter and sort the item like its
    own; `isIncomplete` makes the client ask again as the user types on. The edit keeps the
    document's line endings; the documentation, markdown the client renders, uses "\n" only
    (a "\r" would show as `^M` in Neovim).
    """
    if not text.strip():
        return types.CompletionList(is_incomplete=True, items=[])
    new_text = word + text
    first_line = next((line for line in new_text.splitlines() if line.strip()), new_text)
    label = first_line.strip()
    if len(label) > LABEL_LENGTH:
        label = label[: LABEL_LENGTH - 1] + "…"
    shown = as_lf(new_text)
    item = types.CompletionItem(
        label=label,
        kind=types.CompletionItemKind.Text,
        detail="Code Llama",
        documentation=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=f"```{language_id}\n{shown}\n```"
        ),
        filter_text=new_text.split("\n", 1)[0].rstrip("\r") or label,
        sort_text="0",
        preselect=True,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(start, end), new_text=new_text),
    )
    return types.CompletionList(is_incomplete=True, items=[item])
