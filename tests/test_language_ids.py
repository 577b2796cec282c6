"""Editors' language names map to LSP's before the `languages` setting is consulted."""

from __future__ import annotations

import pytest
from lsprotocol import types
from support.lsp_session import open_document, session, stats

from codellama_lsp.documents.language_ids import lsp_language_id


@pytest.mark.parametrize(
    ("sent", "lsp"),
    [
        ("js", "javascript"),
        ("c++", "cpp"),
        ("sh", "shellscript"),
        ("python-ts", "python"),
        ("c++-ts", "cpp"),
        ("js-ts", "javascript"),
        ("tuareg", "ocaml"),
        ("javascript", "javascript"),
        ("cpp", "cpp"),
        ("python", "python"),
        ("-ts", "-ts"),
        ("", ""),
        ("Some-Unknown", "Some-Unknown"),
    ],
)
def test_editor_names_map_to_lsp_ids(sent, lsp):
    assert lsp_language_id(sent) == lsp


async def test_languages_setting_applies_to_emacs_names(tiny_model_dir):
    options = {
        "model": str(tiny_model_dir),
        "maxNewTokens": 2,
        "languages": {"cpp": False, "shellscript": False},
    }
    async with session(options) as client:
        for uri, language_id in [
            ("file:///work/a.cpp", "c++"),
            ("file:///work/a.sh", "sh"),
            ("file:///work/b.cpp", "c++-ts"),
            ("file:///work/a.js", "js"),
        ]:
            open_document(client, uri, "int x = ", language_id)
        before = (await stats(client))["requests"]
        for uri in ("file:///work/a.cpp", "file:///work/a.sh", "file:///work/b.cpp"):
            answer = await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(0, 8),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            )
            assert answer is not None and not answer.items, uri
        assert (await stats(client))["requests"] == before  # the model never ran for them
        answer = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri="file:///work/a.js"),
                position=types.Position(0, 8),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Invoked
                ),
            )
        )
        assert answer is not None and len(answer.items) == 1
