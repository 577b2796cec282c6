"""Switching among many open files keeps each one's KV cache under the default settings."""

from __future__ import annotations

from lsprotocol import types
from support.lsp_session import inline_params, open_document, session, stats

OPEN = 12  # more than the old default of 8 cached documents
TEXT = "import math\n\n\ndef area(r):\n    total = math.pi * r * r\n    return total\n"


async def test_a_switch_back_among_a_dozen_documents_prefills_nothing_new():
    # No extra context: snippets of the files opened since would change the prompt's start.
    options = {
        "model": "tiny",
        "maxNewTokens": 2,
        "reuseCompletions": False,
        "extraContextTokens": 0,
    }
    cursor = types.Position(line=5, character=len("    total = "))
    async with session(options) as client:
        uris = [f"file:///work/module_{i}.py" for i in range(OPEN)]
        for index, uri in enumerate(uris):
            # Each file differs from its first line on, so no cache serves another file.
            open_document(client, uri, f"# module {index}\n{TEXT}")
            await client.text_document_inline_completion_async(inline_params(uri, cursor))
        before = await stats(client)
        assert before["cachedDocuments"] == OPEN
        await client.text_document_inline_completion_async(inline_params(uris[0], cursor))
        after = await stats(client)
        job = after["recent"][-1]
        assert job["status"] == "completed"
        assert job["prefilled"] < job["promptTokens"] // 4, job
