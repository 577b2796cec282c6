"""Show early, keep generating: the real server over LSP with the shipped tiny model.

The answer goes out at the early stop; generation goes on and the whole middle is kept, so
that accepting the shown part and asking again shows the next piece without the model. Any new
request stops the continuation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from support.lsp_session import change, inline_params, open_document, session, stats

URI = "file:///work/parity.py"
TEXT = (
    "def is_even(n):\n    return n % 2 == 0\n\n\ndef main():\n    for i in range(10):\n        \n"
)
CURSOR = types.Position(line=6, character=8)
OPTIONS = {"model": "tiny", "maxNewTokens": 64, "timeBudgetMs": 60000}


async def ended_continuation(client: LanguageClient) -> dict[str, Any]:
    """The stats once the running continuation has ended (kept or dropped)."""
    for _ in range(600):
        counted = await stats(client)
        if any(job["status"] in ("continued", "dropped") for job in counted["recent"]):
            return counted
        await asyncio.sleep(0.1)
    raise AssertionError("the continuation did not end")


def after(position: types.Position, text: str) -> types.Position:
    """The cursor after inserting `text` (ASCII) at `position`."""
    lines = text.split("\n")
    column = position.character if len(lines) == 1 else 0
    return types.Position(position.line + len(lines) - 1, column + len(lines[-1]))


async def test_accept_then_ask_again_shows_the_continuation_without_the_model():
    async with session(OPTIONS) as client:
        open_document(client, URI, TEXT)
        first = await client.text_document_inline_completion_async(inline_params(URI, CURSOR))
        shown = first.items[0].insert_text
        assert isinstance(shown, str) and shown
        counted = await ended_continuation(client)
        assert counted["continuedTokens"] > 0 and counted["droppedTokens"] == 0
        assert (counted["requests"], counted["reused"], counted["usedTokens"]) == (1, 0, 0)
        answered = next(job for job in counted["recent"] if job["status"] == "completed")
        assert answered["prefilled"] == answered["promptTokens"]  # a fresh document
        assert counted["prefilledTokens"] == answered["promptTokens"]
        generated = counted["generatedTokens"]

        change(client, URI, 2, CURSOR, CURSOR, shown)  # accepted (Tab)
        cursor = after(CURSOR, shown)
        again = await client.text_document_inline_completion_async(inline_params(URI, cursor))
        continuation = again.items[0].insert_text
        assert isinstance(continuation, str) and continuation.strip()
        counted = await stats(client)
        assert (counted["requests"], counted["generatedTokens"]) == (1, generated)
        assert counted["reused"] == 1
        assert counted["usedTokens"] == counted["continuedTokens"]

        # Typing what disagrees with the continuation drops it: the model is asked.
        typed = "#" if not continuation.startswith("#") else "@"
        change(client, URI, 3, cursor, cursor, typed)
        await client.text_document_inline_completion_async(inline_params(URI, after(cursor, typed)))
        assert (await stats(client))["requests"] == 2


async def test_a_request_in_another_document_stops_the_continuation():
    other = "file:///work/other.py"
    async with session({**OPTIONS, "maxNewTokens": 400}) as client:
        open_document(client, URI, TEXT)
        open_document(client, other, TEXT)
        first = await client.text_document_inline_completion_async(inline_params(URI, CURSOR))
        assert first.items
        await client.text_document_inline_completion_async(inline_params(other, CURSOR))
        counted = await ended_continuation(client)
        dropped = [job for job in counted["recent"] if job["status"] == "dropped"]
        assert [job["job"] for job in dropped] == [1]
        # Stopped, its prompt was prefilled all the same: counted once, in its answer's entry.
        first = next(job for job in counted["recent"] if job["job"] == 1)
        assert first["status"] == "completed"
        assert first["prefilled"] == first["promptTokens"] > 0
        for _ in range(600):  # the other document's job, continuing, may not have ended yet
            counted = await stats(client)
            if len([job for job in counted["recent"] if job["status"] != "completed"]) == 2:
                break
            await asyncio.sleep(0.1)
        answers = [job for job in counted["recent"] if job["status"] == "completed"]
        assert counted["prefilledTokens"] == sum(job["prefilled"] for job in answers)
        assert counted["prefilledTokens"] >= first["promptTokens"]
        assert counted["droppedTokens"] == dropped[0]["continued"] < 400
        assert counted["completed"] == 2
