"""The scheduler: one long-lived thread that runs the engine and does all tokenization.

The LSP thread only submits jobs and awaits their futures, so it stays I/O-bound and never
holds the GIL for long. Per document, only the newest job matters: a new one supersedes the
pending one (answered at once) and cancels the running one (it stops before its next forward
pass, or its stream is closed). Once a job's answer is out, its generation goes on (it
"continues") until the model ends the middle or a bound, so that the whole middle can be kept
for asking again; a continuing job has the lowest priority: any new job or task stops it.
Automatic requests wait out a short debounce first, so a burst of keystrokes costs one
generation. Loading happens on a separate thread, so prompts can be built while weights load.
Which engine generates (interface.py) is none of its business: it imports no torch.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Literal

from codellama_lsp.checkpoint.download import describe, percentage
from codellama_lsp.checkpoint.tokenizer import FimTokenizer, TokenizerError, load_tokenizer
from codellama_lsp.completion.infill import (
    Infill,
    InfillRequest,
    LineTokenCounter,
    complete,
    fit_to_model,
    prompt_for,
)
from codellama_lsp.context.prompt import render_prompt
from codellama_lsp.engine.interface import (
    Cancelled,
    Engine,
    EngineSetupError,
    EngineUnavailable,
    Interruptible,
)
from codellama_lsp.engine.opening import open_engine
from codellama_lsp.settings import Settings

log = logging.getLogger(__name__)

RECENT_REQUESTS = 64
WORKER_DIED = "codellama-lsp: the model worker stopped unexpectedly and was started again"

Status = Literal["completed", "superseded", "cancelled", "failed", "not-ready"]


@dataclass(frozen=True)
class Outcome:
    status: Status
    infill: Infill | None = None
    message: str = ""


@dataclass(frozen=True)
class LoadEvent:
    """Loading news for the editor: `begin`, `report` (download progress), `end` or `failed`,
    with a message."""

    kind: Literal["begin", "report", "end", "failed"]
    message: str
    percentage: int | None = None


@dataclass(frozen=True)
class PromptView:
    text: str
    ids: list[int]
    first_line: int
    end_line: int


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
    answered: dict[str, Any] | None = None
    """The answer's entry in `Stats.recent`: a continuation fills in its prefill when it ends."""

    def stop(self, superseded: bool) -> None:
        self.superseded = superseded
        if self.cancelled_at is None:
            self.cancelled_at = time.perf_counter()
        self.cancel.set()

    def resolve(self, outcome: Outcome) -> None:
        _settle(self.future, outcome)
        if outcome.status != "completed":
            _settle(self.kept, None)


@dataclass
class Stats:
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


class Scheduler:
    def __init__(self, on_load_event: Callable[[LoadEvent], None]) -> None:
        self._on_load_event = on_load_event
        self._cond = threading.Condition()
        self._pending: dict[str, Job] = {}
        self._tasks: deque[Callable[[], None]] = deque()
        self._running: Job | None = None
        self._stopped = False
        self._engine: Engine | None = None
        self._tokenizer: FimTokenizer | None = None
        self._counter: LineTokenCounter | None = None
        self._model_key: tuple[object, ...] | None = None
        self._load_generation = 0
        self._cached = (0, 0)
        """The engine's caches (documents, bytes), as the worker thread last counted them."""
        self._cache_limits = (Settings.cache_documents, Settings.cache_megabytes * 2**20)
        self._problem: str | None = None
        """The last failure shown to the user: the same one again is not shown again."""
        self._numbers = itertools.count(1)
        self._stats = Stats()
        self._thread = self._start_thread()

    # -- called from the LSP thread -------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._engine is not None

    @property
    def max_positions(self) -> int | None:
        """The engine's model's positions; None until it is open."""
        engine = self._engine
        return engine.max_positions if engine is not None else None

    def configure(self, settings: Settings) -> bool:
        """Open the engine the settings name, unless it is the one already open or opening.

        Whether a load started (its end or failure comes as a LoadEvent).
        """
        limits = (settings.cache_documents, settings.cache_megabytes * 2**20)
        with self._cond:
            self._cache_limits = limits
            if settings.model_key() == self._model_key:
                self._post(self._apply_cache_limits)
                return False
            self._model_key = settings.model_key()
            self._load_generation += 1
            generation = self._load_generation
            old, self._engine = self._engine, None
            self._tokenizer = None
            self._problem = None
        if old is not None:
            _interrupt(old)  # a call stuck on its server would hold up the close and the load
            self._post(old.close)
        threading.Thread(
            target=self._load, args=(settings, generation), name="codellama-loader", daemon=True
        ).start()
        return True

    def submit(
        self, key: str, request: InfillRequest, delay_s: float, continues: bool = False
    ) -> Job:
        """`continues`: once answered, generate on to keep the whole middle (`job.kept`)."""
        now = time.monotonic()
        job = Job(
            key,
            request,
            now + delay_s,
            number=next(self._numbers),
            submitted=now,
            continues=continues,
        )
        with self._cond:
            self._revive()
            self._stats.requests += 1
            if not self.ready:
                self._stats.not_ready += 1
                job.resolve(Outcome("not-ready"))
                return job
            older = self._pending.pop(key, None)
            if older is not None:
                self._stats.superseded += 1
                older.resolve(Outcome("superseded"))
            running = self._running
            if running is not None and (running.key == key or running.shown is not None):
                running.stop(superseded=True)
            self._pending[key] = job
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        with self._cond:
            if self._pending.get(job.key) is job:
                del self._pending[job.key]
                self._stats.cancelled += 1
                job.resolve(Outcome("cancelled"))
            job.stop(superseded=False)

    def prompt(self, request: InfillRequest) -> Future[PromptView]:
        """The prompt a completion would send, built on the worker thread like every prompt."""
        future: Future[PromptView] = Future()
        self._post(lambda: self._build_prompt(request, future))
        return future

    def forget(self, key: str) -> None:
        """Forget a closed document: its waiting job, its running one (stopped), and its cache,
        dropped on the worker thread, which owns it, after the running job has kept it."""
        with self._cond:
            pending = self._pending.pop(key, None)
            if pending is not None:
                self._stats.cancelled += 1
                pending.resolve(Outcome("cancelled"))
            if self._running is not None and self._running.key == key:
                self._running.stop(superseded=False)
        self._post(lambda: self._forget(key))

    def stats(self) -> dict[str, Any]:
        with self._cond:
            stats = self._stats
            return {
                "requests": stats.requests,
                "superseded": stats.superseded,
                "cancelled": stats.cancelled,
                "completed": stats.completed,
                "failed": stats.failed,
                "notReady": stats.not_ready,
                "promptTokens": stats.prompt_tokens,
                "prefilledTokens": stats.prefilled_tokens,
                "generatedTokens": stats.generated_tokens,
                "wastedTokens": stats.wasted_tokens,
                "cacheHits": stats.cache_hits,
                "workerRestarts": stats.worker_restarts,
                "continuedTokens": stats.continued_tokens,
                "droppedTokens": stats.dropped_tokens,
                "cachedDocuments": self._cached[0],
                "cacheBytes": self._cached[1],
                "recent": [dict(entry) for entry in stats.recent],  # a continuation edits one
                "model": self._engine.description if self._engine else None,
            }

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            for job in self._pending.values():
                job.future.cancel()
            self._pending.clear()
            if self._running is not None:
                self._running.stop(superseded=False)
            self._cond.notify()
            engine = self._engine
        if engine is not None:
            _interrupt(engine)  # else a call stuck on a server holds the thread past the join
        self._thread.join(timeout=5)

    # -- loading (its own thread) -----------------------------------------------------------

    def _load(self, settings: Settings, generation: int) -> None:
        self._on_load_event(LoadEvent("begin", f"Loading {settings.model}"))
        try:
            tokenizer = load_tokenizer(settings.model)
            with self._cond:
                if generation == self._load_generation:
                    self._tokenizer = tokenizer
                    self._counter = LineTokenCounter(tokenizer)
            engine = open_engine(
                settings, tokenizer, functools.partial(self._report_download, settings)
            )
        except (EngineSetupError, TokenizerError) as error:
            self._on_load_event(LoadEvent("failed", f"codellama-lsp: {error}"))
            return
        except Exception as error:  # a broken checkpoint can fail in many ways: say so, stay up
            message = (
                f"codellama-lsp: cannot load {settings.model}: {type(error).__name__}: {error}"
            )
            self._on_load_event(LoadEvent("failed", message))
            return
        with self._cond:
            if generation != self._load_generation:
                engine.close()
                return
            self._engine = engine
        self._post(self._apply_cache_limits)
        self._post(lambda: self._connect(engine))

    def _report_download(self, settings: Settings, done: int, total: int) -> None:
        message = f"Downloading {settings.model}: {describe(done, total)}"
        self._on_load_event(LoadEvent("report", message, percentage(done, total)))

    def _connect(self, engine: Engine) -> None:
        """On the worker thread, which owns the engine; before any completion runs on it."""
        if engine is not self._engine:
            return  # replaced meanwhile
        try:
            engine.connect()
        except Cancelled:
            return  # interrupted: replaced, or the server stops; nothing to tell
        except EngineUnavailable as error:
            # Ready all the same: each request tries again (at most once a second), and
            # answers empty at once meanwhile.
            message = f"codellama-lsp: {error}"
            with self._cond:
                if engine is not self._engine:
                    return  # replaced while it failed: about a server no longer in use
                self._problem = message
            self._on_load_event(LoadEvent("failed", message))
            return
        self._on_load_event(LoadEvent("end", f"Code Llama ready: {engine.description}"))

    # -- the worker thread ------------------------------------------------------------------

    def _post(self, task: Callable[[], None]) -> None:
        """Run `task` on the worker thread before the next completion."""
        with self._cond:
            self._revive()
            if self._running is not None and self._running.shown is not None:
                self._running.stop(superseded=False)
            self._tasks.append(task)
            self._cond.notify()

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="codellama-worker", daemon=True)
        thread.start()
        return thread

    def _revive(self) -> None:
        """Start the worker thread again if something killed it (called with the lock held).

        `_run` catches every Exception, so only a BaseException can end it; the job it was
        running is answered as failed, and the rest of the state is the worker object's.
        """
        if self._stopped or self._thread.is_alive():
            return
        log.error("the worker thread had stopped: started again")
        self._stats.worker_restarts += 1
        if self._running is not None:
            self._running.resolve(Outcome("failed", message=WORKER_DIED))
            self._running = None
        self._thread = self._start_thread()

    def _next_job(self) -> Job | Callable[[], None] | None:
        with self._cond:
            while not self._stopped:
                if self._tasks:
                    return self._tasks.popleft()
                now = time.monotonic()
                due = [job for job in self._pending.values() if job.due <= now]
                if due:
                    job = min(due, key=lambda j: j.number)
                    del self._pending[job.key]
                    self._running = job
                    return job
                wait = min((job.due for job in self._pending.values()), default=now + 3600) - now
                self._cond.wait(timeout=max(wait, 0.0))
            return None

    def _run(self) -> None:
        """Nothing a task or a job does may end this loop: a failure is logged and answered."""
        while (job := self._next_job()) is not None:
            if not isinstance(job, Job):
                try:
                    job()
                except Exception as error:
                    log.error("a worker task failed: %s", type(error).__name__, exc_info=True)
                continue
            try:
                self._complete(job)
            except Exception as error:
                log.error("a completion failed: %s", type(error).__name__, exc_info=True)
                message = f"codellama-lsp: completion failed: {type(error).__name__}"
                job.resolve(Outcome("failed", message=message))
            finally:
                with self._cond:
                    self._running = None
        if self._engine is not None:
            self._engine.close()  # on this thread: a remote engine's event loop lives here

    def _build_prompt(self, request: InfillRequest, future: Future[PromptView]) -> None:
        tokenizer, counter, engine = self._tokenizer, self._counter, self._engine
        if tokenizer is None or counter is None:
            _settle(future, error=TokenizerError("the tokenizer is not loaded yet"))
            return
        if future.cancelled():  # `$/cancelRequest` came while it waited
            return
        try:
            if engine is not None:  # the window the completion would use
                request = fit_to_model(request, engine.max_positions)
            window, ids = prompt_for(tokenizer, request, counter)
            view = PromptView(
                render_prompt(tokenizer, ids), ids, window.first_line, window.end_line
            )
        except Exception as error:
            _settle(future, error=error)
            return
        _settle(future, view)

    def _complete(self, job: Job) -> None:
        engine, counter = self._engine, self._counter
        if engine is None or counter is None:
            self._count("not_ready")
            job.resolve(Outcome("not-ready"))
            return
        if job.cancel.is_set():
            self._finish_cancelled(job, generated=0)
            return
        try:
            on_shown = (lambda shown: self._show(job, shown)) if job.continues else None
            infill = complete(engine, job.key, job.request, counter, job.cancel.is_set, on_shown)
        except Cancelled as cancelled:
            self._count_cache(engine)
            if job.shown is None:
                self._finish_cancelled(job, cancelled.generated)
            else:
                self._finish_continuation(job, cancelled.generated, cancelled.prefilled, None)
            return
        except Exception as error:
            if job.shown is None:
                self._fail(job, engine, error)
            else:  # the answer is out: only the continuation is lost
                engine.recover(error)
                self._count_cache(engine)
                self._finish_continuation(job, job.shown.generated, 0, None)
            return
        self._count_cache(engine)
        if job.shown is None:
            self._answer(job, infill)
            _settle(job.kept, None)
        else:
            self._finish_continuation(job, infill.generated, infill.prefilled, infill)

    def _show(self, job: Job, infill: Infill) -> None:
        """The early stop's answer goes out; generation continues, first in line to be stopped."""
        job.shown = infill
        self._answer(job, infill)
        with self._cond:
            if self._pending or self._tasks:  # came in before it was continuing
                job.stop(superseded=True)

    def _finish_continuation(
        self, job: Job, generated: int, prefilled: int, kept: Infill | None
    ) -> None:
        """The engine reports the prefill when it stops, kept or not: counted here, once."""
        assert job.shown is not None
        continued = generated - job.shown.generated
        with self._cond:
            self._stats.prefilled_tokens += prefilled
            self._stats.cache_hits += 0 < prefilled < job.shown.prompt_tokens
            if job.answered is not None:
                job.answered["prefilled"] = prefilled
            self._stats.continued_tokens += continued
            self._stats.dropped_tokens += continued if kept is None else 0
            self._stats.recent.append(
                {
                    "job": job.number,
                    "status": "continued" if kept is not None else "dropped",
                    "continued": continued,
                    "ended": kept is not None and kept.ended,
                }
            )
        _settle(job.kept, kept)

    def _answer(self, job: Job, infill: Infill) -> None:
        with self._cond:
            self._problem = None
            stats = self._stats
            stats.completed += 1
            stats.prompt_tokens += infill.prompt_tokens
            stats.generated_tokens += infill.generated
            if job.shown is None:  # else the prefill is counted when the continuation ends
                stats.prefilled_tokens += infill.prefilled
                stats.cache_hits += infill.prefilled < infill.prompt_tokens
            job.answered = {
                "job": job.number,
                "status": "completed",
                "waitMs": round((job.due - job.submitted) * 1000, 1),
                "promptTokens": infill.prompt_tokens,
                "prefilled": infill.prefilled,
                "generated": infill.generated,
                "firstTokenMs": round(infill.first_token_s * 1000, 2),
                "engineMs": round(infill.total_s * 1000, 2),
            }
            stats.recent.append(job.answered)
        job.resolve(Outcome("completed", infill))

    def _finish_cancelled(self, job: Job, generated: int) -> None:
        status: Status = "superseded" if job.superseded else "cancelled"
        stopped_ms = (time.perf_counter() - (job.cancelled_at or time.perf_counter())) * 1000
        with self._cond:
            setattr(self._stats, status, getattr(self._stats, status) + 1)
            self._stats.wasted_tokens += generated
            self._stats.recent.append(
                {
                    "job": job.number,
                    "status": status,
                    "generated": generated,
                    "stopMs": round(stopped_ms, 2),
                }
            )
        job.resolve(Outcome(status))

    def _fail(self, job: Job, engine: Engine, error: Exception) -> None:
        """Any failure answers the request empty, frees what it can, and keeps the worker up.

        The message goes with the first failure of its kind only: an engine that is down
        fails every keystroke the same way.
        """
        if isinstance(error, EngineUnavailable):
            message = f"codellama-lsp: {error}"
        else:
            message = f"codellama-lsp: {engine.recover(error)}"
        self._count_cache(engine)
        with self._cond:
            self._stats.failed += 1
            repeated, self._problem = message == self._problem, message
        job.resolve(Outcome("failed", message="" if repeated else message))

    def _count(self, name: str) -> None:
        with self._cond:
            setattr(self._stats, name, getattr(self._stats, name) + 1)

    def _apply_cache_limits(self) -> None:
        if self._engine is not None:
            self._engine.set_cache_limits(*self._cache_limits)
            self._count_cache(self._engine)

    def _forget(self, key: str) -> None:
        if self._engine is not None:
            self._engine.forget(key)
            self._count_cache(self._engine)

    def _count_cache(self, engine: Engine) -> None:
        cached = engine.cached()
        with self._cond:
            self._cached = cached


def _interrupt(engine: Engine) -> None:
    if isinstance(engine, Interruptible):
        engine.interrupt()


def _settle(future: Future[Any], result: object = None, error: BaseException | None = None) -> None:
    """Answer `future` unless it is answered or cancelled already (a cancel can come any time)."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
