"""The engine in-process: the KV cache changes speed, never the answer, and stays in its bounds."""

from __future__ import annotations

import dataclasses
import itertools
import sys
import sysconfig
import time
import tracemalloc
from pathlib import Path

import pytest
from support.completions import checks_per_chunk, complete_with, request, typing_trace
from support.model_factory import build_model, build_tokenizer

from codellama_lsp.checkpoint.tokenizer import load_tokenizer
from codellama_lsp.completion.prepare import fit_to_model
from codellama_lsp.completion.scheduler import Scheduler
from codellama_lsp.context import line_tokens
from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.engine.generation import CachedSequence, Cancelled
from codellama_lsp.engine.model import ModelLoadError, load_model
from codellama_lsp.engine.prompt_lookup import MAX_DRAFT
from codellama_lsp.settings import Settings


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(Settings(model=str(tiny_model_dir)))


@pytest.mark.parametrize("order", ["spm", "psm"])
def test_cached_generation_equals_uncached_over_a_typing_trace(loaded, order):
    counter = LineTokenCounter(loaded.tokenizer)
    cached = CachedSequence()
    prefilled = []
    for lines, line, column in typing_trace():
        fresh = complete_with(
            loaded, request(lines, line, column, order), CachedSequence(), counter, bool
        )
        reused = complete_with(loaded, request(lines, line, column, order), cached, counter, bool)
        assert reused.text == fresh.text
        assert fresh.prefilled == fresh.prompt_tokens
        prefilled.append(reused.prefilled)
    if order == "spm":  # the prompt ends with the prefix: a keystroke costs a few tokens
        assert sorted(prefilled)[len(prefilled) // 2] <= 3


def test_a_static_cache_gives_the_answers_of_a_dynamic_one(loaded):
    """The static cache a CUDA GPU uses (graphs aside, which need the GPU: test_gpu.py) crops
    and refills like the dynamic one: same answers, same prefill, allocated once."""
    static = dataclasses.replace(loaded, decode_graphs=True)
    counter = LineTokenCounter(loaded.tokenizer)
    dynamic_state, static_state = CachedSequence(), CachedSequence()
    caches = set()
    for lines, line, column in typing_trace(20):
        expected = complete_with(loaded, request(lines, line, column), dynamic_state, counter, bool)
        got = complete_with(static, request(lines, line, column), static_state, counter, bool)
        assert (got.text, got.prefilled) == (expected.text, expected.prefilled)
        caches.add(id(static_state.cache))
    assert type(static_state.cache).__name__ == "StaticCache" and len(caches) == 1
    assert static_state.capacity == 1024 + 6 + 1 + MAX_DRAFT


def test_a_caches_bytes_are_those_of_its_keys_and_values(loaded):
    """What the in-process engine weighs document caches by, dynamic and static alike."""
    counter = LineTokenCounter(loaded.tokenizer)
    lines, line, column = typing_trace()[10]
    assert CachedSequence().nbytes() == 0
    for model in (loaded, dataclasses.replace(loaded, decode_graphs=True)):
        state = CachedSequence()
        complete_with(model, request(lines, line, column), state, counter, bool)
        assert state.cache is not None
        held = sum(layer.keys.nbytes + layer.values.nbytes for layer in state.cache.layers)
        assert state.nbytes() == held > 0


def test_a_model_with_fewer_embeddings_than_token_ids_is_refused(tmp_path):
    folder = build_model(tmp_path, vocab_size=1000)
    build_tokenizer(folder, vocab_size=1100)
    with pytest.raises(ModelLoadError, match="1100 ids but the model only 1000"):
        load_model(Settings(model=str(folder)))


@pytest.mark.parametrize("where", ["first chunk", "second chunk", "decode"])
def test_a_cancelled_run_leaves_a_valid_cache(loaded, where):
    """Cancellation is checked before every decoder layer in prefill and before every decode
    step; wherever it lands, the cache holds exactly `state.ids` and the next run is right."""
    counter = LineTokenCounter(loaded.tokenizer)
    lines, line, column = typing_trace()[10]
    checks = itertools.count()
    expected = complete_with(
        loaded,
        request(lines, line, column),
        CachedSequence(),
        counter,
        lambda: next(checks) < 0,
    )
    total = next(checks)
    per_chunk = checks_per_chunk(loaded.model)
    stop_at = {"first chunk": 5, "second chunk": per_chunk + per_chunk // 2, "decode": total - 2}[
        where
    ]
    state = CachedSequence()
    calls = itertools.count()
    with pytest.raises(Cancelled):
        complete_with(
            loaded, request(lines, line, column), state, counter, lambda: next(calls) >= stop_at
        )
    assert state.cache is not None
    assert all(int(layer.get_seq_length()) == len(state.ids) for layer in state.cache.layers)
    if where == "decode":
        assert len(state.ids) > expected.prompt_tokens
    again = complete_with(loaded, request(lines, line, column), state, counter, bool)
    assert again.text == expected.text


def test_token_healing_completes_mid_word_as_at_the_word_boundary(loaded):
    """Typing the first letters of what the model suggests at a word boundary, then asking
    again mid-word, gives the rest of the same text, wherever the prompts differ only in the
    backed-off token (an unambiguous tokenization)."""
    tokenizer = loaded.tokenizer
    counter = LineTokenCounter(tokenizer)
    source = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    checked = 0
    for line in range(100, len(lines), 3):
        text = lines[line].rstrip("\n")
        column = text.find(" = ")
        if column < 0:
            continue
        column += 3
        boundary = complete_with(
            loaded, request(lines, line, column), CachedSequence(), counter, bool
        )
        word = boundary.text[:2]
        if len(word) < 2 or not word.isalnum():
            continue
        typed = list(lines)
        typed[line] = text[:column] + word + text[column:] + "\n"
        prefix_ids = tokenizer.encode(source[: source.index(lines[line])] + text[:column])
        typed_ids = tokenizer.encode(source[: source.index(lines[line])] + text[:column] + word)
        if typed_ids[:-1] != prefix_ids[:-1]:
            continue  # the typed letters changed earlier tokens: not an unambiguous case
        healed = complete_with(
            loaded, request(typed, line, column + 2), CachedSequence(), counter, bool
        )
        assert word + healed.text == boundary.text[: len(word + healed.text)]
        assert len(healed.text) >= min(len(boundary.text) - 2, 1)
        checked += 1
    assert checked >= 10, checked


def test_the_time_budget_stops_generation(loaded):
    from codellama_lsp.engine.generation import generate

    prompt = loaded.tokenizer.encode("def f(x):\n    return")
    common = {
        "max_new_tokens": 50,
        "stop_ids": frozenset(),
        "temperature": 0.0,
        "should_stop": lambda ids: False,
        "cancelled": lambda: False,
    }
    unbounded = generate(loaded.model, prompt, CachedSequence(), **common)
    bounded = generate(loaded.model, prompt, CachedSequence(), deadline=0.0, **common)
    assert len(unbounded.ids) == 50
    assert bounded.ids == unbounded.ids[:1] and bounded.stop_id is None


def test_the_stop_id_the_model_emitted_is_reported(loaded):
    """The caller tells an ended middle (<EOT>, </s>) from a stray control id by this."""
    from codellama_lsp.engine.generation import generate

    prompt = loaded.tokenizer.encode("def f(x):\n    return")
    common = {
        "max_new_tokens": 5,
        "temperature": 0.0,
        "should_stop": lambda ids: False,
        "cancelled": lambda: False,
    }
    free = generate(loaded.model, prompt, CachedSequence(), stop_ids=frozenset(), **common)
    third = free.ids[2]
    stopped = generate(
        loaded.model, prompt, CachedSequence(), stop_ids=frozenset({third}), **common
    )
    assert stopped.stop_id == third and stopped.ids == free.ids[: free.ids.index(third)]


def test_the_window_leaves_room_for_the_answer_in_the_models_positions():
    lines, line, column = typing_trace()[0]
    asked = request(lines, line, column)  # contextTokens 1024, maxNewTokens 6
    assert fit_to_model(asked, 4096) is asked
    assert fit_to_model(asked, 512).context_tokens == 512 - 6 - 1
    # maxNewTokens that leaves no room for a prompt is cut to what does.
    cut = fit_to_model(asked, 20)
    assert (cut.max_new_tokens, cut.context_tokens) == (20 - 16 - 1, 16)
    with pytest.raises(ValueError, match="no room"):
        fit_to_model(asked, 17)


def test_the_line_token_memo_is_bounded_by_bytes(monkeypatch):
    """One long line edited keystroke by keystroke adds its whole length to the memo each time."""
    monkeypatch.setattr(line_tokens, "LINE_COUNT_MEMO_BYTES", 2**20)
    counter = LineTokenCounter(load_tokenizer("tiny"))
    line = "total = compute(value) + " * 4000  # 100 KB
    tracemalloc.start()
    try:
        for keystroke in range(40):  # 4 MB of distinct lines
            assert counter(f"{line}{keystroke}") > 0
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counter.nbytes <= 2**20
    assert held < 2 * 2**20, held


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_thread_that_died_is_started_again_and_counted():
    """`_run` catches every Exception; only a BaseException can end it, as this one does."""
    worker = Scheduler(lambda event: None)
    try:
        worker._post(sys.exit)
        for _ in range(100):
            if not worker._thread.is_alive():
                break
            time.sleep(0.05)
        assert not worker._thread.is_alive()
        lines, line, column = typing_trace()[0]
        job = worker.submit("file:///t.py", request(lines, line, column), 0.0)
        assert job.future.result(10).status == "not-ready"  # no model: answered at once
        assert worker._thread.is_alive()
        assert worker.stats()["workerRestarts"] == 1
    finally:
        worker.stop()
