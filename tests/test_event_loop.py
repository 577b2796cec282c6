"""Nothing slow runs on the event loop, and a huge line costs no more than the window can use.

The server answers other messages while it chooses extra context from a large neighbour, and
a completion asked on a minified line of megabytes is cut to the window's reach before it is
tokenized, so cancelling it frees the worker for the next document at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from support.lsp_session import inline_params, open_document, session, stats

PROMPT_ANSWER_S = 1.0
"""A prompt answer while choosing: the choice itself takes seconds on a large neighbour."""
ANSWER_S = 4.0
"""The next document's answer after a cancel: tokenizing the huge line whole takes far longer."""
SMALL = "import math\n\n\ndef area(radius):\n    total = math.pi * radius * radius\n    return "


def neighbour(size: int) -> str:
    """About `size` characters of distinct code lines, each with its own names to read."""
    lines, total, index = [], 0, 0
    while total < size:
        line = f"def handler_{index}(request_{index}, value_{index}):  # step {index}\n"
        lines.append(line)
        total += len(line)
        index += 1
    return "".join(lines)


def huge_line(size: int) -> str:
    parts = [f"var_{i} = call_{i}(arg_{i}); " for i in range(size // 28 + 1)]
    return "".join(parts)[:size]


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def test_stats_answer_promptly_while_extra_context_is_chosen():
    options = {"model": "tiny", "maxNewTokens": 2, "debounceMs": 0}
    async with session(options) as client:
        open_document(client, "file:///work/big_neighbour.py", neighbour(16 * 2**20))
        await stats(client)  # the open has been read
        uri = "file:///work/main.py"
        open_document(client, uri, SMALL)
        cursor = types.Position(line=5, character=len("    return "))
        asked = asyncio.ensure_future(
            client.text_document_inline_completion_async(inline_params(uri, cursor))
        )
        await asyncio.sleep(0.2)  # the choice is under way
        sent = time.monotonic()
        await stats(client)
        waited = time.monotonic() - sent
        await asyncio.wait_for(asked, 300)
        assert waited < PROMPT_ANSWER_S, f"codellama/stats took {waited:.1f} s while choosing"


@pytest.mark.parametrize("extra_tokens", [0, 512])
async def test_a_cancelled_completion_on_a_huge_line_frees_the_worker(extra_tokens):
    options = {
        "model": "tiny",
        "maxNewTokens": 2,
        "debounceMs": 0,
        "extraContextTokens": extra_tokens,
    }
    async with session(options) as client:
        text = huge_line(32 * 2**20)
        huge = "file:///work/minified.js"
        open_document(client, huge, text, "javascript")
        other = "file:///work/main.py"
        open_document(client, other, SMALL)
        await stats(client)  # both opens have been read
        middle = types.Position(line=0, character=len(text) // 2)
        protocol = client.protocol
        future = protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(huge, middle), msg_id="huge"
        )
        await asyncio.sleep(0.3)  # the worker is on it
        protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="huge"))
        with contextlib.suppress(JsonRpcRequestCancelled):  # unless answered already
            await asyncio.wait_for(asyncio.wrap_future(future), 300)
        sent = time.monotonic()
        cursor = types.Position(line=5, character=len("    return "))
        answer = await asyncio.wait_for(
            client.text_document_inline_completion_async(inline_params(other, cursor)), 300
        )
        waited = time.monotonic() - sent
        assert answer is not None
        assert waited < ANSWER_S, f"the next document waited {waited:.1f} s after the cancel"


async def test_opening_and_closing_large_documents_returns_their_memory():
    options = {"model": "tiny", "maxNewTokens": 2, "debounceMs": 0, "reuseCompletions": False}
    async with session(options) as client:
        pid = client._server.pid

        async def cycle(number: int) -> None:
            uri = f"file:///work/closed/doc{number}.py"
            text = "".join(f"value_{number}_{i} = compute({i}); " for i in range(2000))[:50_000]
            open_document(client, uri, text)
            where = types.Position(line=0, character=len(text))
            await client.text_document_inline_completion_async(inline_params(uri, where))
            client.text_document_did_close(
                types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=uri))
            )

        for number in range(50):  # the memos and the allocator settle
            await cycle(number)
        await stats(client)
        before = rss_mb(pid)
        for number in range(50, 300):
            await cycle(number)
        await stats(client)
        grown = rss_mb(pid) - before
        assert grown < 40, f"250 closed documents left {grown:.0f} MB behind"
