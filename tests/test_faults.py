"""Faults the server must survive: broken model folders, real out-of-memory, a failing worker.

Each fault must be shown as an Error `window/showMessage` that names it, requests must still be
answered (empty), `codellama/stats` must work, and the server must keep serving: a good model
named later through `workspace/didChangeConfiguration` loads and completes.

Out of memory is real: the server runs under an address-space limit (RLIMIT_AS) a little above
what it needs with a model whose MLP is very wide, so a long prompt's activations cannot be
allocated while a short one's can. (On a CPU, torch reports that as `RuntimeError: ...
DefaultCPUAllocator: can't allocate memory`, not `torch.OutOfMemoryError`.)

These tests take the same time in CI and with `CODELLAMA_LSP_LONG=1`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient
from support.lsp_session import (
    capabilities,
    error_message,
    inline_params,
    loaded,
    open_document,
    prompt_at,
    ready,
    session,
    stats,
    to_cursor,
)
from support.model_factory import build_tokenizer

URI = "file:///work/faults.py"
TEXT = "import math\n\n\ndef area(r):\n    return math.pi * r"
END = types.Position(4, len("    return math.pi * r"))


def broken_copy(good: Path, folder: Path, fault: str) -> Path:
    if fault == "missing":
        return folder / "no-such-model"
    shutil.copytree(good, folder, dirs_exist_ok=True)
    weights = folder / "model.safetensors"
    if fault == "corrupt":
        weights.write_bytes(os.urandom(weights.stat().st_size))
    elif fault == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif fault == "invalid-config":
        (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": ', "utf-8")
    return folder


EXPECTED = {
    "missing": ("no-such-model", "no such folder"),
    "corrupt": ("corrupt-model/model.safetensors", "not a valid safetensors file"),
    "truncated": ("truncated-model/model.safetensors", "not a valid safetensors file"),
    "invalid-config": ("config.json", "not a valid json"),
}


@pytest.mark.parametrize("fault", list(EXPECTED))
async def test_a_broken_model_is_reported_and_a_good_one_loads_later(
    tiny_model_dir, tmp_path, fault
):
    model = broken_copy(tiny_model_dir, tmp_path / f"{fault}-model", fault)
    async with session({"model": str(model), "maxNewTokens": 4}, wait_ready=False) as client:
        message = await error_message(client)
        for needle in EXPECTED[fault]:
            assert needle in message.lower() or needle in message, (fault, message)
        assert message.count(str(model)) == 1, message  # the path is named once
        open_document(client, URI, TEXT)
        answer = await client.text_document_inline_completion_async(inline_params(URI, END))
        assert answer is not None and not answer.items
        listed = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI), position=END
            )
        )
        assert listed is not None and not listed.items
        counted = await stats(client)
        assert counted["model"] is None and counted["notReady"] == 2

        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"codellama": {"model": str(tiny_model_dir)}}
            )
        )
        await loaded(client)
        answer = await client.text_document_inline_completion_async(inline_params(URI, END))
        assert len(answer.items) == 1
        assert (await stats(client))["completed"] == 1


async def test_a_request_sent_while_a_broken_model_loads_is_answered_after_the_error(
    tiny_model_dir, tmp_path
):
    """The request waits for the load; when the load fails it is answered empty, once the
    error has been shown (and not before, as when early requests were answered at once)."""
    model = broken_copy(tiny_model_dir, tmp_path / "corrupt-model", "corrupt")
    async with session({"model": str(model)}, wait_ready=False) as client:
        open_document(client, URI, TEXT)
        waiting = client.text_document_inline_completion_async(inline_params(URI, END))
        await stats(client)
        assert client.messages == []  # the load had not failed yet when the request came
        answer = await waiting
        assert answer is not None and not answer.items
        [message] = client.messages
        assert message.type == types.MessageType.Error
        assert "not a valid safetensors file" in message.message
        assert (await stats(client))["notReady"] == 1


# -- model files that are not regular files --------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("kind", ["FIFO", "folder"])
async def test_weights_that_are_not_a_regular_file_are_refused(tiny_model_dir, tmp_path, kind):
    """A FIFO never ends: safetensors would block on it holding the GIL, freezing the server."""
    folder = tmp_path / "special-model"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    weights.unlink()
    os.mkfifo(weights) if kind == "FIFO" else weights.mkdir()
    async with session({"model": str(folder), "maxNewTokens": 4}, wait_ready=False) as client:
        message = await error_message(client)
        assert f"cannot load {weights}: it is a {kind}" in message, message
        counted = await asyncio.wait_for(stats(client), 30)
        assert counted["model"] is None
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
        assert client._server is not None
        assert await asyncio.wait_for(client._server.wait(), 30) == 0


# -- a failing worker -------------------------------------------------------------------------


async def test_a_cancelled_waiting_prompt_request_leaves_the_worker_serving(tiny_model_dir):
    """`codellama/prompt` cancelled while it waits behind a completion: when the worker reaches
    it, its future is cancelled already; answering it must not end the worker."""
    options = {"model": str(tiny_model_dir), "maxNewTokens": 2000, "debounceMs": 0}
    async with session(options) as client:
        open_document(client, URI, TEXT)
        protocol = client.protocol
        busy = protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(URI, END), msg_id="busy"
        )
        await asyncio.sleep(0.5)  # the worker is generating up to 2,000 tokens
        where = {"line": END.line, "character": END.character}
        waiting = protocol.send_request(
            "codellama/prompt",
            {"textDocument": {"uri": URI}, "position": where},
            msg_id="waiting-prompt",
        )
        protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="waiting-prompt"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(asyncio.wrap_future(waiting), 30)
        protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="busy"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(asyncio.wrap_future(busy), 30)

        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"codellama": {"maxNewTokens": 4}})
        )
        answer = await asyncio.wait_for(
            client.text_document_inline_completion_async(inline_params(URI, END)), 60
        )
        assert len(answer.items) == 1
        shown = await asyncio.wait_for(prompt_at(client, URI, END), 60)
        assert to_cursor(shown).endswith("return math.pi * r")
        counted = await stats(client)
        assert counted["completed"] == 1 and counted["workerRestarts"] == 0


async def test_an_exception_in_the_worker_is_shown_and_the_worker_goes_on(tmp_path, tiny_model_dir):
    """A model with 17 positions: not even the smallest prompt fits, the worker raises."""
    folder = build_tokenizer(tmp_path / "short-model")
    write_model(folder, max_position_embeddings=17)
    async with session({"model": str(folder), "maxNewTokens": 4}) as client:
        open_document(client, URI, TEXT * 4)
        last = (TEXT * 4).count("\n")
        answer = await client.text_document_inline_completion_async(
            inline_params(URI, types.Position(last, 0))
        )
        assert not answer.items
        message = await error_message(client)
        assert "completion failed" in message and "17 positions" in message, message
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"codellama": {"model": str(tiny_model_dir)}}
            )
        )
        await loaded(client)
        answer = await client.text_document_inline_completion_async(
            inline_params(URI, types.Position(last, 0))
        )
        assert len(answer.items) == 1
        counted = await stats(client)
        assert (counted["failed"], counted["completed"]) == (1, 1)


def write_model(folder: Path, **overrides: Any) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = {
        "vocab_size": 1000,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 4096,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        **overrides,
    }
    LlamaForCausalLM(LlamaConfig(**settings)).save_pretrained(folder, safe_serialization=True)
    return folder


# -- real out of memory -----------------------------------------------------------------------

WIDE = 1 << 18
"""The wide model's MLP width: a 256-token prefill chunk needs about 1 GB of activations, a
one-token step about 4 MB, and its weights are 25 MB."""
HEADROOM = 400 * 2**20
LIMITED = """
import resource, runpy, sys
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv[0] = "codellama_lsp"
runpy.run_module("codellama_lsp", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_tokenizer(tmp_path_factory.mktemp("wide-model"))
    return write_model(
        folder,
        hidden_size=8,
        intermediate_size=WIDE,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )


def vm_peak(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmPeak:"))
    return int(line.split()[1]) * 1024


async def limited_session(limit: int | None, model: Path) -> LanguageClient:
    command = [sys.executable, "-m", "codellama_lsp"]
    if limit is not None:
        command = [sys.executable, "-c", LIMITED, str(limit)]
    config = ClientServerConfig(
        server_command=command, server_env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities("utf-16"),
            initialization_options={"model": str(model), "maxNewTokens": 4, "device": "cpu"},
        )
    )
    await ready(client)
    return client


async def close(client: LanguageClient) -> None:
    server = client._server
    if server is not None and server.returncode is None:
        try:
            await asyncio.wait_for(client.shutdown_session(), 30)
        except Exception:
            server.kill()
    await client.stop()


SMALL = "x = "
LONG_TEXT = "".join(f"value_{i} = compute({i}, 'text {i}')\n" for i in range(300))


@pytest.fixture(scope="module")
def out_of_memory(wide_model_dir) -> dict[str, Any]:
    """What the server did when a long prompt ran out of memory, and after (run once)."""
    return asyncio.run(run_out_of_memory(wide_model_dir))


async def run_out_of_memory(wide_model_dir: Path) -> dict[str, Any]:
    # What the server needs with the model loaded and one short completion done ...
    client = await limited_session(None, wide_model_dir)
    try:
        open_document(client, URI, SMALL)
        answer = await client.text_document_inline_completion_async(
            inline_params(URI, types.Position(0, 4))
        )
        assert len(answer.items) == 1
        assert client._server is not None
        needed = vm_peak(client._server.pid)
    finally:
        await close(client)
    # ... and a little more: a short completion fits, a long prompt's prefill does not.
    client = await limited_session(needed + HEADROOM, wide_model_dir)
    try:
        record: dict[str, Any] = {"limit": needed + HEADROOM}
        open_document(client, URI, SMALL)
        record["before"] = await client.text_document_inline_completion_async(
            inline_params(URI, types.Position(0, 4))
        )
        big = "file:///work/big.py"
        open_document(client, big, LONG_TEXT)
        record["big"] = await asyncio.wait_for(
            client.text_document_inline_completion_async(
                inline_params(big, types.Position(300, 0))
            ),
            120,
        )
        record["message"] = await error_message(client)
        record["stats_after_failure"] = await stats(client)
        change_at = types.Position(0, 4)
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(change_at, change_at), text="1 + "
                    )
                ],
            )
        )
        record["after"] = await client.text_document_inline_completion_async(
            inline_params(URI, types.Position(0, 8))
        )
        record["stats"] = await stats(client)
        record["alive"] = client._server is not None and client._server.returncode is None
        record["messages"] = [m.message for m in client.messages]
        return record
    finally:
        await close(client)


def test_out_of_memory_is_survived(out_of_memory):
    record = out_of_memory
    assert len(record["before"].items) == 1  # a short completion fits under the limit
    assert not record["big"].items  # the long one is answered, empty
    assert "memory" in record["message"], record["message"]
    assert record["stats_after_failure"]["cachedDocuments"] == 0  # caches dropped
    assert len(record["after"].items) == 1  # and the next short one completes again
    counted = record["stats"]
    assert (counted["failed"], counted["completed"]) == (1, 2), json.dumps(counted)[:400]
    assert record["alive"]


def test_out_of_memory_on_a_cpu_is_called_out_of_memory(out_of_memory):
    message = out_of_memory["message"]
    assert "out of memory" in message and "contextTokens" in message, message


@pytest.mark.parametrize(
    ("error", "out_of_memory"),
    [
        (MemoryError(), True),
        (
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough "
                "memory: you tried to allocate 4096 bytes."
            ),
            True,
        ),
        (RuntimeError("shape '[2, 3]' is invalid for input of size 5"), False),
        (ValueError("can't allocate memory"), False),
    ],
)
def test_what_counts_as_out_of_memory(error, out_of_memory):
    import torch

    from codellama_lsp.engine.in_process import is_out_of_memory as _is_out_of_memory

    assert _is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert _is_out_of_memory(error) is out_of_memory
