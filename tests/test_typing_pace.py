"""The automatic-request wait follows the typist's pace (pure logic, and through the server)."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from support.lsp_session import change, inline_params, open_document, session, stats

from codellama_lsp.completion.typing_pace import MAX_WAIT_S, PAUSE_S, TypingPace


def waits(gaps_s: list[float], debounce_s: float = 0.05) -> list[float]:
    pace, now, out = TypingPace(), 100.0, []
    out.append(pace.wait(now, debounce_s))
    for gap in gaps_s:
        now += gap
        out.append(pace.wait(now, debounce_s))
    return out


def test_the_first_request_waits_the_debounce():
    assert waits([]) == [0.05]


def test_steady_typing_waits_longer_than_the_gap_between_keys():
    assert waits([0.08] * 10)[-1] == pytest.approx(0.1)
    assert waits([0.02] * 10)[-1] == 0.05  # faster than the debounce: the debounce rules


def test_pauses_do_not_count_and_the_wait_is_capped():
    assert waits([0.08, 0.08, PAUSE_S + 1, 5.0])[-1] == pytest.approx(0.1)
    assert waits([0.5] * 8)[-1] == MAX_WAIT_S
    assert waits([0.5] * 8, debounce_s=0.4)[-1] == 0.4  # a longer debounceMs still wins


def test_the_pace_is_the_typical_gap_not_the_last_one():
    assert waits([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.01])[-1] == pytest.approx(0.125)


async def test_the_server_waits_to_the_typists_pace(tiny_model_dir):
    uri = "file:///work/paced.py"
    text = "def area(r):\n    total = \n"
    async with session({"model": str(tiny_model_dir), "maxNewTokens": 2}) as client:
        open_document(client, uri, text)
        pending = []
        for i, letter in enumerate("math.pi"):
            column = len("    total = ") + i
            change(client, uri, 2 + i, types.Position(1, column), types.Position(1, column), letter)
            position = types.Position(1, column + 1)
            pending.append(
                asyncio.ensure_future(
                    client.text_document_inline_completion_async(
                        inline_params(uri, position, automatic=True)
                    )
                )
            )
            await asyncio.sleep(0.12)
        await asyncio.gather(*pending, return_exceptions=True)
        recent = [job for job in (await stats(client))["recent"] if job.get("waitMs") is not None]
        # Every gap was at least 120 ms: the last request waited 1.25 x that, not debounceMs (50).
        assert recent and 150 <= recent[-1]["waitMs"] <= MAX_WAIT_S * 1000
