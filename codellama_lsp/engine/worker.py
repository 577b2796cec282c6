"""The model worker: one long-lived thread that owns the model and does all tokenization.

The LSP thread only submits jobs and awaits their futures, so it stays I/O-bound and never
holds the GIL for long. Per document, only the newest job matters: a new one supersedes the
pending one (answered at once) and cancels the running one (it stops before its next forward
pass). Automatic requests wait out a short debounce first, so a burst of keystrokes costs one
generation. Loading happens on a separate thread, so prompts can be built while weights load.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Literal

from ..download_progress import describe, percentage
from ..prompt import render_prompt
from ..settings import Settings
from ..tokenizer import FimTokenizer, TokenizerError, load_tokenizer
from .generation import CachedSequence, Cancelled
from .infill import (
    Infill,
    InfillRequest,
    LineTokenCounter,
    complete,
    fit_to_model,
    prompt_for,
)
from .model import LoadedModel, ModelLoadError, load_model

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
    forgotten: bool = False
    """Its document was closed: whatever it computes is not kept."""

    def stop(self, superseded: bool) -> None:
        self.superseded = superseded
        if self.cancelled_at is None:
            self.cancelled_at = time.perf_counter()
        self.cancel.set()

    def resolve(self, outcome: Outcome) -> None:
        _settle(self.future, outcome)


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
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS))
    """One entry per finished job, newest last: what the benchmarks and status lines read."""


class Worker:
    def __init__(self, on_load_event: Callable[[LoadEvent], None]) -> None:
        self._on_load_event = on_load_event
        self._cond = threading.Condition()
        self._pending: dict[str, Job] = {}
        self._tasks: deque[Callable[[], None]] = deque()
        self._running: Job | None = None
        self._stopped = False
        self._loaded: LoadedModel | None = None
        self._tokenizer: FimTokenizer | None = None
        self._counter: LineTokenCounter | None = None
        self._model_key: tuple[object, ...] | None = None
        self._load_generation = 0
        self._sessions: OrderedDict[str, CachedSequence] = OrderedDict()
        """Owned by the worker thread; others read `_cached` (documents, bytes), kept under lock."""
        self._cached = (0, 0)
        self._cache_documents = Settings.cache_documents
        self._cache_bytes = Settings.cache_megabytes * 2**20
        self._numbers = itertools.count(1)
        self._stats = Stats()
        self._thread = self._start_thread()

    # -- called from the LSP thread -------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._loaded is not None

    @property
    def max_positions(self) -> int | None:
        """The loaded model's positions; None until one is loaded."""
        loaded = self._loaded
        return loaded.max_positions if loaded is not None else None

    def configure(self, settings: Settings) -> bool:
        """Load the model the settings name, unless it is the one already loaded or loading.

        Whether a load started (its end or failure comes as a LoadEvent).
        """
        with self._cond:
            self._cache_documents = settings.cache_documents
            self._cache_bytes = settings.cache_megabytes * 2**20
            if settings.model_key() == self._model_key:
                return False
            self._model_key = settings.model_key()
            self._load_generation += 1
            generation = self._load_generation
            self._loaded = None
            self._tokenizer = None
        threading.Thread(
            target=self._load, args=(settings, generation), name="codellama-loader", daemon=True
        ).start()
        return True

    def submit(self, key: str, request: InfillRequest, delay_s: float) -> Job:
        now = time.monotonic()
        job = Job(key, request, due=now + delay_s, number=next(self._numbers), submitted=now)
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
            if self._running is not None and self._running.key == key:
                self._running.stop(superseded=True)
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
        """Forget a closed document: its waiting job, its running one (which stops and keeps
        nothing) and its cache (dropped on the worker thread, which owns it)."""
        with self._cond:
            pending = self._pending.pop(key, None)
            if pending is not None:
                self._stats.cancelled += 1
                pending.resolve(Outcome("cancelled"))
            if self._running is not None and self._running.key == key:
                self._running.forgotten = True
                self._running.stop(superseded=False)
        self._post(lambda: self._drop_sessions(key))

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
                "cachedDocuments": self._cached[0],
                "cacheBytes": self._cached[1],
                "recent": list(stats.recent),
                "model": self._loaded.description if self._loaded else None,
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
            loaded = load_model(settings, functools.partial(self._report_download, settings))
        except (ModelLoadError, TokenizerError) as error:
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
                return
            self._loaded = loaded
        self._post(self._drop_sessions)  # caches of the previous model are of no use
        self._on_load_event(LoadEvent("end", f"Code Llama ready: {loaded.description}"))

    def _report_download(self, settings: Settings, done: int, total: int) -> None:
        message = f"Downloading {settings.model}: {describe(done, total)}"
        self._on_load_event(LoadEvent("report", message, percentage(done, total)))

    # -- the worker thread ------------------------------------------------------------------

    def _post(self, task: Callable[[], None]) -> None:
        """Run `task` on the worker thread before the next completion."""
        with self._cond:
            self._revive()
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

    def _build_prompt(self, request: InfillRequest, future: Future[PromptView]) -> None:
        tokenizer, counter = self._tokenizer, self._counter
        if tokenizer is None or counter is None:
            _settle(future, error=TokenizerError("the tokenizer is not loaded yet"))
            return
        if future.cancelled():  # `$/cancelRequest` came while it waited
            return
        try:
            if self._loaded is not None:  # the window the completion would use
                request = fit_to_model(request, self._loaded.max_positions)
            window, ids = prompt_for(tokenizer, request, counter)
            view = PromptView(
                render_prompt(tokenizer, ids), ids, window.first_line, window.end_line
            )
        except Exception as error:
            _settle(future, error=error)
            return
        _settle(future, view)

    def _complete(self, job: Job) -> None:
        loaded, counter = self._loaded, self._counter
        if loaded is None or counter is None:
            self._count("not_ready")
            job.resolve(Outcome("not-ready"))
            return
        if job.cancel.is_set():
            self._finish_cancelled(job, generated=0)
            return
        state = self._sessions.pop(job.key, None) or CachedSequence()
        try:
            infill = complete(loaded, job.request, state, counter, job.cancel.is_set)
        except Cancelled as cancelled:
            self._keep(job, state, loaded)
            self._finish_cancelled(job, cancelled.generated)
            return
        except Exception as error:
            self._fail(job, error)
            return
        self._keep(job, state, loaded)
        with self._cond:
            stats = self._stats
            stats.completed += 1
            stats.prompt_tokens += infill.prompt_tokens
            stats.prefilled_tokens += infill.prefilled
            stats.generated_tokens += infill.generated
            stats.cache_hits += infill.prefilled < infill.prompt_tokens
            stats.recent.append(
                {
                    "job": job.number,
                    "status": "completed",
                    "waitMs": round((job.due - job.submitted) * 1000, 1),
                    "promptTokens": infill.prompt_tokens,
                    "prefilled": infill.prefilled,
                    "generated": infill.generated,
                    "firstTokenMs": round(infill.first_token_s * 1000, 2),
                    "engineMs": round(infill.total_s * 1000, 2),
                }
            )
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

    def _fail(self, job: Job, error: Exception) -> None:
        """Any failure answers the request empty, frees what it can, and keeps the worker up."""
        import torch

        self._drop_sessions()
        gc.collect()
        if _is_out_of_memory(error):
            message = "out of memory while generating: the cache was dropped; lower contextTokens"
        else:
            message = f"completion failed: {type(error).__name__}: {error}"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._count("failed")
        job.resolve(Outcome("failed", message=f"codellama-lsp: {message}"))

    def _count(self, name: str) -> None:
        with self._cond:
            setattr(self._stats, name, getattr(self._stats, name) + 1)

    def _keep(self, job: Job, state: CachedSequence, loaded: LoadedModel) -> None:
        """Keep a job's document's cache, newest last, dropping the oldest beyond the limits.

        The byte budget never drops the cache just used (it already exists, and without it
        every keystroke would prefill the whole prompt again); `cacheDocuments` 0 does.
        """
        if loaded is not self._loaded:
            return  # another model was loaded meanwhile: this cache belongs to the old one
        if job.forgotten:
            return  # its document was closed meanwhile
        self._sessions[job.key] = state
        while len(self._sessions) > self._cache_documents or (
            len(self._sessions) > 1
            and sum(s.nbytes() for s in self._sessions.values()) > self._cache_bytes
        ):
            self._sessions.popitem(last=False)
        self._count_sessions()

    def _drop_sessions(self, key: str | None = None) -> None:
        """Drop one document's cache, or all of them."""
        if key is None:
            self._sessions.clear()
        else:
            self._sessions.pop(key, None)
        self._count_sessions()

    def _count_sessions(self) -> None:
        cached = (len(self._sessions), sum(s.nbytes() for s in self._sessions.values()))
        with self._cond:
            self._cached = cached


def _settle(future: Future[Any], result: object = None, error: BaseException | None = None) -> None:
    """Answer `future` unless it is answered or cancelled already (a cancel can come any time)."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _is_out_of_memory(error: Exception) -> bool:
    """Whether `error` means memory ran out, on any device.

    torch raises OutOfMemoryError only on accelerators: a CPU allocation failure is a
    RuntimeError ("DefaultCPUAllocator: can't allocate memory", "not enough memory" on
    Windows), and Python's own allocations raise MemoryError.
    """
    import torch

    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text
    )
