"""What the engines on an inference server share: the connection, streaming, stopping, faults.

The scheduler's thread calls in synchronously; each call runs on this engine's own event loop,
which watches a deadline and a cancel flag while it waits on the server: the job's deadline and
cancel flag for a stream, HANDSHAKE_TIMEOUT_S for the whole handshake (a server that sends a
byte a second never trips a per-read timeout), and for both the flag `interrupt` sets from
another thread when the engine is replaced or the language server stops, so that no call waits
on a stuck server then. What a server sends is bounded in size as it comes (bounded_reads.py);
every number in it (slots, positions, counts, token ids) is checked before use. The streams push
ids into a token sink (token_sink.py), which says when to stop; leaving the stream early
(cancelled, superseded, the post-processor's early stop, a limit) closes the connection, and the
server stops generating for it. Every failure becomes `EngineUnavailable` with a message
that names the server and the cause, never the API key; the next request within a second is
answered at once without trying, the one after reconnects (and checks the vocabulary again).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import httpx2 as httpx

from codellama_lsp.checkpoint.files import declared_positions
from codellama_lsp.checkpoint.tokenizer import FimTokenizer
from codellama_lsp.engine.interface import (
    Cancelled,
    EngineSetupError,
    EngineUnavailable,
    Generated,
    Limits,
)
from codellama_lsp.engine.remote.bounded_reads import read_body, read_lines
from codellama_lsp.engine.token_sink import TokenSink
from codellama_lsp.settings import API_KEY_ENV, Settings

RETRY_AFTER_S = 1.0
"""After a failure, requests are answered empty at once for this long, then tried again."""
CONNECT_TIMEOUT_S = 3.0
"""For the connection and for each read; the deadlines below bound the whole of a call."""
HANDSHAKE_TIMEOUT_S = 10
"""The most the whole handshake may take, all its requests together."""
CANCEL_POLL_S = 0.002
VOCABULARY_SAMPLE = 'def greet(name):\n    return f"héllo, {name}"  # ☺\n\tx = [1, 2]\n'
MAX_SLOTS = 4096
"""More slots than any llama-server runs (each holds a context of its own)."""
MAX_POSITIONS = 2**24
"""More positions than any model serves (Code Llama's reach 100k)."""
DEFAULT_SEED = 0xFFFFFFFF
"""llama.cpp's "a new random seed each time"; only sampling (temperature > 0) uses a seed."""


def base_url(url: str) -> str:
    """`url` without a trailing slash, checked: an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EngineSetupError(f"engineUrl {url!r} is not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as error:
        raise EngineSetupError(f"engineUrl {url!r}: {error}") from None
    return url.strip().rstrip("/")


def is_int(value: object) -> TypeGuard[int]:
    """An int of JSON's: `True` is an int to Python, not a number to a server."""
    return isinstance(value, int) and not isinstance(value, bool)


def shown(value: object) -> str:
    """A value a server sent, short enough for a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class RemoteEngine:
    """The base of the HTTP engines; subclasses say how to handshake and how to stream."""

    heals = False
    """Token healing constrains the first tokens to spell some bytes: no server here takes
    such a constraint for the first tokens only, so healing is off (see the README)."""
    kind = "remote"

    def __init__(self, settings: Settings, tokenizer: FimTokenizer) -> None:
        self.tokenizer = tokenizer
        self.url = base_url(settings.engine_url)
        self.model = settings.model
        self.max_positions = declared_positions(settings.model) or 4096
        self.description = f"{settings.model} on {self.kind} at {self.url}"
        headers = {"Accept-Encoding": "identity"}  # bodies are counted as they come
        if key := settings.engine_api_key:  # the environment's is in it, for its URL only
            headers["Authorization"] = f"Bearer {key}"
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(CONNECT_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            trust_env=False,
        )
        self._connected = False
        self._retry_at = 0.0
        self._problem = ""
        self._interrupted = threading.Event()

    # -- the Engine interface -----------------------------------------------------------------

    def connect(self) -> None:
        """Reach the server and check it serves this tokenizer's vocabulary."""
        self._retry_at = 0.0
        self._ensure_connected()

    def generate(self, document: str, prompt: list[int], limits: Limits) -> Generated:
        sink = TokenSink.of(limits)
        self._ensure_connected()
        try:
            finished = self._call(
                self._stream(document, prompt, limits, sink),
                limits.deadline,
                limits.cancelled,
                lambda: len(sink.ids),
            )
        except EngineUnavailable as error:
            self._went_down(str(error))
            raise
        except Cancelled:  # a stopped continuation still counts its prefill
            raise sink.cancelled(len(prompt)) from None
        if not finished and not sink.ids:  # the deadline passed with nothing to show
            budget_ms = round((limits.deadline - sink.started) * 1000)
            self._went_down(
                f"{self.url} did not answer within timeBudgetMs ({budget_ms} ms): "
                "is it overloaded? raise timeBudgetMs for a slow server"
            )
            raise EngineUnavailable(self._problem)
        return sink.generated(len(prompt))

    def set_cache_limits(self, documents: int, nbytes: int) -> None:
        """The server's own limits (its slots and context) apply, not this process's."""

    def forget(self, document: str | None = None) -> None:
        """The server's caches belong to its slots: nothing to free here."""

    def cached(self) -> tuple[int, int]:
        return 0, 0

    def recover(self, error: Exception) -> str:
        return f"completion failed: {type(error).__name__}: {error}"

    def interrupt(self) -> None:
        """From any thread: the call under way ends now, raising `Cancelled`, and so does every
        later one but `close`; for an engine that is replaced, or a language server stopping."""
        self._interrupted.set()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.aclose())
            self._loop.close()

    # -- for subclasses ---------------------------------------------------------------------

    async def _handshake(self) -> None:
        """Learn the server's limits and check its vocabulary; raise EngineUnavailable."""
        raise NotImplementedError

    async def _stream(
        self, document: str, prompt: list[int], limits: Limits, sink: TokenSink
    ) -> None:
        """Push the server's ids into `sink` until it says stop or the server ends; set
        `sink.prefilled` where the server says."""
        raise NotImplementedError

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        """One request answered with JSON; any failure as EngineUnavailable."""
        try:
            async with self._client.stream(method, self.url + path, json=body) as response:
                data = await read_body(response, self.url + path)
        except httpx.HTTPError as error:
            raise EngineUnavailable(self._transport_problem(error)) from None
        if response.status_code >= 400:
            text = data.decode("utf-8", "replace")
            raise EngineUnavailable(self._status_problem(response.status_code, text))
        try:
            return json.loads(data)
        except ValueError:
            raise EngineUnavailable(f"{self.url}{path} did not answer JSON") from None

    async def _events(
        self, path: str, body: dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The JSON objects of a server-sent event stream; errors as EngineUnavailable."""
        try:
            async with self._client.stream("POST", self.url + path, json=body) as response:
                if response.status_code >= 400:
                    text = (await read_body(response, self.url + path)).decode("utf-8", "replace")
                    raise EngineUnavailable(self._status_problem(response.status_code, text))
                # Closed here, not left to the garbage collector (which would schedule the
                # close on this engine's loop when it is no longer running).
                async with aclosing(read_lines(response, self.url + path)) as lines:
                    async for line in lines:
                        kind, _, data = line.partition(":")
                        data = data.strip()
                        if kind not in ("data", "error") or not data or data == "[DONE]":
                            continue
                        event = json.loads(data)
                        if kind == "error" or (isinstance(event, dict) and "error" in event):
                            raise EngineUnavailable(self._error_problem(event))
                        yield event
        except httpx.HTTPError as error:
            raise EngineUnavailable(self._transport_problem(error)) from None
        except json.JSONDecodeError:
            raise EngineUnavailable(f"{self.url}{path} streamed something not JSON") from None

    def _check_vocabulary(self, sample_ids: list[int], markers_text: str) -> None:
        """The server's encoding of the sample and its spelling of the infilling markers must
        be this tokenizer's: another model family would read the prompt ids as garbage."""
        ours = self.tokenizer.encode(VOCABULARY_SAMPLE)
        marks = self.tokenizer.ids
        expected = "".join(
            self.tokenizer.decode([i]).strip() for i in (marks.pre, marks.suf, marks.mid, marks.eot)
        )
        if sample_ids != ours or markers_text.replace(" ", "") != expected:
            raise EngineUnavailable(
                f"the model at {self.url} does not use {self.model}'s vocabulary (its "
                "tokenization of a sample or of the infilling markers differs): serve the "
                "Code Llama checkpoint whose tokenizer `model` names"
            )

    def _number(self, value: object, what: str, low: int, high: int) -> int:
        """`value`, checked: an int (not a bool) in `low..high`. Anything else is refused, not
        clamped or guessed at: a server that sends it is not what it claims to be (a proxy's
        page, a bug, a hostile host), and a guess would fail later, less clearly, or cost
        memory (a slot count of 2x10^7 once did)."""
        if not is_int(value) or not low <= value <= high:
            raise EngineUnavailable(
                f"the {self.kind} server at {self.url} sent {what} {shown(value)}, not a whole "
                f"number in {low}..{high}"
            )
        return value

    def _token_ids(self, value: object) -> list[int]:
        """Generated ids, checked: a list of ids of this tokenizer's vocabulary (one outside it
        would be decoded as another piece, or not at all)."""
        if not isinstance(value, list):
            raise EngineUnavailable(
                f"the {self.kind} server at {self.url} sent token ids {shown(value)}, not a list"
            )
        return [self._token_id(token) for token in value]

    def _token_id(self, value: object) -> int:
        vocabulary = self.tokenizer.vocab_size
        if not is_int(value) or not 0 <= value < vocabulary:
            raise EngineUnavailable(
                f"the {self.kind} server at {self.url} sent token id {shown(value)}, outside "
                f"the vocabulary of {vocabulary}"
            )
        return value

    # -- internals ----------------------------------------------------------------------------

    def _ensure_connected(self) -> None:
        if self._connected:
            return
        if time.monotonic() < self._retry_at:
            raise EngineUnavailable(self._problem)
        try:
            deadline = time.perf_counter() + HANDSHAKE_TIMEOUT_S
            if not self._call(self._handshake(), deadline, lambda: False, lambda: 0):
                raise EngineUnavailable(
                    f"the {self.kind} server at {self.url} did not answer its handshake "
                    f"within {HANDSHAKE_TIMEOUT_S:g} s"
                )
        except EngineUnavailable as error:
            self._went_down(str(error))
            raise
        self._connected = True

    def _went_down(self, problem: str) -> None:
        self._connected = False
        self._problem = problem
        self._retry_at = time.monotonic() + RETRY_AFTER_S

    def _call(
        self,
        work: Coroutine[Any, Any, None],
        deadline: float,
        cancelled: Callable[[], bool],
        generated: Callable[[], int],
    ) -> bool:
        """Run `work` on this engine's loop until it ends (True) or `deadline` (False); raise
        `Cancelled`, saying how many tokens were `generated`, once `cancelled` or interrupted."""

        def stopped() -> bool:
            return self._interrupted.is_set() or cancelled()

        if stopped():
            work.close()
            raise Cancelled(generated())
        return self._loop.run_until_complete(self._watch(work, deadline, stopped, generated))

    @staticmethod
    async def _watch(
        work: Coroutine[Any, Any, None],
        deadline: float,
        cancelled: Callable[[], bool],
        generated: Callable[[], int],
    ) -> bool:
        """Run `work` until it ends (True), the deadline (False) or the cancel flag (raises)."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=CANCEL_POLL_S)
                if done:
                    task.result()
                    return True
                if cancelled():
                    raise Cancelled(generated())
                if time.perf_counter() > deadline:
                    return False
        finally:
            if not task.done():
                task.cancel()  # closes the stream's connection: the server stops the slot
                await asyncio.gather(task, return_exceptions=True)
            # Let the closes the garbage collector scheduled (httpx's inner generators) run
            # now, while this loop runs: it runs only during calls.
            await asyncio.sleep(0)

    def _transport_problem(self, error: httpx.HTTPError) -> str:
        if isinstance(error, httpx.ConnectError):
            return f"cannot reach the {self.kind} server at {self.url} (is it running?)"
        if isinstance(error, httpx.TimeoutException):
            return f"the {self.kind} server at {self.url} did not answer in time"
        if isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError)):
            return f"the {self.kind} server at {self.url} closed the connection mid-answer"
        return f"the {self.kind} server at {self.url} failed: {type(error).__name__}"

    def _status_problem(self, status: int, text: str) -> str:
        if status in (401, 403):
            return (
                f"the {self.kind} server at {self.url} refused the API key ({status}): set "
                f"engineApiKey or {API_KEY_ENV}"
            )
        try:
            detail = self._error_problem(json.loads(text))
        except ValueError:
            detail = text.strip().splitlines()[0][:200] if text.strip() else ""
        return f"the {self.kind} server at {self.url} answered {status}" + (
            f": {detail}" if detail else ""
        )

    @staticmethod
    def _error_problem(event: Any) -> str:
        error = event.get("error", event) if isinstance(event, dict) else event
        if isinstance(error, dict):
            return str(error.get("message") or error)[:200]
        return str(error)[:200]
