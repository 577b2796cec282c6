"""What a remote engine takes from a server is bounded: its time, its bytes, its numbers.

A server can be slow, stuck, broken or hostile: a handshake that never ends must not stop
completions for good (nor a later change of `engineUrl`, nor `shutdown`), an answer that never
ends must not grow this process, and a number it sends (slots, positions, counts, token ids) is
checked before it is used. The servers here are fakes written in the test: a loopback socket
server that answers raw HTTP, so the test decides every byte and when it goes out; a real
llama-server (../shared) is used where one is found.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from support.llama_server import LlamaServer
from support.lsp_session import error_message, inline_params, open_document, session, stats

from codellama_lsp.checkpoint.tokenizer import FimTokenizer, load_tokenizer
from codellama_lsp.engine.interface import Cancelled, EngineUnavailable, Limits
from codellama_lsp.engine.remote import base as remote
from codellama_lsp.engine.remote.base import RETRY_AFTER_S, RemoteEngine
from codellama_lsp.engine.remote.llama_cpp import LlamaCppEngine
from codellama_lsp.engine.remote.openai_compatible import OpenAIEngine
from codellama_lsp.settings import Settings

MiB = 2**20
FLOOD = 400 * MiB
"""What a fake sends of an answer that never ends, before it gives up (on today's code the
engine reads all of it)."""
GROWTH_LIMIT = 200 * MiB
URI = "file:///work/remote.py"
TEXT = "import math\n\n\ndef area(r):\n    return math.pi * r"
END = types.Position(4, len("    return math.pi * r"))
ANSWER = " ** 2"
KINDS = ["llama.cpp", "openai"]


# -- a fake server ------------------------------------------------------------------------------


@dataclass
class Asked:
    method: str
    path: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Answer = Callable[["FakeServer", Asked, socket.socket], None]


class FakeServer:
    """HTTP/1.1 on a loopback port, one request a connection, answered by `routes[path]`."""

    def __init__(self, routes: dict[str, Answer]) -> None:
        self.routes = routes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.asked: list[Asked] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, path: str) -> int:
        return sum(asked.path == path for asked in self.asked)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                asked = read_request(connection)
                self.asked.append(asked)
                self.routes.get(asked.path, not_found)(self, asked, connection)
            except OSError:
                pass  # the engine left


def read_request(connection: socket.socket) -> Asked:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionResetError
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        body += connection.recv(65536)
    method, target, _ = request_line.split(" ")
    return Asked(method, target.split("?")[0], body)


def head(connection: socket.socket, content_type: str, *extra: str) -> None:
    """The status line and headers, with no length: the body ends when the connection does."""
    lines = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}", "Connection: close", *extra]
    connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def send_json(connection: socket.socket, value: Any, status: str = "200 OK") -> None:
    body = json.dumps(value).encode()
    connection.sendall(
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n".encode()
        + body
    )


def not_found(server: FakeServer, asked: Asked, connection: socket.socket) -> None:
    send_json(connection, {"error": {"message": "no such path"}}, "404 Not Found")


def answer_json(value: Any) -> Answer:
    return lambda server, asked, connection: send_json(connection, value)


def dribble(server: FakeServer, asked: Asked, connection: socket.socket) -> None:
    """Headers promising a body, then one byte a second: no read ever waits long."""
    connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
    )
    while not server.closed.wait(1.0):
        connection.sendall(b" ")


def flood(content_type: str, start: bytes, *extra: str) -> Answer:
    """`start`, then spaces without end (up to FLOOD bytes): a body, or a line, that never ends."""

    def answer(server: FakeServer, asked: Asked, connection: socket.socket) -> None:
        head(connection, content_type, *extra)
        connection.sendall(start)
        chunk = b" " * MiB
        for _ in range(FLOOD // MiB):
            if server.closed.is_set():
                return
            connection.sendall(chunk)

    return answer


def events(items: Iterable[Any]) -> Answer:
    """A server-sent event stream of these JSON values."""

    def answer(server: FakeServer, asked: Asked, connection: socket.socket) -> None:
        head(connection, "text/event-stream")
        for item in items:
            connection.sendall(b"data: " + json.dumps(item).encode() + b"\n\n")

    return answer


def tokenizing(tokenizer: FimTokenizer) -> dict[str, Answer]:
    """`/tokenize` and `/detokenize` as llama-server and vLLM answer them, for `tokenizer`."""

    def tokenize(server: FakeServer, asked: Asked, connection: socket.socket) -> None:
        body = asked.json()
        send_json(connection, {"tokens": tokenizer.encode(body.get("content", body.get("prompt")))})

    def detokenize(server: FakeServer, asked: Asked, connection: socket.socket) -> None:
        text = "".join(tokenizer.decode([i]) for i in asked.json()["tokens"])
        send_json(connection, {"content": text, "prompt": text})

    return {"/tokenize": tokenize, "/detokenize": detokenize}


PROPS = {"total_slots": 2, "default_generation_settings": {"n_ctx": 512}}
MODELS = {"data": [{"id": "tiny", "max_model_len": 512}]}


def llama_events(ids: list[int], prompt_n: Any = 1) -> list[dict[str, Any]]:
    """A llama-server `/completion` stream: one event a token, then the end at EOT."""
    final = {"tokens": [], "stop": True, "stop_type": "eos", "timings": {"prompt_n": prompt_n}}
    return [*({"tokens": [i], "stop": False} for i in ids), final]


def openai_events(ids: list[int], usage: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A vLLM `/v1/completions` stream with token ids, then the end at EOT."""
    tokens = [{"choices": [{"text": "", "token_ids": [i], "finish_reason": None}]} for i in ids]
    end = {"text": "", "token_ids": [], "finish_reason": "stop", "stop_reason": None}
    final: dict[str, Any] = {"choices": [end]}
    if usage is not None:
        final["usage"] = usage
    return [*tokens, final]


def fake(
    kind: str,
    tokenizer: FimTokenizer,
    *,
    handshake: Answer | None = None,
    stream: Answer | None = None,
) -> FakeServer:
    """A server of `kind` that serves `tokenizer`'s vocabulary; its handshake's first request
    and its stream answered as the test says."""
    if kind == "llama.cpp":
        first, path, stream_path = answer_json(PROPS), "/props", "/completion"
        answered = llama_events(tokenizer.encode_infilling(ANSWER))
    else:
        first, path, stream_path = answer_json(MODELS), "/v1/models", "/v1/completions"
        answered = openai_events(tokenizer.encode_infilling(ANSWER))
    routes = {
        **tokenizing(tokenizer),
        path: handshake or first,
        stream_path: stream or events(answered),
    }
    return FakeServer(routes)


@pytest.fixture
def servers() -> Iterator[Callable[..., FakeServer]]:
    started: list[FakeServer] = []

    def start(kind: str, tokenizer: FimTokenizer, **answers: Answer) -> FakeServer:
        server = fake(kind, tokenizer, **answers)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> FimTokenizer:
    return load_tokenizer(str(tiny_model_dir))


def engine_for(kind: str, url: str, tokenizer: FimTokenizer) -> RemoteEngine:
    engine_class = LlamaCppEngine if kind == "llama.cpp" else OpenAIEngine
    settings = Settings(model="tiny", engine=kind, engine_url=url)
    return engine_class(settings, tokenizer)


def limits(max_new_tokens: int = 16) -> Limits:
    return Limits(
        max_new_tokens=max_new_tokens,
        stop_ids=frozenset({6, 2}),
        temperature=0.0,
        deadline=time.perf_counter() + 600,
        should_stop=lambda ids: False,
        cancelled=lambda: False,
    )


PROMPT = [1, 3, 4, 5, 450, 393, 354, 328]


@contextmanager
def resident_growth() -> Iterator[Callable[[], int]]:
    """The most this process's resident memory grew while the block ran (sampled every 5 ms)."""
    process = psutil.Process()
    base = process.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak[0] - base
    finally:
        done.set()
        sampler.join()


def peak_resident(pid: int) -> int:
    """A process's peak resident memory so far (Linux's VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


async def until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


def errors(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages if m.type == types.MessageType.Error]


async def inline_text(client: LanguageClient) -> str:
    answer = await asyncio.wait_for(
        client.text_document_inline_completion_async(inline_params(URI, END)), 60
    )
    return answer.items[0].insert_text if answer.items else ""


def lsp_options(model: Path, url: str, **more: Any) -> dict[str, Any]:
    return {"model": str(model), "engine": "llama.cpp", "engineUrl": url, **more}


# -- the handshake has a deadline, and is interrupted -------------------------------------------


def raised_by(call: Callable[[], object], timeout_s: float) -> BaseException:
    """What `call` raised, run on a thread of its own, if it ends within `timeout_s` (a
    liveness bound: the calls here end at once, or never on the code that hung)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), "the call is still running"
    assert raised, "the call did not raise"
    return raised[0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_handshake_that_dribbles_ends_at_its_deadline(servers, tokenizer, kind, monkeypatch):
    """One byte a second never trips a per-read timeout: the deadline is for the whole."""
    monkeypatch.setattr(remote, "HANDSHAKE_TIMEOUT_S", 0.5, raising=False)
    server = servers(kind, tokenizer, handshake=dribble)
    engine = engine_for(kind, server.url, tokenizer)
    raised = raised_by(engine.connect, 10)
    assert isinstance(raised, EngineUnavailable)
    assert str(raised) == (
        f"the {engine.kind} server at {server.url} did not answer its handshake within 0.5 s"
    )
    engine.close()


@pytest.mark.parametrize("kind", KINDS)
def test_interrupt_ends_a_stuck_handshake_from_another_thread(servers, tokenizer, kind):
    server = servers(kind, tokenizer, handshake=dribble)
    engine = engine_for(kind, server.url, tokenizer)
    threading.Timer(0.5, engine.interrupt).start()
    assert isinstance(raised_by(engine.connect, 5), Cancelled)
    assert server.asked  # it was under way
    with pytest.raises(Cancelled):  # and every later call, at once: the engine is done
        engine.generate("d", PROMPT, limits())
    engine.close()


@pytest.fixture(params=["fake", "llama-server"])
def working(request, tiny_model_dir, tokenizer, servers, tmp_path) -> Iterator[tuple[str, str]]:
    """A server that answers, and its answer: a fake one (ANSWER), or the real llama-server with
    the same model ("": whatever the random weights say)."""
    if request.param == "fake":
        yield servers("llama.cpp", tokenizer).url, ANSWER
        return
    gguf = request.getfixturevalue("gguf_maker")(tiny_model_dir)
    server = LlamaServer(gguf, tmp_path / "server.log", "-c", "512")
    try:
        yield server.url, ""
    finally:
        server.stop()


async def test_a_stuck_handshake_is_one_message_and_the_next_url_answers(
    tiny_model_dir, tokenizer, servers, working
):
    """Stuck server A: one message, naming A and the cause. A completion then waits behind a
    second handshake with A; the change of `engineUrl` interrupts it (the completion is answered
    empty, without another message) and B loads and answers."""
    working_url, expected = working
    stuck = servers("llama.cpp", tokenizer, handshake=dribble)
    options = lsp_options(tiny_model_dir, stuck.url, maxNewTokens=8, tokenHealing=False)
    async with session(options, wait_ready=False) as client:
        message = await error_message(client, timeout_s=30)
        assert message == (
            f"codellama-lsp: the llama.cpp server at {stuck.url} did not answer its handshake "
            "within 10 s"
        )
        await asyncio.sleep(RETRY_AFTER_S)
        open_document(client, URI, TEXT)
        waiting = asyncio.ensure_future(
            client.text_document_inline_completion_async(inline_params(URI, END))
        )
        await until(lambda: stuck.count("/props") == 2)  # the worker is in A's handshake again
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"codellama": {"engineUrl": working_url}})
        )
        answered = await inline_text(client)
        if expected:
            assert answered == expected
        assert not (await asyncio.wait_for(waiting, 30)).items
        counted = await stats(client)
        assert working_url in counted["model"] and counted["completed"] == 1
        assert errors(client) == [message]


async def test_shutdown_and_exit_do_not_wait_for_a_stuck_handshake(
    tiny_model_dir, tokenizer, servers
):
    stuck = servers("llama.cpp", tokenizer, handshake=dribble)
    async with session(lsp_options(tiny_model_dir, stuck.url), wait_ready=False) as client:
        await until(lambda: stuck.count("/props") == 1)
        started = time.monotonic()
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
        assert client._server is not None
        assert await asyncio.wait_for(client._server.wait(), 30) == 0
        # A liveness bound, not a speed: it was 10 s (two joins of 5 s behind the stuck call).
        assert time.monotonic() - started < 4


# -- bodies and lines are bounded in size -------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_json_body_that_never_ends_is_refused_at_the_limit(servers, tokenizer, kind):
    server = servers(kind, tokenizer, handshake=flood("application/json", b"{"))
    engine = engine_for(kind, server.url, tokenizer)
    path = "/props" if kind == "llama.cpp" else "/v1/models"
    with resident_growth() as growth, pytest.raises(EngineUnavailable) as failed:
        engine.connect()
    assert growth() < GROWTH_LIMIT, f"grew {growth() / MiB:.0f} MiB"
    assert str(failed.value) == f"{engine.url}{path} answered more than 1 MiB"
    engine.close()


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """FLOOD bytes of JSON whitespace in a gzip stream of well under 1 MiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    spaces = b" " * (16 * MiB)
    parts = [packer.compress(b"{")]
    parts += [packer.compress(spaces) for _ in range(FLOOD // len(spaces))]
    return b"".join([*parts, packer.compress(b"}"), packer.flush()])


def test_a_gzip_bomb_is_not_unpacked(servers, tokenizer, gzip_bomb):
    """Bytes are counted as they come: an answer that unpacks to 400 MiB is not unpacked."""
    assert len(gzip_bomb) < MiB

    def bomb(server: FakeServer, asked: Asked, connection: socket.socket) -> None:
        headers = f"Content-Encoding: gzip\r\nContent-Length: {len(gzip_bomb)}"
        head(connection, "application/json", headers)
        connection.sendall(gzip_bomb)

    server = servers("llama.cpp", tokenizer, handshake=bomb)
    engine = engine_for("llama.cpp", server.url, tokenizer)
    with resident_growth() as growth, pytest.raises(EngineUnavailable) as failed:
        engine.connect()
    assert growth() < GROWTH_LIMIT, f"grew {growth() / MiB:.0f} MiB"
    assert str(failed.value) == (
        f"{engine.url}/props answered in gzip, not the identity encoding asked for"
    )
    assert server.asked[0].path == "/props"
    engine.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_streamed_line_that_never_ends_is_refused_at_the_limit(servers, tokenizer, kind):
    server = servers(kind, tokenizer, stream=flood("text/event-stream", b'data: {"tokens": ['))
    engine = engine_for(kind, server.url, tokenizer)
    engine.connect()
    path = "/completion" if kind == "llama.cpp" else "/v1/completions"
    with resident_growth() as growth, pytest.raises(EngineUnavailable) as failed:
        engine.generate("d", PROMPT, limits())
    assert growth() < GROWTH_LIMIT, f"grew {growth() / MiB:.0f} MiB"
    assert str(failed.value) == f"{engine.url}{path} streamed a line of more than 1 MiB"
    engine.close()


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's /proc")
async def test_over_lsp_a_line_that_never_ends_is_one_message_and_memory_stays_bounded(
    tiny_model_dir, tokenizer, servers
):
    server = servers(
        "llama.cpp", tokenizer, stream=flood("text/event-stream", b'data: {"tokens": [')
    )
    options = lsp_options(tiny_model_dir, server.url, timeBudgetMs=60_000)
    async with session(options) as client:
        assert client._server is not None
        before = peak_resident(client._server.pid)
        open_document(client, URI, TEXT)
        assert await inline_text(client) == ""
        grown = peak_resident(client._server.pid) - before
        assert grown < GROWTH_LIMIT, f"grew {grown / MiB:.0f} MiB"
        assert errors(client) == [
            f"codellama-lsp: {server.url}/completion streamed a line of more than 1 MiB"
        ]


# -- numbers a server sends are checked ---------------------------------------------------------

NONSENSE = [0, -1, 2 * 10**7, True, 1.5, "4", None]


@pytest.mark.parametrize("slots", NONSENSE)
def test_nonsense_slots_are_refused(servers, tokenizer, slots):
    props = {**PROPS, "total_slots": slots}
    server = servers("llama.cpp", tokenizer, handshake=answer_json(props))
    engine = engine_for("llama.cpp", server.url, tokenizer)
    with pytest.raises(EngineUnavailable, match=r"sent total_slots .*, not a whole number in 1\."):
        engine.connect()
    engine.close()


@pytest.mark.parametrize("n_ctx", [0, -512, 10**12, True, 512.0, "512", None])
def test_nonsense_positions_are_refused(servers, tokenizer, n_ctx):
    props = {**PROPS, "default_generation_settings": {"n_ctx": n_ctx}}
    server = servers("llama.cpp", tokenizer, handshake=answer_json(props))
    engine = engine_for("llama.cpp", server.url, tokenizer)
    with pytest.raises(EngineUnavailable, match=r"sent n_ctx .*, not a whole number in 1\."):
        engine.connect()
    engine.close()


@pytest.mark.parametrize("field", ["max_model_len", "n_ctx"])
@pytest.mark.parametrize("positions", [0, -5, 10**12, True, 4096.0, "4096"])
def test_nonsense_openai_positions_are_refused(servers, tokenizer, field, positions):
    said = {field: positions} if field == "max_model_len" else {"meta": {field: positions}}
    entry = {"id": "tiny", **said}
    server = servers("openai", tokenizer, handshake=answer_json({"data": [entry]}))
    engine = engine_for("openai", server.url, tokenizer)
    with pytest.raises(EngineUnavailable, match=rf"sent {field} .*, not a whole number in 1\."):
        engine.connect()
    engine.close()


def test_the_sane_numbers_are_taken(servers, tokenizer):
    server = servers("llama.cpp", tokenizer)
    engine = engine_for("llama.cpp", server.url, tokenizer)
    engine.connect()
    assert isinstance(engine, LlamaCppEngine)
    assert (engine.slots, engine.max_positions) == (2, 512)
    engine.close()


def test_a_slot_is_found_without_a_list_of_all_slots(servers, tokenizer):
    """A server's slot count costs nothing per slot (2x10^7 slots took 750 MB a document)."""
    engine = LlamaCppEngine(Settings(model="tiny", engine="llama.cpp"), tokenizer)
    engine.slots = 10**6
    tracemalloc.start()
    try:
        found = [engine.slot(f"doc{i}") for i in range(3)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(set(found)) == 3 and engine.slot("doc1") == found[1]
    assert peak < MiB, peak
    engine.close()


@pytest.mark.parametrize("prompt_n", [-3, len(PROMPT) + 1, 10**9, True, 2.0, "2"])
def test_nonsense_prompt_counts_are_refused_llama_cpp(servers, tokenizer, prompt_n):
    ids = tokenizer.encode_infilling(ANSWER)
    server = servers("llama.cpp", tokenizer, stream=events(llama_events(ids, prompt_n)))
    engine = engine_for("llama.cpp", server.url, tokenizer)
    engine.connect()
    with pytest.raises(EngineUnavailable, match=r"sent prompt_n .*, not a whole number in 0\."):
        engine.generate("d", PROMPT, limits())
    engine.close()


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"prompt_tokens": -1}, "prompt_tokens"),
        ({"prompt_tokens": 10**9}, "prompt_tokens"),
        ({"prompt_tokens": True}, "prompt_tokens"),
        ({"prompt_tokens": "8"}, "prompt_tokens"),
        ({"prompt_tokens": 8, "prompt_tokens_details": {"cached_tokens": 9}}, "cached_tokens"),
        ({"prompt_tokens": 8, "prompt_tokens_details": {"cached_tokens": -1}}, "cached_tokens"),
        ({"prompt_tokens": 8, "prompt_tokens_details": {"cached_tokens": 1.0}}, "cached_tokens"),
    ],
)
def test_nonsense_usage_is_refused_openai(servers, tokenizer, usage, field):
    ids = tokenizer.encode_infilling(ANSWER)
    server = servers("openai", tokenizer, stream=events(openai_events(ids, usage)))
    engine = engine_for("openai", server.url, tokenizer)
    engine.connect()
    with pytest.raises(EngineUnavailable, match=rf"sent {field} .*, not a whole number in 0\."):
        engine.generate("d", PROMPT, limits())
    engine.close()


@pytest.mark.parametrize("kind", KINDS)
def test_sane_counts_are_taken(servers, tokenizer, kind):
    ids = tokenizer.encode_infilling(ANSWER)
    answer = (
        events(llama_events(ids, 3))
        if kind == "llama.cpp"
        else events(
            openai_events(ids, {"prompt_tokens": 8, "prompt_tokens_details": {"cached_tokens": 5}})
        )
    )
    server = servers(kind, tokenizer, stream=answer)
    engine = engine_for(kind, server.url, tokenizer)
    engine.connect()
    generated = engine.generate("d", PROMPT, limits())
    assert (generated.ids, generated.stop_id, generated.prefilled) == (ids, 6, 3)
    engine.close()


async def test_over_lsp_nonsense_slots_are_one_message(tiny_model_dir, tokenizer, servers):
    props = {**PROPS, "total_slots": 2 * 10**7}
    server = servers("llama.cpp", tokenizer, handshake=answer_json(props))
    async with session(lsp_options(tiny_model_dir, server.url), wait_ready=False) as client:
        message = await error_message(client, timeout_s=30)
        assert message == (
            f"codellama-lsp: the llama.cpp server at {server.url} sent total_slots 20000000, "
            "not a whole number in 1..4096"
        )
        open_document(client, URI, TEXT)
        assert await inline_text(client) == ""
        assert errors(client) == [message]


# -- token ids outside the vocabulary -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [-1, 1000, 10**6, True, "5", 5.0])
def test_a_token_id_outside_the_vocabulary_is_a_faulty_server(servers, tokenizer, kind, bad):
    assert tokenizer.vocab_size == 1000
    ids = [*tokenizer.encode_infilling(" **"), bad]
    stream = events(llama_events(ids) if kind == "llama.cpp" else openai_events(ids))
    server = servers(kind, tokenizer, stream=stream)
    engine = engine_for(kind, server.url, tokenizer)
    engine.connect()
    with pytest.raises(EngineUnavailable) as failed:
        engine.generate("d", PROMPT, limits())
    assert str(failed.value) == (
        f"the {engine.kind} server at {engine.url} sent token id {bad!r}, outside the "
        "vocabulary of 1000"
    )
    engine.close()


def test_a_stop_reason_outside_the_vocabulary_is_a_faulty_server(servers, tokenizer):
    final = {"choices": [{"text": "", "finish_reason": "stop", "stop_reason": -7}]}
    server = servers("openai", tokenizer, stream=events([final]))
    engine = engine_for("openai", server.url, tokenizer)
    engine.connect()
    with pytest.raises(EngineUnavailable, match="sent token id -7, outside the vocabulary"):
        engine.generate("d", PROMPT, limits())
    engine.close()


async def test_over_lsp_a_token_id_outside_the_vocabulary_is_one_message(
    tiny_model_dir, tokenizer, servers
):
    """Today -1 was decoded as the vocabulary's last piece and shown as text."""
    ids = [*tokenizer.encode_infilling(" **"), -1]
    server = servers("llama.cpp", tokenizer, stream=events(llama_events(ids)))
    async with session(lsp_options(tiny_model_dir, server.url)) as client:
        open_document(client, URI, TEXT)
        assert await inline_text(client) == ""
        assert errors(client) == [
            f"codellama-lsp: the llama.cpp server at {server.url} sent token id -1, outside "
            "the vocabulary of 1000"
        ]
