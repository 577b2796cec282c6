"""The scheduler: one long-lived thread that runs the engine and does all tokenization.

The LSP thread only submits jobs and awaits their futures, so it stays I/O-bound and never
holds the GIL for long. Per document, only the newest job matters: a new one supersedes the
pending one (answered at once) and cancels the running one (it stops before its next forward
pass, or its stream is closed). Automatic requests wait out a short debounce first, so a burst
of keystrokes costs one generation. Loading happens on a separate thread (loading.py), so
prompts can be built while weights load. Which engine generates (interface.py) is none of its
business: it imports no torch.

Glossary (the fields of `Job`, jobs.py): a job that *continues* generates on once its answer
is out, to keep the whole middle for asking again. Its answer is *shown* (`Job.shown`,
`_answer_shown`) as soon as post-processing's early stop says it is complete; the job is then
*continuing*, with the lowest priority: any new job or task stops it. Its *continuation* ends at
the model's end of the middle or a bound, and the whole middle is *kept* (`Job.kept`), or it is
stopped by another job and *dropped* (`Job.kept` is None); `_finish_continuation` counts both.
`Job.answer_entry` is the answer's line in the stats' `recent`, which the continuation's end
completes with the prefill the engine reports only then.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from codellama_lsp.checkpoint.tokenizer import FimTokenizer, TokenizerError
from codellama_lsp.completion.infill import complete
from codellama_lsp.completion.jobs import Job, Outcome, Stats, Stopped, settle
from codellama_lsp.completion.loading import LoadEvent, connect, load
from codellama_lsp.completion.prepare import PromptView, engine_heals, prepare
from codellama_lsp.completion.request import Infill, InfillRequest
from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.engine.interface import Cancelled, Engine, EngineUnavailable, Interruptible
from codellama_lsp.settings import Settings

log = logging.getLogger(__name__)

WORKER_DIED = "codellama-lsp: the model worker stopped unexpectedly and was started again"


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
        defaults = Settings()
        self._cache_limits = (defaults.cache_documents, defaults.cache_bytes)
        self._heals = engine_heals(defaults)
        """Whether the engine being opened will heal: the preview heals as it will."""
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
        limits = (settings.cache_documents, settings.cache_bytes)
        with self._cond:
            self._cache_limits = limits
            if settings.model_key() == self._model_key:
                self._post(self._apply_cache_limits)
                return False
            self._model_key = settings.model_key()
            self._heals = engine_heals(settings)
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
            engine = self._engine
            return self._stats.report(self._cached, engine.description if engine else None)

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
        def adopt(tokenizer: FimTokenizer) -> None:
            with self._cond:
                if generation == self._load_generation:
                    self._tokenizer = tokenizer
                    self._counter = LineTokenCounter(tokenizer)

        engine = load(settings, self._on_load_event, adopt)
        if engine is None:
            return
        with self._cond:
            if generation != self._load_generation:
                engine.close()
                return
            self._engine = engine
        self._post(self._apply_cache_limits)
        self._post(lambda: self._connect(engine))

    def _connect(self, engine: Engine) -> None:
        """On the worker thread, which owns the engine; before any completion runs on it."""
        if engine is not self._engine:
            return  # replaced meanwhile
        problem = connect(engine, self._on_load_event)
        with self._cond:
            if problem is None or engine is not self._engine:
                return  # connected, or replaced while it failed: no news of a server not in use
            self._problem = problem
        self._on_load_event(LoadEvent("failed", problem))

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
        """The prompt `complete` would send: fitted and healed as the engine (or the one
        being opened) does."""
        tokenizer, counter, engine = self._tokenizer, self._counter, self._engine
        if tokenizer is None or counter is None:
            settle(future, error=TokenizerError("the tokenizer is not loaded yet"))
            return
        if future.cancelled():  # `$/cancelRequest` came while it waited
            return
        positions = engine.max_positions if engine is not None else None
        heals = engine.heals if engine is not None else self._heals
        try:
            view = PromptView.of(tokenizer, prepare(tokenizer, request, counter, positions, heals))
        except Exception as error:
            settle(future, error=error)
            return
        settle(future, view)

    def _complete(self, job: Job) -> None:
        engine, counter = self._engine, self._counter
        if engine is None or counter is None:
            with self._cond:
                self._stats.not_ready += 1
            job.resolve(Outcome("not-ready"))
            return
        if job.cancel.is_set():
            self._finish_cancelled(job, generated=0)
            return
        try:
            on_shown = (lambda shown: self._answer_shown(job, shown)) if job.continues else None
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
            settle(job.kept, None)
        else:
            self._finish_continuation(job, infill.generated, infill.prefilled, infill)

    def _answer_shown(self, job: Job, infill: Infill) -> None:
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
        with self._cond:
            self._stats.count_continuation(job, generated, prefilled, kept)
        settle(job.kept, kept)

    def _answer(self, job: Job, infill: Infill) -> None:
        with self._cond:
            self._problem = None
            self._stats.count_answer(job, infill)
        job.resolve(Outcome("completed", infill))

    def _finish_cancelled(self, job: Job, generated: int) -> None:
        status: Stopped = "superseded" if job.superseded else "cancelled"
        with self._cond:
            self._stats.count_stopped(job, status, generated)
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
