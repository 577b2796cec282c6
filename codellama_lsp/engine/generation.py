"""The generation loop: explicit prefill and decode over an explicit, reusable KV cache.

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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from codellama_lsp.engine.decode_graph import DecodeGraph, last_logits
from codellama_lsp.engine.interface import Cancelled, Generated
from codellama_lsp.engine.prompt_lookup import MAX_DRAFT, Payoff, draft

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
    start = time.perf_counter()
    device = model.device
    graphs = bool(static_capacity) and device.type == "cuda"
    lookup = prompt_lookup and temperature <= 0 and not graphs
    needed = len(prompt) + max_new_tokens + (MAX_DRAFT if lookup else 0)
    # At least one prompt token always goes through the model: its logits choose the first token.
    reuse = min(common_prefix(state.ids, prompt), len(prompt) - 1)
    logits = None
    out: list[int] = []
    stop_id = None
    first_token_s = 0.0
    with torch.inference_mode(), ExitStack() as interruptible:
        if static_capacity:  # (a static cache's length is an inference tensor: crop it in here)
            fits = state.cache is not None and state.capacity >= needed
        else:
            fits = state.cache is not None and not state.capacity and reuse > 0
        if not fits:
            state.reset(model, max(static_capacity, needed) if static_capacity else 0)
            reuse = 0
        elif len(state.ids) > reuse:
            assert state.cache is not None  # it fits
            state.cache.crop(reuse - len(state.ids))
            del state.ids[reuse:]
        interruptible.enter_context(_stop_inside_layers(model, cancelled))
        try:
            for begin in range(reuse, len(prompt), PREFILL_CHUNK):
                logits = _forward(model, prompt[begin : begin + PREFILL_CHUNK], state, device)
            if graphs:
                interruptible.close()  # a graph replay cannot stop midway: it is checked before
            verified: deque[int] = deque()
            """Draft tokens the model confirmed: in the cache already, emitted without a pass."""
            while True:
                assert logits is not None
                confirmed = bool(verified)
                if confirmed:
                    token = verified.popleft()
                elif forced and tokenizer is not None:
                    choices = tokenizer.ids_spelling_start(forced)
                    token = choices[_pick(logits[choices], temperature)]
                    spelled = tokenizer.decode_bytes([token])
                    forced = b"" if spelled.startswith(forced) else forced[len(spelled) :]
                else:
                    token = _pick(logits, temperature)
                if not out:
                    first_token_s = time.perf_counter() - start
                if token in stop_ids:
                    stop_id = token
                    break
                out.append(token)
                if len(out) >= max_new_tokens or time.perf_counter() > deadline:
                    break
                if should_stop(out):
                    break
                if confirmed:  # in the cache already: the next token comes from the queue or logits
                    continue
                if cancelled():
                    raise Cancelled(len(out), len(prompt) - reuse)
                useful = lookup and not forced and state.payoff.wanted()
                guess = draft(prompt + out) if useful else []
                began = time.perf_counter()
                if guess:
                    logits = _verify(model, token, guess, state, verified)
                    state.payoff.drafted(time.perf_counter() - began, len(verified))
                else:
                    logits = _forward(model, [token], state, device)
                    if lookup:
                        state.payoff.plain(time.perf_counter() - began)
        except _LayerCancelled:
            _roll_back(state)
            raise Cancelled(len(out), len(prompt) - reuse if out else 0) from None
    return Generated(
        ids=out,
        stop_id=stop_id,
        prompt_tokens=len(prompt),
        prefilled=len(prompt) - reuse,
        first_token_s=first_token_s,
        total_s=time.perf_counter() - start,
    )


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
