"""Prompt lookup: guess the next tokens from the text already in the prompt.

Completions often copy what the file already holds (a name, an argument list, a line like the
one above). When the last few tokens occurred before, the tokens that followed them then are a
cheap draft: one forward pass over the draft checks every guess at once, and greedy decoding
keeps exactly the guesses it would have made itself, so the output does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NGRAMS = (3, 2)
"""Match lengths tried, longest first; a single token matches too often to be worth a draft."""
MAX_DRAFT = 8


def draft(sequence: Sequence[int], limit: int = MAX_DRAFT) -> list[int]:
    """The tokens after the latest earlier occurrence of the sequence's last tokens, if any."""
    if limit <= 0:
        return []
    for n in NGRAMS:
        if len(sequence) <= n:
            continue
        tail = list(sequence[-n:])
        last = tail[-1]
        for end in range(len(sequence) - 2, n - 2, -1):
            if sequence[end] == last and list(sequence[end - n + 1 : end + 1]) == tail:
                return list(sequence[end + 1 : end + 1 + limit])
    return []


RETRY_STEPS = 16
"""Plain steps after which a draft is tried again, however the last ones went."""
SMOOTHING = 0.25


@dataclass
class Payoff:
    """Whether drafts pay for themselves on this machine and model, measured as they are used.

    A draft pass costs more than a one-token pass: hardly more for a large model on a GPU or a
    CPU (reading the weights dominates), up to half again for a small model on a CPU (per-op
    overhead dominates). Drafts are used while the tokens they yield per second beat plain
    decoding's, and tried again now and then when they did not.
    """

    step_s: float = 0.0
    draft_s: float = 0.0
    kept: float = 0.0
    """Draft tokens a draft pass confirms, on average (the pass also yields one of its own)."""
    since: int = 0

    def wanted(self) -> bool:
        if not self.step_s or not self.draft_s or self.since >= RETRY_STEPS:
            return True
        return (1 + self.kept) * self.step_s >= self.draft_s

    def plain(self, seconds: float) -> None:
        self.step_s = _smooth(self.step_s, seconds)
        self.since += 1

    def drafted(self, seconds: float, kept: int) -> None:
        self.kept = self.kept + SMOOTHING * (kept - self.kept) if self.draft_s else kept
        self.draft_s = _smooth(self.draft_s, seconds)
        self.since = 0


def _smooth(average: float, sample: float) -> float:
    """An exponential moving average; 0 means nothing measured yet (times are never 0)."""
    return sample if not average else average + SMOOTHING * (sample - average)
