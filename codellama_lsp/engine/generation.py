"""The generation loop: explicit prefill and decode over an explicit, reusable KV cache.

In gpt-fast's shape: `generate` fits the document's cache to the prompt (`CachedSequence.fit`),
runs the rest of the prompt through the model (`prefill`), then decodes (`decode_n_tokens`): the
next token is chosen (`Picking`), pushed into the token sink, which says when to stop
(token_sink.py), and run through the model (`decode_one_token`), which checks a prompt-lookup
draft in the same pass where drafts pay.

A document's cache holds the keys and values of the last prompt and of what was generated after
it. The next prompt shares most of its tokens with that one (suffix-first prompts end with the
prefix the user is typing), so only the tokens after the common prefix are run through the model.
Cancellation is checked before every decoder layer and every matrix product in one, during prefill
and eager decode steps alike: a prefill chunk costs several decode steps, and even one step is
too long to wait for. A pass stopped midway is rolled back, and the cache stays valid. A CUDA
graph replay cannot stop midway: on a GPU, decode is checked before every step.

On a CUDA GPU the cache is a preallocated `StaticCache` and every one-token forward pass replays
a CUDA graph (decode_graph.py); elsewhere it is a `DynamicCache` that grows with the sequence.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from codellama_lsp.engine.decode_graph import DecodeGraph, last_logits
from codellama_lsp.engine.interface import Cancelled as Cancelled  # (its callers import it here)
from codellama_lsp.engine.interface import Generated
from codellama_lsp.engine.prompt_lookup import MAX_DRAFT, Payoff, draft
from codellama_lsp.engine.token_sink import TokenSink

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel

    from codellama_lsp.checkpoint.tokenizer import FimTokenizer

PREFILL_CHUNK = 256


@dataclass
class CachedSequence:
    """A document's KV cache and the token ids whose keys and values it holds."""

    cache: Cache | None = None
    ids: list[int] = field(default_factory=list)
    capacity: int = 0
    """Positions of a static cache; 0 for a dynamic one."""
    graph: DecodeGraph | None = None
    payoff: Payoff = field(default_factory=Payoff)
    """Outlives `reset`: it is about the model and the machine, not the text."""

    def reset(self, model: PreTrainedModel, capacity: int) -> None:
        from transformers import DynamicCache, StaticCache

        self.cache = (
            StaticCache(config=model.config, max_cache_len=capacity)
            if capacity
            else DynamicCache(config=model.config)
        )
        self.ids, self.capacity, self.graph = [], capacity, None

    def fit(
        self, model: PreTrainedModel, prompt: list[int], needed: int, static_capacity: int
    ) -> int:
        """Make the cache hold a prefix of `prompt`, with room for `needed` positions if it is
        static: how many prompt tokens it holds. At least one prompt token always goes through
        the model (its logits choose the first new token).

        A static cache is kept while it has room (it is allocated once per document, of
        `static_capacity` positions or `needed` if more); a dynamic one while it shares a
        prefix with the prompt."""
        reuse = min(common_prefix(self.ids, prompt), len(prompt) - 1)
        if static_capacity:
            fits = self.cache is not None and self.capacity >= needed
        else:
            fits = self.cache is not None and not self.capacity and reuse > 0
        if not fits:
            self.reset(model, max(static_capacity, needed) if static_capacity else 0)
            return 0
        if len(self.ids) > reuse:
            assert self.cache is not None  # it fits
            self.cache.crop(reuse - len(self.ids))
            del self.ids[reuse:]
        return reuse

    def nbytes(self) -> int:
        from transformers.cache_utils import CacheLayerMixin

        if self.cache is None:
            return 0
        return sum(
            layer.keys.nbytes + layer.values.nbytes
            for layer in self.cache.layers
            if isinstance(layer, CacheLayerMixin)
            and layer.keys is not None
            and layer.values is not None
            and layer.keys.numel() > 0
        )


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def generate(
    model: PreTrainedModel,
    prompt: list[int],
    state: CachedSequence,
    *,
    max_new_tokens: int,
    stop_ids: frozenset[int],
    temperature: float,
    should_stop: Callable[[list[int]], bool],
    cancelled: Callable[[], bool],
    forced: bytes = b"",
    tokenizer: FimTokenizer | None = None,
    deadline: float = float("inf"),
    static_capacity: int = 0,
    prompt_lookup: bool = True,
) -> Generated:
    """Greedy (or sampled) tokens after `prompt`; the first ones spell `forced` (token healing).

    With `static_capacity`, the cache is a static one of at least that many positions (the
    largest request expected, so it is allocated once per document) and decode steps replay a
    CUDA graph where the model is on a CUDA GPU. Greedy decoding over eager steps checks
    prompt-lookup drafts (prompt_lookup.py): the same tokens, in fewer forward passes.
    """
    sink = TokenSink(max_new_tokens, stop_ids, deadline, should_stop)
    graphs = bool(static_capacity) and model.device.type == "cuda"
    lookup = prompt_lookup and temperature <= 0 and not graphs
    needed = len(prompt) + max_new_tokens + (MAX_DRAFT if lookup else 0)
    picking = Picking(temperature, forced, tokenizer)
    with torch.inference_mode():  # (a static cache's length is an inference tensor: crop in here)
        reuse = state.fit(model, prompt, needed, static_capacity)
        try:
            with _stop_inside_layers(model, cancelled):
                logits = prefill(model, prompt[reuse:], state)
            sink.prefilled = len(prompt) - reuse
            # A graph replay cannot stop midway: decode_n_tokens checks before every step.
            with nullcontext() if graphs else _stop_inside_layers(model, cancelled):
                decode_n_tokens(model, prompt, state, logits, sink, picking, cancelled, lookup)
        except _LayerCancelled:
            _roll_back(state)
            raise sink.cancelled(len(prompt)) from None
    return sink.generated(len(prompt))


def prefill(model: PreTrainedModel, ids: list[int], state: CachedSequence) -> torch.Tensor:
    """Run `ids` after what the cache holds, PREFILL_CHUNK at a time: the logits after them."""
    logits = None
    for begin in range(0, len(ids), PREFILL_CHUNK):
        logits = _forward(model, ids[begin : begin + PREFILL_CHUNK], state, model.device)
    assert logits is not None  # at least one prompt token goes through the model
    return logits


@dataclass
class Picking:
    """How the next token is chosen from the logits: sampling, and the bytes still forced."""

    temperature: float
    forced: bytes
    """Token healing: what the next tokens must still spell (only with a `tokenizer`)."""
    tokenizer: FimTokenizer | None

    def next_token(self, logits: torch.Tensor) -> int:
        if not self.forced or self.tokenizer is None:
            return _pick(logits, self.temperature)
        choices = self.tokenizer.ids_spelling_start(self.forced)
        token = choices[_pick(logits[choices], self.temperature)]
        spelled = self.tokenizer.decode_bytes([token])
        self.forced = b"" if spelled.startswith(self.forced) else self.forced[len(spelled) :]
        return token


def decode_n_tokens(
    model: PreTrainedModel,
    prompt: list[int],
    state: CachedSequence,
    logits: torch.Tensor,
    sink: TokenSink,
    picking: Picking,
    cancelled: Callable[[], bool],
    lookup: bool,
) -> None:
    """Push tokens into `sink` until it says stop, `cancelled` checked before every step.

    The next token is a draft token the model confirmed (in the cache already: no step), or
    the logits' choice; with `lookup`, a step checks a draft while drafts pay for themselves.
    """
    verified: deque[int] = deque()
    """Draft tokens the model confirmed: in the cache already, pushed without a pass."""
    while True:
        if verified:
            if sink.push(verified.popleft()):
                return
            continue
        token = picking.next_token(logits)
        if sink.push(token):
            return
        if cancelled():
            raise sink.cancelled(len(prompt))
        drafting = lookup and not picking.forced and state.payoff.wanted()
        guess = draft(prompt + sink.ids) if drafting else []
        logits = decode_one_token(model, token, guess, state, verified, lookup)


def decode_one_token(
    model: PreTrainedModel,
    token: int,
    guess: list[int],
    state: CachedSequence,
    verified: deque[int],
    timed: bool,
) -> torch.Tensor:
    """Run `token` (and `guess`, a draft after it) after what the cache holds: the logits that
    choose the next token. The draft's confirmed tokens are queued in `verified`; the pass is
    timed for `state.payoff` where prompt lookup is on (`timed`)."""
    began = time.perf_counter()
    if guess:
        logits = _verify(model, token, guess, state, verified)
        state.payoff.drafted(time.perf_counter() - began, len(verified))
        return logits
    logits = _forward(model, [token], state, model.device)
    if timed:
        state.payoff.plain(time.perf_counter() - began)
    return logits


def _forward(
    model: PreTrainedModel, ids: list[int], state: CachedSequence, device: torch.device
) -> torch.Tensor:
    """Run `ids` after what the cache holds; the logits of the last position."""
    if len(ids) == 1 and state.capacity and device.type == "cuda":
        if state.graph is None:
            from transformers import StaticCache

            assert isinstance(state.cache, StaticCache)  # a capacity means a static cache
            state.graph = DecodeGraph(model, state.cache)
        logits = state.graph(ids[0])
    else:
        assert state.cache is not None
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        logits = last_logits(model, state.cache, input_ids)
    state.ids.extend(ids)
    return logits


def _verify(
    model: PreTrainedModel,
    token: int,
    guess: list[int],
    state: CachedSequence,
    verified: deque[int],
) -> torch.Tensor:
    """One pass over `token` and a draft: keep the draft's tokens greedy decoding agrees with.

    Queues the confirmed ones in `verified`, crops the rest out of the cache, and returns the
    logits after the last confirmed token.
    """
    input_ids = torch.tensor([[token, *guess]], dtype=torch.long, device=model.device)
    output = model(
        input_ids=input_ids, cache=state.cache, use_cache=True, logits_to_keep=len(guess) + 1
    )
    logits: torch.Tensor = output.logits[0]
    picks = torch.argmax(logits, dim=-1).tolist()
    kept = 0
    while kept < len(guess) and guess[kept] == picks[kept]:
        kept += 1
    assert state.cache is not None
    if kept < len(guess):
        state.cache.crop(kept - len(guess))
    state.ids += [token, *guess[:kept]]
    verified.extend(guess[:kept])
    return logits[kept]


class _LayerCancelled(Exception):
    """Raised from inside a forward pass: the cache may hold part of it."""


@contextmanager
def _stop_inside_layers(model: PreTrainedModel, cancelled: Callable[[], bool]) -> Iterator[None]:
    """Check `cancelled` before every decoder layer and every linear map inside one: a layer's
    share of a prefill chunk can still cost several decode steps, one matrix product not."""

    def check(_module: torch.nn.Module, _args: object) -> None:
        if cancelled():
            raise _LayerCancelled

    stops = [
        module
        for layer in model.get_decoder().layers
        for module in layer.modules()
        if module is layer or isinstance(module, torch.nn.Linear)
    ]
    hooks = [module.register_forward_pre_hook(check) for module in stops]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def _roll_back(state: CachedSequence) -> None:
    """Crop the layers that took part of an interrupted chunk back to `state.ids`."""
    from transformers.cache_utils import DynamicLayer, StaticLayer

    assert state.cache is not None
    for layer in state.cache.layers:
        assert isinstance(layer, (DynamicLayer, StaticLayer))  # a Llama: attention layers
        extra = int(layer.get_seq_length()) - len(state.ids)
        if extra > 0:
            layer.crop(-extra)


def _pick(logits: torch.Tensor, temperature: float) -> int:
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1))
