"""Prompt-lookup drafts: where they come from, and that they never change greedy output."""

from __future__ import annotations

import pytest

from codellama_lsp.engine.generation import CachedSequence, generate
from codellama_lsp.engine.model import load_model
from codellama_lsp.engine.prompt_lookup import MAX_DRAFT, RETRY_STEPS, Payoff, draft
from codellama_lsp.settings import Settings


def test_the_draft_continues_the_latest_earlier_occurrence():
    assert draft([1, 2, 3, 9, 1, 2, 3, 7, 5, 1, 2, 3]) == [7, 5, 1, 2, 3]
    assert draft([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 5, 6], limit=3) == [7, 8, 9]


def test_no_draft_without_a_match_of_two_tokens():
    assert draft([1, 2, 3, 4, 5, 1]) == []
    assert draft([4, 4]) == []
    assert draft([1, 2, 1, 2], limit=0) == []
    assert len(draft(list(range(50)) * 2)) == MAX_DRAFT


@pytest.fixture(scope="module")
def shipped():
    return load_model(Settings(model="tiny"))


def run(loaded, text: str, lookup: bool) -> tuple[list[int], int]:
    """Greedy tokens after `text`, and how many forward passes produced them."""
    passes = []
    hook = loaded.model.register_forward_hook(lambda *_: passes.append(1))
    try:
        out = generate(
            loaded.model,
            loaded.tokenizer.encode(text),
            CachedSequence(),
            max_new_tokens=40,
            stop_ids=frozenset(),
            temperature=0.0,
            should_stop=lambda ids: False,
            cancelled=lambda: False,
            prompt_lookup=lookup,
        )
    finally:
        hook.remove()
    return out.ids, len(passes)


COPIES = [
    "def area(r):\n    return math.pi * r * r\n\n\ndef area(r):\n    return",
    "names = ['alpha', 'beta', 'gamma', 'delta']\nnames = ['alpha', 'beta',",
    "self.assertEqual(a.x, b.x)\nself.assertEqual(a.y, b.y)\nself.assertEqual(a.",
    "import os\nimport sys\n\nx = os.path.join(a, b)\ny = os.path.join(",
]


@pytest.mark.parametrize("text", COPIES)
def test_drafts_give_exactly_the_greedy_tokens(shipped, text):
    plain, plain_passes = run(shipped, text, lookup=False)
    drafted, drafted_passes = run(shipped, text, lookup=True)
    assert drafted == plain
    assert plain_passes == 40  # one prefill, then one pass per token after the first
    assert drafted_passes <= plain_passes


def test_drafts_save_forward_passes_where_the_model_copies(shipped):
    saved = sum(run(shipped, text, True)[1] < run(shipped, text, False)[1] for text in COPIES)
    assert saved >= len(COPIES) // 2


def test_drafts_stop_where_they_do_not_pay_and_are_tried_again_later():
    payoff = Payoff()
    assert payoff.wanted()  # nothing measured yet
    payoff.plain(0.010)
    payoff.drafted(0.015, kept=0)  # a small model on a CPU: a dearer pass, nothing confirmed
    payoff.drafted(0.015, kept=0)
    assert not payoff.wanted()
    for _ in range(RETRY_STEPS):
        payoff.plain(0.010)
    assert payoff.wanted()


def test_drafts_keep_going_where_a_draft_pass_costs_about_a_step():
    payoff = Payoff()
    payoff.plain(0.030)
    for _ in range(5):
        payoff.drafted(0.031, kept=1)  # a large model: the weights are read once either way
    assert payoff.wanted()
