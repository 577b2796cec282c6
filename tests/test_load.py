"""Load: a burst of automatic inline completions across many documents, with edits between.

1,000 requests in about a second over 20 documents (CI: 400 in about half a second; set
`CODELLAMA_LSP_LONG=1` for the full count), none awaited before the next is sent. Every request
must be answered (a result, or RequestCancelled: never silence), the server's memory must stay
bounded (its RSS is sampled from /proc while the burst runs), and only the newest request per
document may run the model: the rest are superseded.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from support.lsp_session import change, inline_params, open_document, session, stats

LONG = os.environ.get("CODELLAMA_LSP_LONG") == "1"
REQUESTS = 1000 if LONG else 400
BURST_S = 1.0 if LONG else 0.5
DOCUMENTS = 20
SLACK = 10
"""Documents whose debounce can expire mid-burst when the machine stalls: they complete twice."""
RSS_GROWTH_BOUND = 300 * 2**20
ANSWER_TIMEOUT_S = 120

TEXT = "import math\n\n\ndef area(r):\n    return math.pi * r\n\n\ndef total(values):\n    s = "


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def test_a_burst_of_requests_is_answered_superseded_and_bounded(tiny_model_dir):
    options = {"model": str(tiny_model_dir), "maxNewTokens": 8, "debounceMs": 150}
    async with session(options) as client:
        server = client._server
        assert server is not None
        uris = [f"file:///work/load{i}.py" for i in range(DOCUMENTS)]
        for uri in uris:
            open_document(client, uri, TEXT)
        await stats(client)  # the opens are in
        baseline = rss(server.pid)
        samples = [baseline]
        sampling = True

        async def sample() -> None:
            while sampling:
                samples.append(rss(server.pid))
                await asyncio.sleep(0.02)

        sampler = asyncio.ensure_future(sample())
        line, column = 8, len("    s = ")
        versions = dict.fromkeys(uris, 1)
        columns = dict.fromkeys(uris, column)
        futures = []
        started = time.perf_counter()
        for n in range(REQUESTS):
            uri = uris[n % DOCUMENTS]
            if n >= DOCUMENTS and n % 3 == 0:  # an edit at the cursor between requests
                versions[uri] += 1
                here = types.Position(line, columns[uri])
                change(client, uri, versions[uri], here, here, "v")
                columns[uri] += 1
            futures.append(
                client.text_document_inline_completion_async(
                    inline_params(uri, types.Position(line, columns[uri]), automatic=True)
                )
            )
            # Keep to the burst's pace: about REQUESTS / BURST_S requests per second.
            ahead = started + BURST_S * (n + 1) / REQUESTS - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
        sent_s = time.perf_counter() - started

        answers = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), ANSWER_TIMEOUT_S
        )
        sampling = False
        await sampler
        counted = await stats(client)
        samples.append(rss(server.pid))

    assert sent_s < BURST_S * 3, f"the burst took {sent_s:.2f} s"
    results = [a for a in answers if isinstance(a, types.InlineCompletionList)]
    cancelled = [a for a in answers if isinstance(a, JsonRpcRequestCancelled)]
    others = [a for a in answers if a not in results and a not in cancelled]
    assert not others, others[:3]
    assert len(results) + len(cancelled) == REQUESTS

    # Only the newest request per document ran the model; the rest were superseded.
    assert counted["requests"] + counted["reused"] == REQUESTS
    assert counted["failed"] == 0 and counted["notReady"] == 0
    assert counted["requests"] == (
        counted["completed"] + counted["superseded"] + counted["cancelled"]
    )
    assert DOCUMENTS <= counted["completed"] <= DOCUMENTS + SLACK, counted["completed"]
    assert counted["superseded"] >= REQUESTS - DOCUMENTS - SLACK - counted["reused"]
    with_items = [r for r in results if r.items]
    assert len(with_items) >= DOCUMENTS - counted["reused"]

    peak = max(samples)
    assert peak - baseline < RSS_GROWTH_BOUND, (
        f"RSS grew from {baseline >> 20} MiB to {peak >> 20} MiB"
    )
