"""One decode step of a model on a CUDA GPU, recorded once as a CUDA graph and then replayed.

At batch size 1, eager transformers spends most of a 7B model's decode step launching kernels
from Python: the GPU idles between them. A graph launches the whole step at once. Replaying it
needs every tensor at a fixed address: the cache is a `StaticCache` (its keys, values and length
live in preallocated tensors, so appending and cropping change contents, never addresses) and the
input token is copied into a tensor the graph owns. One graph per document cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel, StaticCache

WARMUP_STEPS = 2
"""Eager steps before recording: cuBLAS and the allocator set themselves up outside the graph."""


class DecodeGraph:
    """`graph(token)` runs one token after what `cache` holds and returns its logits.

    The logits tensor is the graph's own and is overwritten by the next replay.
    """

    def __init__(self, model: PreTrainedModel, cache: StaticCache) -> None:
        self._input = torch.zeros((1, 1), dtype=torch.long, device=model.device)
        self._graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream(model.device)
        side.wait_stream(torch.cuda.current_stream(model.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                last_logits(model, cache, self._input)
                cache.crop(-1)  # the warm-up's keys stay behind, past the cache's length
        torch.cuda.current_stream(model.device).wait_stream(side)
        with torch.cuda.graph(self._graph):
            self._logits = last_logits(model, cache, self._input)

    def __call__(self, token: int) -> torch.Tensor:
        self._input.fill_(token)
        self._graph.replay()
        return self._logits


def last_logits(model: PreTrainedModel, cache: Cache, input_ids: torch.Tensor) -> torch.Tensor:
    """One forward pass of `input_ids` after what `cache` holds: the last position's logits."""
    output = model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
    logits: torch.Tensor = output.logits
    return logits[0, -1]


def graphs_work(model: PreTrainedModel) -> bool:
    """Whether this model's decode step records and replays right (quantized kernels may not)."""
    from transformers import StaticCache

    if model.device.type != "cuda":
        return False
    cache = StaticCache(config=model.config, max_cache_len=8)
    token = model.config.bos_token_id or 0
    tokens = torch.tensor([[token]], device=model.device)
    try:
        with torch.inference_mode():
            last_logits(model, cache, tokens)
            replayed = DecodeGraph(model, cache)(token).float()
            cache.crop(-1)
            eager = last_logits(model, cache, tokens).float()
            return bool(torch.allclose(replayed, eager, atol=1e-2, rtol=1e-2))
    except RuntimeError:
        return False
