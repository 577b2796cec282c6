"""Drive the real server as a subprocess over LSP (pytest-lsp's client), as an editor would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

READY_TIMEOUT_S = 120


def capabilities(encoding: str) -> types.ClientCapabilities:
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind(encoding)]
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities(),
            completion=types.CompletionClientCapabilities(
                completion_item=types.ClientCompletionItemOptions(
                    documentation_format=[types.MarkupKind.Markdown, types.MarkupKind.PlainText]
                )
            ),
        ),
    )


@asynccontextmanager
async def session(
    options: dict[str, Any] | None = None,
    *,
    encoding: str = "utf-16",
    wait_ready: bool = True,
    args: tuple[str, ...] = (),
) -> AsyncIterator[LanguageClient]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "codellama_lsp", *args], server_env=env
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    try:
        result = await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities(encoding), initialization_options=options or {}
            )
        )
        assert result.capabilities.position_encoding == encoding
        if wait_ready:
            await ready(client)
        yield client
    finally:
        server = client._server
        if server is not None and server.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.shutdown_session(), 30)
            if server.returncode is None:
                server.kill()
        await client.stop()


def plain(value: Any) -> Any:
    """pygls hands custom results over as namedtuples: back to dicts and lists."""
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


async def stats(client: LanguageClient) -> dict[str, Any]:
    return plain(await client.protocol.send_request_async("codellama/stats", {}))


async def ready(client: LanguageClient) -> None:
    """Until the model is loaded (the server answers early requests empty meanwhile)."""
    for _ in range(READY_TIMEOUT_S * 10):
        if (await stats(client))["model"]:
            return
        if any(m.type == types.MessageType.Error for m in client.messages):
            raise AssertionError(f"the server failed to load: {client.messages}")
        await asyncio.sleep(0.1)
    raise AssertionError("the model did not load")


def open_document(client: LanguageClient, uri: str, text: str, language_id: str = "python") -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language_id, version=1, text=text
            )
        )
    )


def change(
    client: LanguageClient,
    uri: str,
    version: int,
    start: types.Position,
    end: types.Position,
    text: str,
) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(range=types.Range(start, end), text=text)
            ],
        )
    )


def inline_params(
    uri: str, position: types.Position, automatic: bool = False
) -> types.InlineCompletionParams:
    kind = (
        types.InlineCompletionTriggerKind.Automatic
        if automatic
        else types.InlineCompletionTriggerKind.Invoked
    )
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=position,
        context=types.InlineCompletionContext(trigger_kind=kind),
    )


async def prompt_at(client: LanguageClient, uri: str, position: types.Position) -> Any:
    where = {"line": position.line, "character": position.character}
    return plain(
        await client.protocol.send_request_async(
            "codellama/prompt", {"textDocument": {"uri": uri}, "position": where}
        )
    )


def to_cursor(shown: dict[str, Any]) -> str:
    """A `codellama/prompt` reply's text and the bytes the completion must start with: with
    token healing the prompt stops short of the cursor by them, so this reads up to it."""
    return shown["text"] + shown["mustStartWith"]


def units(text: str, encoding: str) -> int:
    """The length of `text` in the encoding's code units."""
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-16":
        return len(text.encode("utf-16-le")) // 2
    return len(text)


async def error_message(client: LanguageClient, timeout_s: float = 60) -> str:
    for _ in range(int(timeout_s * 10)):
        errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
        if errors:
            return errors[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no Error message; got {client.messages}")


async def loaded(client: LanguageClient, timeout_s: float = 120) -> None:
    """Until a model is loaded (an earlier Error message does not stop the wait)."""
    for _ in range(int(timeout_s * 10)):
        if (await stats(client))["model"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the model did not load")
