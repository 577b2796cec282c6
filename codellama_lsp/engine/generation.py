"""The generation loop: explicit prefill and decode over an explicit, reusable KV cache.

A document's cache holds the keys and values of the last prompt and of what was generated after
it. The next prompt shares most of its tokens with that one (suffix-first prompts end with the
prefix the user is typing), so only the tokens after the common prefix are run through the model.
Cancellation is checked before every forward pass: during prefill between chunks, during decode
before every token.

On a CUDA GPU the cache is a preallocated `StaticCache` and every one-token forward pass replays
a CUDA graph (decode_graph.py); elsewhere it is a `DynamicCache` that grows with the sequence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .decode_graph import DecodeGraph

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel

    from ..tokenizer import FimTokenizer

PREFILL_CHUNK = 256


class Cancelled(Exception):
    """The request was cancelled or superseded; the cache stays valid for what it holds."""

    def __init__(self, generated: int) -> None:
        super().__init__(f"cancelled after {generated} generated tokens")
        self.generated = generated


@dataclass
class CachedSequence:
    """A document's KV cache and the token ids whose keys and values it holds."""

    cache: Cache | None = None
    ids: list[int] = field(default_factory=list)
    capacity: int = 0
    """Positions of a static cache; 0 for a dynamic one."""
    graph: DecodeGraph | None = None

    def reset(self, model: PreTrainedModel, capacity: int) -> None:
        from transformers import DynamicCache, StaticCache

        self.cache = (
            StaticCache(config=model.config, max_cache_len=capacity)
            if capacity
            else DynamicCache(config=model.config)
        )
        self.ids, self.capacity, self.graph = [], capacity, None

    def nbytes(self) -> int:
        if self.cache is None:
            return 0
        return sum(
            layer.keys.nbytes + layer.values.nbytes
            for layer in self.cache.layers
            if getattr(layer, "keys", None) is not None and layer.keys.numel()
        )


@dataclass
class Generated:
    ids: list[int]
    ended: bool
    """The model emitted a stop id itself (end of infill or end of sequence)."""
    prompt_tokens: int
    prefilled: int
    """Prompt tokens run through the model: the rest came from the cache."""
    first_token_s: float
    total_s: float


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
) -> Generated:
    """Greedy (or sampled) tokens after `prompt`; the first ones spell `forced` (token healing).

    With `static_capacity`, the cache is a static one of at least that many positions (the
    largest request expected, so it is allocated once per document) and decode steps replay a
    CUDA graph where the model is on a CUDA GPU.
    """
    start = time.perf_counter()
    device = model.device
    needed = len(prompt) + max_new_tokens
    # At least one prompt token always goes through the model: its logits choose the first token.
    reuse = min(common_prefix(state.ids, prompt), len(prompt) - 1)
    logits = None
    with torch.inference_mode():  # a static cache's length is an inference tensor
        if static_capacity:
            fits = state.cache is not None and state.capacity >= needed
        else:
            fits = state.cache is not None and not state.capacity and reuse > 0
        if not fits:
            state.reset(model, max(static_capacity, needed) if static_capacity else 0)
            reuse = 0
        elif len(state.ids) > reuse:
            state.cache.crop(reuse - len(state.ids))
            del state.ids[reuse:]
        for begin in range(reuse, len(prompt), PREFILL_CHUNK):
            if cancelled():
                raise Cancelled(0)
            chunk = prompt[begin : begin + PREFILL_CHUNK]
            logits = _forward(model, chunk, state, device)
        first_token_s = 0.0
        out: list[int] = []
        ended = False
        while True:
            assert logits is not None
            if forced and tokenizer is not None:
                choices = tokenizer.ids_spelling_start(forced)
                token = choices[_pick(logits[choices], temperature)]
                spelled = tokenizer.decode_bytes([token])
                forced = b"" if spelled.startswith(forced) else forced[len(spelled) :]
            else:
                token = _pick(logits, temperature)
            if not out:
                first_token_s = time.perf_counter() - start
            if token in stop_ids:
                ended = True
                break
            out.append(token)
            if len(out) >= max_new_tokens or time.perf_counter() > deadline or should_stop(out):
                break
            if cancelled():
                raise Cancelled(len(out))
            logits = _forward(model, [token], state, device)
    return Generated(
        ids=out,
        ended=ended,
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
            state.graph = DecodeGraph(model, state.cache)
        logits = state.graph(ids[0])
    else:
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        output = model(input_ids=input_ids, cache=state.cache, use_cache=True, logits_to_keep=1)
        logits = output.logits[0, -1]
    state.ids.extend(ids)
    return logits


def _pick(logits: torch.Tensor, temperature: float) -> int:
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1))
