"""On a CUDA GPU: decode steps replay a CUDA graph over a static cache, and the answers stay those
of plain uncached generation. Skipped where torch sees no CUDA GPU (CI); run on a GPU machine with
`python -m pytest tests/test_gpu.py`."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from support.completions import checks_per_chunk, complete_with, request, typing_trace

from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.engine.generation import CachedSequence, Cancelled
from codellama_lsp.engine.model import load_model
from codellama_lsp.settings import Settings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(Settings(model=str(tiny_model_dir), device="cuda", dtype="float32"))


def test_decode_graphs_are_recorded_on_a_cuda_gpu(loaded):
    assert loaded.decode_graphs and "CUDA graphs" in loaded.description


@pytest.mark.parametrize("order", ["spm", "psm"])
def test_graph_replay_gives_the_answers_of_uncached_generation(loaded, order):
    eager = dataclasses.replace(loaded, decode_graphs=False)
    counter = LineTokenCounter(loaded.tokenizer)
    state = CachedSequence()
    for lines, line, column in typing_trace(20):
        fresh = complete_with(
            eager, request(lines, line, column, order), CachedSequence(), counter, bool
        )
        cached = complete_with(loaded, request(lines, line, column, order), state, counter, bool)
        assert cached.text == fresh.text
    assert state.graph is not None and type(state.cache).__name__ == "StaticCache"


def test_a_prefill_cancelled_midway_leaves_the_static_cache_valid(loaded):
    eager = dataclasses.replace(loaded, decode_graphs=False)
    counter = LineTokenCounter(loaded.tokenizer)
    lines, line, column = typing_trace()[10]
    expected = complete_with(eager, request(lines, line, column), CachedSequence(), counter, bool)
    state = CachedSequence()
    calls = itertools.count()
    per_chunk = checks_per_chunk(loaded.model)
    stop_at = per_chunk + per_chunk // 2  # the second prefill chunk, midway
    with pytest.raises(Cancelled):
        complete_with(
            loaded, request(lines, line, column), state, counter, lambda: next(calls) >= stop_at
        )
    assert state.cache is not None and state.ids
    assert all(int(layer.get_seq_length()) == len(state.ids) for layer in state.cache.layers)
    again = complete_with(loaded, request(lines, line, column), state, counter, bool)
    assert again.text == expected.text
