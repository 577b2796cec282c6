"""The one stop rule: every engine pushes the ids it produces here, and stops when told to.

The in-process loop and the remote streams only produce ids. Which of them ends generation (a
stop id, `maxNewTokens`, the deadline, the post-processor's early stop, checked in that order
after every id) is decided here, and the first-token time is taken here, once, from one start:
the moment the engine's `generate` was called. What an engine returns is built from the sink.
Cancellation is not a stop but an abort: each engine checks it where it can (inside a forward
pass, or while waiting on a server) and raises `sink.cancelled(...)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from codellama_lsp.engine.interface import Cancelled, Generated, Limits


class TokenSink:
    """The ids generated so far, and whether generation stops; one per `generate` call."""

    def __init__(
        self,
        max_new_tokens: int,
        stop_ids: frozenset[int],
        deadline: float,
        should_stop: Callable[[list[int]], bool],
    ) -> None:
        self.started = time.perf_counter()
        self.ids: list[int] = []
        self.stop_id: int | None = None
        """The stop id the model emitted itself, if it did."""
        self.first_token_s = 0.0
        self.prefilled: int | None = None
        """Prompt tokens run through the model (the rest came from a cache), once the engine
        knows: after its prefill, or where the server says."""
        self._max_new_tokens = max_new_tokens
        self._stop_ids = stop_ids
        self._deadline = deadline
        self._should_stop = should_stop

    @classmethod
    def of(cls, limits: Limits) -> TokenSink:
        return cls(limits.max_new_tokens, limits.stop_ids, limits.deadline, limits.should_stop)

    def push(self, token: int) -> bool:
        """Take the next generated id; whether generation stops now. A stop id is recorded in
        `stop_id`, not kept."""
        self._first_token()
        if token in self._stop_ids:
            self.stop_id = token
            return True
        self.ids.append(token)
        return self._enough()

    def respell(self, ids: Sequence[int]) -> bool:
        """Take the ids so far whole, for a server that streams text only: its text encoded again
        from the start (a merge can cross chunks); whether generation stops now."""
        self.ids[:] = ids
        if not self.ids:
            return False
        self._first_token()
        return self._enough()

    def ended(self, stop_id: int) -> None:
        """The server says the model met `stop_id`, which it does not send as a token."""
        self.stop_id = stop_id

    def generated(self, prompt_tokens: int) -> Generated:
        """What the engine returns; a prefill count no one gave means the whole prompt ran."""
        return Generated(
            ids=self.ids,
            stop_id=self.stop_id,
            prompt_tokens=prompt_tokens,
            prefilled=prompt_tokens if self.prefilled is None else self.prefilled,
            first_token_s=self.first_token_s,
            total_s=time.perf_counter() - self.started,
        )

    def cancelled(self, prompt_tokens: int) -> Cancelled:
        """What the engine raises when cancelled midway: the prefill count where known, else
        the whole prompt once a token came (and nothing before)."""
        if self.prefilled is not None:
            return Cancelled(len(self.ids), self.prefilled)
        return Cancelled(len(self.ids), prompt_tokens if self.ids else 0)

    def _first_token(self) -> None:
        if not self.first_token_s:
            self.first_token_s = time.perf_counter() - self.started

    def _enough(self) -> bool:
        return (
            len(self.ids) >= self._max_new_tokens
            or time.perf_counter() > self._deadline
            or self._should_stop(self.ids)
        )
