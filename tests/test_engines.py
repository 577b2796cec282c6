"""The remote engines against a real llama-server: the same answers as in-process, cancellation
that reaches the server, faults answered with one message, and several editors on one server.

The server and `make-gguf` are in ../shared/llama.cpp (development and CI only): the tests skip,
saying so, where they are absent.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types
from support.completions import request as build_request
from support.completions import typing_trace
from support.llama_server import LlamaServer, free_port
from support.lsp_session import inline_params, open_document, ready, session, stats
from support.model_factory import build_model

from codellama_lsp.checkpoint.tokenizer import load_tokenizer
from codellama_lsp.completion.infill import complete
from codellama_lsp.completion.request import InfillRequest
from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.engine.in_process import InProcessEngine
from codellama_lsp.engine.interface import Cancelled, EngineUnavailable, Limits
from codellama_lsp.engine.model import load_model
from codellama_lsp.engine.remote.base import RETRY_AFTER_S
from codellama_lsp.engine.remote.llama_cpp import LlamaCppEngine
from codellama_lsp.engine.remote.openai_compatible import OpenAIEngine
from codellama_lsp.settings import Settings

SLOTS = 4
SLOT_POSITIONS = 512  # the tiny model's own


@pytest.fixture(scope="session")
def tiny_gguf(gguf_maker) -> Path:
    return gguf_maker(Path(__file__).resolve().parents[1] / "codellama_lsp" / "models" / "tiny")


@pytest.fixture(scope="session")
def llama_server(tiny_gguf, tmp_path_factory) -> Iterator[LlamaServer]:
    """The shipped tiny model on one llama-server with four slots, shared by the tests."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    server = LlamaServer(tiny_gguf, log, "-c", str(SLOTS * SLOT_POSITIONS), "-np", str(SLOTS))
    yield server
    server.stop()


@pytest.fixture
def own_server(tiny_gguf, tmp_path):
    """A llama-server of the test's own, for the faults that stop or change one."""
    started: list[LlamaServer] = []

    def start(*args: str, port: int | None = None) -> LlamaServer:
        server = LlamaServer(tiny_gguf, tmp_path / f"server{len(started)}.log", *args, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


@pytest.fixture(scope="module")
def in_process():
    loaded = load_model(Settings(model="tiny", device="cpu", dtype="float32"))
    return InProcessEngine(loaded, cache_documents=8, cache_bytes=2**30)


def remote(kind: str, url: str, tokenizer, **settings):
    engine_class = LlamaCppEngine if kind == "llama.cpp" else OpenAIEngine
    return engine_class(Settings(model="tiny", engine=kind, engine_url=url, **settings), tokenizer)


def request(lines, line, column, order="spm", max_new_tokens=24) -> InfillRequest:
    return build_request(
        lines,
        line,
        column,
        order,
        context_tokens=400,
        max_new_tokens=max_new_tokens,
        token_healing=False,
        time_budget_ms=600_000,  # a loaded machine must not cut the in-process answer short
    )


def limits(max_new_tokens: int, **overrides) -> Limits:
    fields = {
        "max_new_tokens": max_new_tokens,
        "stop_ids": frozenset({6, 2}),
        "temperature": 0.0,
        "deadline": time.perf_counter() + 600,
        "should_stop": lambda ids: False,
        "cancelled": lambda: False,
        **overrides,
    }
    return Limits(**fields)


PROMPT = [1, 3, 4, 5, 450, 393, 354, 328]  # <s> <PRE> <SUF> <MID> " def hello"


# -- the same answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["spm", "psm"])
def test_greedy_answers_are_the_same_in_process_and_through_each_engine(
    llama_server, own_server, in_process, tokenizer, order
):
    """Over a typing trace, each keystroke reusing the document's cache, in-process as on the
    server. The OpenAI-compatible API cannot pin a slot: it gets a server with one, so that its
    cache holds the last keystroke's prompt (llama.cpp's arithmetic depends a little on how a
    prompt is split between cache and batch, enough to flip a near tie of the tiny model)."""
    counter = LineTokenCounter(tokenizer)
    engines = {
        "llama.cpp": remote("llama.cpp", llama_server.url, tokenizer),
        "openai": remote("openai", own_server("-c", str(SLOT_POSITIONS)).url + "/v1", tokenizer),
    }
    for engine in engines.values():
        engine.connect()
    answers = 0
    for lines, line, column in typing_trace(6):
        asked = request(lines, line, column, order)
        expected = complete(in_process, f"same-{order}", asked, counter, bool)
        for name, engine in engines.items():
            got = complete(engine, f"same-{order}-{name}", asked, counter, bool)
            assert got.text == expected.text, (name, column)
        answers += bool(expected.text)
    assert answers >= 3
    for engine in engines.values():
        engine.close()


def test_a_continuation_through_a_server_shows_early_and_keeps_the_whole_middle(
    llama_server, tokenizer
):
    """Shown at the early stop, generated on to the bound: the engine only yields ids, so
    continuing works through llama.cpp as in-process (tests/test_continuation.py)."""
    counter = LineTokenCounter(tokenizer)
    engine = remote("llama.cpp", llama_server.url, tokenizer)
    engine.connect()
    lines = ["def area(r):\n", "    total = compute()\n", "    return total\n"]
    shown: list = []
    kept = complete(
        engine, "continued", request(lines, 1, 20, max_new_tokens=64), counter, bool, shown.append
    )
    engine.close()
    assert shown and shown[0].text and shown[0].generated < kept.generated == 64
    assert kept.text.startswith(shown[0].text) and len(kept.text) > len(shown[0].text)


def test_a_document_keeps_its_slot_and_only_new_tokens_are_evaluated(llama_server, tokenizer):
    engine = remote("llama.cpp", llama_server.url, tokenizer)
    engine.connect()
    counter = LineTokenCounter(tokenizer)
    prefilled = [
        complete(engine, "kept", request(lines, line, column), counter, bool).prefilled
        for lines, line, column in typing_trace(8)
    ]
    # The first prompt may share a prefix with what the slot held before (cache_prompt).
    assert max(prefilled[1:]) <= 3, prefilled
    assert engine.slot("kept") == engine.slot("kept") != engine.slot("another")
    engine.close()


def test_every_sampling_field_is_sent(llama_server, tokenizer):
    """The server's defaults are not greedy: what the slot ran with is what was sent."""
    engine = remote("llama.cpp", llama_server.url, tokenizer)
    engine.connect()
    engine.generate("fields", PROMPT, limits(3))
    slot = engine.slot("fields")
    params = next(s for s in llama_server.slots() if s["id"] == slot)["params"]
    assert (params["temperature"], params["top_k"], params["top_p"], params["min_p"]) == (
        0.0,
        0,
        1.0,
        0.0,
    )
    assert (params["repeat_last_n"], params["n_predict"]) == (0, 3)
    engine.close()


# -- stopping -------------------------------------------------------------------------------


def released_tokens(server: LlamaServer, slot: int) -> int:
    """The tokens the slot held when the server last stopped processing on it (its log)."""
    pattern = re.compile(rf"release: id +{slot} \|.*n_tokens = (\d+)")
    found = pattern.findall(server.log.read_text(errors="replace"))
    return int(found[-1])


def wait_idle(server: LlamaServer, slot: int) -> None:
    for _ in range(500):
        if not next(s for s in server.slots() if s["id"] == slot)["is_processing"]:
            return
        time.sleep(0.01)
    raise AssertionError("the slot is still processing")


@pytest.mark.parametrize("how", ["cancelled", "early stop"])
@pytest.mark.parametrize("kind", ["llama.cpp", "openai"])
def test_stopping_closes_the_stream_and_the_server_stops_generating(
    llama_server, tokenizer, how, kind
):
    url = llama_server.url + ("/v1" if kind == "openai" else "")
    engine = remote(kind, url, tokenizer)
    engine.connect()
    cancels_before = llama_server.log.read_text(errors="replace").count("cancel task")
    seen: list[int] = []
    stop = lambda: len(seen) >= 3  # noqa: E731

    def should_stop(ids: list[int]) -> bool:
        seen[:] = ids
        return how == "early stop" and stop()

    asked = limits(
        400,
        stop_ids=frozenset(),
        should_stop=should_stop,
        cancelled=(lambda: stop()) if how == "cancelled" else (lambda: False),
    )
    if how == "cancelled":
        with pytest.raises(Cancelled):
            engine.generate(f"stop-{kind}-{how}", PROMPT, asked)
    else:
        assert len(engine.generate(f"stop-{kind}-{how}", PROMPT, asked).ids) == 3
    busy = [s["id"] for s in llama_server.slots() if s["is_processing"]]
    for slot in busy:
        wait_idle(llama_server, slot)
    log = llama_server.log.read_text(errors="replace")
    assert log.count("cancel task") > cancels_before
    if kind == "llama.cpp":  # far fewer than the 400 asked for were generated
        assert released_tokens(llama_server, engine.slot(f"stop-{kind}-{how}")) < 200
    engine.close()


# -- faults ---------------------------------------------------------------------------------


def test_a_server_that_is_not_running_is_tried_again_and_found(own_server, tokenizer):
    port = free_port()
    engine = remote("llama.cpp", f"http://127.0.0.1:{port}", tokenizer)
    with pytest.raises(EngineUnavailable, match="cannot reach"):
        engine.connect()
    with pytest.raises(EngineUnavailable, match="cannot reach"):  # at once, without trying
        engine.generate("d", PROMPT, limits(3))
    own_server(port=port)
    time.sleep(RETRY_AFTER_S)
    assert len(engine.generate("d", PROMPT, limits(3)).ids) == 3
    engine.close()


def test_a_server_killed_mid_answer_is_reported(own_server, tokenizer):
    server = own_server()
    engine = remote("llama.cpp", server.url, tokenizer)
    engine.connect()

    def kill_at_second_token(ids: list[int]) -> bool:
        if len(ids) == 2:
            server.stop()
        return False

    with pytest.raises(EngineUnavailable, match=r"midway|closed the connection|cannot reach"):
        engine.generate(
            "d", PROMPT, limits(400, stop_ids=frozenset(), should_stop=kill_at_second_token)
        )
    engine.close()


def test_a_server_too_slow_for_the_time_budget_is_reported_and_found_again(own_server, tokenizer):
    server = own_server()
    engine = remote("llama.cpp", server.url, tokenizer)
    engine.connect()
    os.kill(server.process.pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        with pytest.raises(EngineUnavailable, match="did not answer within timeBudgetMs"):
            engine.generate("d", PROMPT, limits(3, deadline=time.perf_counter() + 0.3))
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    time.sleep(RETRY_AFTER_S)
    assert len(engine.generate("d", PROMPT, limits(3)).ids) == 3
    engine.close()


def test_an_error_status_is_reported_with_the_servers_reason(llama_server, tokenizer):
    engine = remote("llama.cpp", llama_server.url, tokenizer)
    engine.connect()
    too_long = PROMPT + [450] * SLOT_POSITIONS
    with pytest.raises(EngineUnavailable, match=r"answered 400: .+"):
        engine.generate("d", too_long, limits(3))
    engine.close()


def test_an_unknown_served_model_is_reported(llama_server, tokenizer):
    engine = remote("openai", llama_server.url, tokenizer, engine_model="no-such-model")
    with pytest.raises(EngineUnavailable, match=r"serves no model 'no-such-model'.*engineModel"):
        engine.connect()
    engine.close()


def test_the_api_key_is_sent_and_never_shown(own_server, tokenizer):
    server = own_server("--api-key", "sesame-1234")
    for kind, url in (("llama.cpp", server.url), ("openai", server.url + "/v1")):
        wrong = remote(kind, url, tokenizer, engine_api_key="wrong-5678")
        with pytest.raises(EngineUnavailable, match="refused the API key") as refused:
            wrong.connect()
        assert "wrong-5678" not in str(refused.value)
        wrong.close()
    for kind, url in (("llama.cpp", server.url), ("openai", server.url + "/v1")):
        engine = remote(kind, url, tokenizer, engine_api_key="sesame-1234")
        engine.connect()
        assert len(engine.generate("d", PROMPT, limits(3)).ids) == 3
        engine.close()


def test_a_server_with_another_vocabulary_is_refused(gguf_maker, tmp_path, tokenizer):
    other = gguf_maker(build_model(tmp_path / "other-model"))  # 1000 ids, trained elsewhere
    server = LlamaServer(other, tmp_path / "server.log", "-c", "512")
    try:
        for kind, url in (("llama.cpp", server.url), ("openai", server.url + "/v1")):
            engine = remote(kind, url, tokenizer)
            with pytest.raises(EngineUnavailable, match="does not use tiny's vocabulary"):
                engine.connect()
            engine.close()
    finally:
        server.stop()


# -- through the language server --------------------------------------------------------------

TEXT = "def fibonacci(n):\n    if n < 2:\n        return n\n    return \n\nprint(fibonacci(10))\n"
END = types.Position(3, 11)


async def inline_text(client, uri: str, position: types.Position) -> str:
    answer = await client.text_document_inline_completion_async(inline_params(uri, position))
    return answer.items[0].insert_text if answer.items else ""


def in_process_answer(in_process, tokenizer, text: str, position: types.Position) -> str:
    lines = text.splitlines(keepends=True)
    asked = request(lines, position.line, position.character, max_new_tokens=128)
    return complete(in_process, text, asked, LineTokenCounter(tokenizer), bool).text


@pytest.mark.parametrize("kind", ["llama.cpp", "openai"])
async def test_an_editor_gets_the_in_process_completion_through_a_server(
    llama_server, in_process, tokenizer, kind
):
    expected = in_process_answer(in_process, tokenizer, TEXT, END)
    options = {
        "model": "tiny",
        "engine": kind,
        "engineUrl": llama_server.url,
        "tokenHealing": False,
        "contextTokens": 400,
    }
    async with session(options) as client:
        open_document(client, "file:///fib.py", TEXT)
        assert await inline_text(client, "file:///fib.py", END) == expected
        counted = await stats(client)
        assert llama_server.url in counted["model"]
        assert counted["completed"] == 1


async def test_an_engine_that_is_down_is_one_message_then_found_again(own_server):
    port = free_port()
    options = {"model": "tiny", "engine": "llama.cpp", "engineUrl": f"http://127.0.0.1:{port}"}
    async with session(options, wait_ready=False) as client:
        await ready_or_failed(client)
        open_document(client, "file:///fib.py", TEXT)
        for _ in range(3):
            assert await inline_text(client, "file:///fib.py", END) == ""
        errors = [m for m in client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1 and "cannot reach" in errors[0].message, errors
        own_server(port=port)
        await asyncio.sleep(RETRY_AFTER_S)
        assert await inline_text(client, "file:///fib.py", END) != ""
        assert len([m for m in client.messages if m.type == types.MessageType.Error]) == 1


async def test_an_invalid_engine_url_is_one_clear_message():
    options = {"model": "tiny", "engine": "llama.cpp", "engineUrl": "gpu-box:8000"}
    async with session(options, wait_ready=False) as client:
        await ready_or_failed(client)
        errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
        assert errors == [
            "codellama-lsp: engineUrl 'gpu-box:8000' is not an http:// or https:// URL"
        ]


async def ready_or_failed(client) -> None:
    for _ in range(600):
        if any(m.type == types.MessageType.Error for m in client.messages):
            return
        if (await stats(client))["model"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("neither ready nor failed")


async def test_several_editors_share_one_server(llama_server, in_process, tokenizer):
    """One language server per editor, all on one llama-server with four slots: each gets the
    completion of its own document."""
    texts = [TEXT.replace("fibonacci", name) for name in ("fib", "fibo", "golden")]
    expected = [in_process_answer(in_process, tokenizer, text, END) for text in texts]
    options = {
        "model": "tiny",
        "engine": "llama.cpp",
        "engineUrl": llama_server.url,
        "tokenHealing": False,
        "contextTokens": 400,
    }

    async def editor(text: str) -> list[str]:
        async with session(options) as client:
            await ready(client)
            open_document(client, "file:///f.py", text)
            end = types.Position(3, 11)
            return [await inline_text(client, "file:///f.py", end) for _ in range(2)]

    answers = await asyncio.gather(*(editor(text) for text in texts))
    assert answers == [[e, e] for e in expected]
