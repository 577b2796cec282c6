"""The scheduler's jobs, their outcomes, and what it counts of them (its `codellama/stats`).

The words (continues, shown, kept, continuation) are those of scheduler.py's glossary.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Literal

from codellama_lsp.completion.request import Infill, InfillRequest

RECENT_REQUESTS = 64

Status = Literal["completed", "superseded", "cancelled", "failed", "not-ready"]
Stopped = Literal["superseded", "cancelled"]


@dataclass(frozen=True)
class Outcome:
    status: Status
    infill: Infill | None = None
    message: str = ""


@dataclass
class Job:
    key: str
    request: InfillRequest
    due: float
    future: Future[Outcome] = field(default_factory=Future)
    cancel: threading.Event = field(default_factory=threading.Event)
    superseded: bool = False
    number: int = 0
    submitted: float = 0.0
    cancelled_at: float | None = None
    """When the cancel flag was set: the worker reports how long it took to stop."""
    continues: bool = False
    """Once answered, generate on to keep the whole middle."""
    shown: Infill | None = None
    """The answer, given while generation continues (the job is then "continuing")."""
    kept: Future[Infill | None] = field(default_factory=Future)
    """The whole middle once a continuing job ends (None: it was stopped, or never continued)."""
    answer_entry: dict[str, Any] | None = None
    """The answer's entry in `Stats.recent`: a continuation fills in its prefill when it ends."""

    def stop(self, superseded: bool) -> None:
        self.superseded = superseded
        if self.cancelled_at is None:
            self.cancelled_at = time.perf_counter()
        self.cancel.set()

    def resolve(self, outcome: Outcome) -> None:
        settle(self.future, outcome)
        if outcome.status != "completed":
            settle(self.kept, None)


@dataclass
class Stats:
    """The scheduler's counters; its methods are called with the scheduler's lock held."""

    requests: int = 0
    superseded: int = 0
    cancelled: int = 0
    completed: int = 0
    failed: int = 0
    not_ready: int = 0
    prompt_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    wasted_tokens: int = 0
    """Tokens generated for requests that were then superseded or cancelled."""
    cache_hits: int = 0
    worker_restarts: int = 0
    """Times the worker thread was found dead and started again (a bug: see the log)."""
    continued_tokens: int = 0
    """Tokens generated after the answer went out, to keep the whole middle."""
    dropped_tokens: int = 0
    """Continued tokens thrown away: the continuation was stopped by another job."""
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS))
    """One entry per finished job, newest last: what the benchmarks and status lines read."""

    def count_answer(self, job: Job, infill: Infill) -> None:
        """A completed job; a shown answer's prefill is counted when its continuation ends."""
        self.completed += 1
        self.prompt_tokens += infill.prompt_tokens
        self.generated_tokens += infill.generated
        if job.shown is None:
            self.prefilled_tokens += infill.prefilled
            self.cache_hits += infill.prefilled < infill.prompt_tokens
        job.answer_entry = {
            "job": job.number,
            "status": "completed",
            "waitMs": round((job.due - job.submitted) * 1000, 1),
            "promptTokens": infill.prompt_tokens,
            "prefilled": infill.prefilled,
            "generated": infill.generated,
            "firstTokenMs": round(infill.first_token_s * 1000, 2),
            "engineMs": round(infill.total_s * 1000, 2),
        }
        self.recent.append(job.answer_entry)

    def count_continuation(
        self, job: Job, generated: int, prefilled: int, kept: Infill | None
    ) -> None:
        """A continuation's end, kept or dropped, with the prefill the engine reports then."""
        assert job.shown is not None
        continued = generated - job.shown.generated
        self.prefilled_tokens += prefilled
        self.cache_hits += 0 < prefilled < job.shown.prompt_tokens
        if job.answer_entry is not None:
            job.answer_entry["prefilled"] = prefilled
        self.continued_tokens += continued
        self.dropped_tokens += continued if kept is None else 0
        self.recent.append(
            {
                "job": job.number,
                "status": "continued" if kept is not None else "dropped",
                "continued": continued,
                "ended": kept is not None and kept.ended,
            }
        )

    def count_stopped(self, job: Job, status: Stopped, generated: int) -> None:
        """A job stopped before its answer, and how long it took to stop."""
        stopped_ms = (time.perf_counter() - (job.cancelled_at or time.perf_counter())) * 1000
        setattr(self, status, getattr(self, status) + 1)
        self.wasted_tokens += generated
        self.recent.append(
            {
                "job": job.number,
                "status": status,
                "generated": generated,
                "stopMs": round(stopped_ms, 2),
            }
        )

    def report(self, cached: tuple[int, int], model: str | None) -> dict[str, Any]:
        """The counters as `codellama/stats` names them, with the engine's caches and model."""
        return {
            "requests": self.requests,
            "superseded": self.superseded,
            "cancelled": self.cancelled,
            "completed": self.completed,
            "failed": self.failed,
            "notReady": self.not_ready,
            "promptTokens": self.prompt_tokens,
            "prefilledTokens": self.prefilled_tokens,
            "generatedTokens": self.generated_tokens,
            "wastedTokens": self.wasted_tokens,
            "cacheHits": self.cache_hits,
            "workerRestarts": self.worker_restarts,
            "continuedTokens": self.continued_tokens,
            "droppedTokens": self.dropped_tokens,
            "cachedDocuments": cached[0],
            "cacheBytes": cached[1],
            "recent": [dict(entry) for entry in self.recent],  # a continuation edits one
            "model": model,
        }


def settle(future: Future[Any], result: object = None, error: BaseException | None = None) -> None:
    """Answer `future` unless it is answered or cancelled already (a cancel can come any time)."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
