"""The real server over LSP, with a tiny random-weight model that the tests build."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from support.lsp_session import (
    change,
    inline_params,
    open_document,
    prompt_at,
    session,
    stats,
    to_cursor,
    units,
)

URI = "file:///work/example.py"
LINE = "label = '😀 漢字 café'; total = compute("
TEXT = f"import math\n\n\ndef area(r):\n    {LINE}\n    return total\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
async def test_completion_ranges_in_every_encoding(tiny_model_dir, encoding):
    async with session(
        {"model": str(tiny_model_dir), "maxNewTokens": 8}, encoding=encoding
    ) as client:
        open_document(client, URI, TEXT)
        cursor = types.Position(line=4, character=units("    " + LINE, encoding))

        shown = await prompt_at(client, URI, cursor)
        assert to_cursor(shown).endswith(f"<MID> import math\n\n\ndef area(r):\n    {LINE}")

        inline = await client.text_document_inline_completion_async(inline_params(URI, cursor))
        assert inline is not None and len(inline.items) == 1
        item = inline.items[0]
        assert item.range == types.Range(cursor, cursor)
        assert isinstance(item.insert_text, str) and item.insert_text

        listed = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI), position=cursor
            )
        )
        assert isinstance(listed, types.CompletionList) and listed.is_incomplete
        edit = listed.items[0].text_edit
        assert isinstance(edit, types.TextEdit)
        # The edit covers the word before the cursor ("compute(" ends in "(": no word).
        assert edit.range == types.Range(cursor, cursor)
        assert edit.new_text == item.insert_text

        cursor_in_word = types.Position(
            line=4, character=units("    label = '😀 漢字 caf", encoding)
        )
        listed = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI), position=cursor_in_word
            )
        )
        edit = listed.items[0].text_edit
        word_start = types.Position(line=4, character=units("    label = '😀 漢字 ", encoding))
        assert edit.range == types.Range(word_start, cursor_in_word)
        assert edit.new_text.startswith("caf")


async def test_the_server_and_the_cli_give_the_same_completion(tiny_model_dir, tmp_path):
    source = tmp_path / "example.py"
    source.write_text(TEXT, encoding="utf-8")
    column = len("    " + LINE)
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "codellama_lsp",
            "complete",
            f"{source}:5:{column + 1}",
            "--model",
            str(tiny_model_dir),
            "--max-new-tokens",
            "8",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    async with session(
        {"model": str(tiny_model_dir), "maxNewTokens": 8}, encoding="utf-32"
    ) as client:
        open_document(client, URI, TEXT)
        cursor = types.Position(line=4, character=column)
        inline = await client.text_document_inline_completion_async(inline_params(URI, cursor))
        assert inline.items[0].insert_text + "\n" == printed.stdout
        progress = [report for reports in client.progress_reports.values() for report in reports]
        assert [type(p).__name__ for p in progress] == [
            "WorkDoneProgressBegin",
            "WorkDoneProgressEnd",
        ]


async def test_crlf_documents(tiny_model_dir):
    text = "def f(a, b):\r\n    total = a\r\n    \r\n    return total\r\n"
    async with session({"model": str(tiny_model_dir), "maxNewTokens": 24}) as client:
        open_document(client, URI, text)
        change(client, URI, 2, types.Position(2, 4), types.Position(2, 4), "total += b\r\n    ")
        cursor = types.Position(3, 4)
        shown = await prompt_at(client, URI, cursor)
        assert "\r" not in shown["text"]
        assert to_cursor(shown).endswith("<MID> def f(a, b):\n    total = a\n    total += b\n    ")
        inline = await client.text_document_inline_completion_async(inline_params(URI, cursor))
        for item in inline.items:
            assert "\n" not in item.insert_text.replace("\r\n", "")


async def test_a_burst_of_changes_runs_the_model_once(tiny_model_dir):
    async with session(
        {"model": str(tiny_model_dir), "maxNewTokens": 8, "debounceMs": 200}
    ) as client:
        open_document(client, URI, "x = ")
        requests = []
        for i in range(10):
            change(client, URI, i + 2, types.Position(0, 4 + i), types.Position(0, 4 + i), "a")
            cursor = types.Position(0, 5 + i)
            requests.append(
                client.text_document_inline_completion_async(
                    inline_params(URI, cursor, automatic=True)
                )
            )
        answers = await asyncio.gather(*requests)
        assert all(not answer.items for answer in answers[:-1])
        assert answers[-1].items
        counted = await stats(client)
        assert counted["completed"] == 1
        assert counted["superseded"] == 9
        assert counted["requests"] == 10


async def test_cancel_request_is_answered_request_cancelled(tiny_model_dir):
    options = {"model": str(tiny_model_dir), "maxNewTokens": 2000, "debounceMs": 0}
    async with session(options) as client:
        cursor = types.Position(line=5, character=0)
        protocol = client.protocol
        for attempt in range(2):  # once at once, once after the worker has started
            uri = f"file:///work/cancel{attempt}.py"
            open_document(client, uri, TEXT)
            msg_id = f"cancel-me-{attempt}"
            future = protocol.send_request(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, cursor), msg_id=msg_id
            )
            await asyncio.sleep(0.02 * attempt)
            protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
            with pytest.raises(JsonRpcRequestCancelled):
                await asyncio.wrap_future(future)
        for _ in range(100):  # the worker counts a job once it has stopped (within one token)
            counted = await stats(client)
            if counted["cancelled"] == 2:
                break
            await asyncio.sleep(0.05)
        assert counted["cancelled"] == 2 and counted["completed"] == 0
        # The worker is free again: the next request completes.
        options_now = {"codellama": {"maxNewTokens": 4}}
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings=options_now)
        )
        end_of_line = types.Position(line=4, character=units("    " + LINE, "utf-16"))
        answer = await client.text_document_inline_completion_async(
            inline_params("file:///work/cancel0.py", end_of_line)
        )
        assert answer.items


async def test_settings_change_at_run_time(tiny_model_dir):
    async with session({"model": str(tiny_model_dir), "maxNewTokens": 4}) as client:
        open_document(client, URI, TEXT)
        cursor = types.Position(line=5, character=4)
        spm = await prompt_at(client, URI, cursor)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"codellama": {"order": "psm"}})
        )
        psm = await prompt_at(client, URI, cursor)
        assert (spm["order"], psm["order"]) == ("spm", "psm")
        assert spm["ids"][:3] == [1, 3, 4] and psm["ids"][:2] == [1, 3] and psm["ids"][2] != 4
        assert psm["text"].startswith("<s> <PRE> import math")


async def test_invalid_settings_are_reported_and_defaults_used(tiny_model_dir):
    options = {"model": str(tiny_model_dir), "maxNewTokens": -1, "order": "sideways", "colour": 1}
    async with session(options) as client:
        texts = [message.message for message in client.messages]
        assert any("maxNewTokens" in t and "between 1 and 4096" in t for t in texts), texts
        assert any("order" in t and "sideways" in t for t in texts), texts
        assert any("unknown setting 'colour'" in t for t in texts), texts
        open_document(client, URI, TEXT)
        shown = await prompt_at(client, URI, types.Position(5, 4))
        assert shown["order"] == "spm"


async def test_a_broken_model_path_is_shown_and_the_server_keeps_serving(tmp_path):
    missing = tmp_path / "no-such-model"
    async with session({"model": str(missing)}, wait_ready=False) as client:
        for _ in range(100):
            if client.messages:
                break
            await asyncio.sleep(0.1)
        assert client.messages, "no message about the model"
        message = client.messages[0]
        assert message.type == types.MessageType.Error
        assert "no-such-model" in message.message and "no such folder" in message.message
        open_document(client, URI, TEXT)
        answer = await client.text_document_inline_completion_async(
            inline_params(URI, types.Position(5, 4))
        )
        assert not answer.items
        assert (await stats(client))["notReady"] == 1


async def test_a_request_sent_while_the_model_loads_waits_for_it(tiny_model_dir):
    """Neovim 0.12 asks once as insert mode starts, then only when the cursor moves: the
    request sent while the model loads (torch and the weights) must get a real completion."""
    async with session(
        {"model": str(tiny_model_dir), "maxNewTokens": 8}, wait_ready=False
    ) as client:
        open_document(client, URI, TEXT)
        other = "file:///work/other.py"
        open_document(client, other, TEXT)
        end_of_line = types.Position(4, units("    " + LINE, "utf-16"))
        older = client.text_document_inline_completion_async(
            inline_params(URI, types.Position(5, 4), automatic=True)
        )
        newer = client.text_document_inline_completion_async(
            inline_params(URI, end_of_line, automatic=True)
        )
        elsewhere = client.text_document_inline_completion_async(inline_params(other, end_of_line))
        # Answered after the requests were read: the model was still loading when they came.
        assert (await stats(client))["model"] is None
        superseded, answer, other_answer = await asyncio.gather(older, newer, elsewhere)
        assert not superseded.items  # a newer request for the same document took its place
        assert len(answer.items) == 1 and answer.items[0].insert_text
        assert answer.items[0].range == types.Range(end_of_line, end_of_line)
        assert other_answer.items == answer.items  # each document's newest request is kept
        counted = await stats(client)
        assert counted["notReady"] == 0 and counted["completed"] == 2


async def test_a_request_waiting_for_the_model_can_be_cancelled(tiny_model_dir):
    async with session(
        {"model": str(tiny_model_dir), "maxNewTokens": 8}, wait_ready=False
    ) as client:
        open_document(client, URI, TEXT)
        cursor = types.Position(5, 4)
        protocol = client.protocol
        future = protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(URI, cursor), msg_id="waiting"
        )
        assert (await stats(client))["model"] is None
        protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="waiting"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wrap_future(future)
        answer = await client.text_document_inline_completion_async(inline_params(URI, cursor))
        assert answer.items
        counted = await stats(client)
        assert counted["requests"] == 1 and counted["completed"] == 1  # the cancelled never ran


@pytest.mark.parametrize(("shutdown", "code"), [(True, 0), (False, 1)])
async def test_exit_codes(tiny_model_dir, shutdown, code):
    async with session({"model": str(tiny_model_dir)}, wait_ready=False) as client:
        if shutdown:
            await client.shutdown_async(None)
        client.exit(None)
        server = client._server
        assert server is not None
        assert await asyncio.wait_for(server.wait(), 30) == code


@pytest.mark.parametrize("send_exit", [False, True])
def test_a_client_that_closes_the_pipe_after_shutdown_ends_the_server_quietly(
    tiny_model_dir, tmp_path, send_exit
):
    """Neovim on a quick quit: `shutdown` (and `exit`), then its ends of the pipes closed before
    it reads the reply. A normal end: exit code 0 (shutdown came), no traceback on stderr."""
    options = {"model": str(tiny_model_dir)}
    initialize = {"capabilities": {}, "initializationOptions": options}
    later = [
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
    ]
    if send_exit:
        later.append({"jsonrpc": "2.0", "method": "exit"})
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as errors:
        server = subprocess.Popen(
            [sys.executable, "-m", "codellama_lsp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert server.stdin is not None and server.stdout is not None
        send = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize}
        server.stdin.write(frame(send))
        server.stdin.flush()
        while server.stdout.readline() != b"\r\n":  # the reply's header: it was written
            pass
        server.stdout.close()  # the editor has gone: the shutdown reply finds the pipe closed
        server.stdin.write(b"".join(map(frame, later)))
        server.stdin.close()
        assert server.wait(60) == 0
    logged = stderr.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in logged and "BrokenPipe" not in logged, logged


def frame(message: dict[str, object]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def test_the_selected_popup_item_becomes_part_of_the_prefix(tiny_model_dir):
    async with session({"model": str(tiny_model_dir), "maxNewTokens": 6}) as client:
        open_document(client, URI, "def f(total):\n    name = caf")
        typed = "file:///work/typed.py"
        open_document(client, typed, "def f(total):\n    name = café_total")
        start, cursor = types.Position(1, 11), types.Position(1, 14)
        params = inline_params(URI, cursor)
        params.context.selected_completion_info = types.SelectedCompletionInfo(
            range=types.Range(start, cursor), text="café_total"
        )
        selected = await client.text_document_inline_completion_async(params)
        plain = await client.text_document_inline_completion_async(
            inline_params(typed, types.Position(1, 21))
        )
        assert plain.items and selected.items
        assert selected.items[0].range == types.Range(start, cursor)
        assert selected.items[0].insert_text == "café_total" + plain.items[0].insert_text


async def test_trigger_characters_and_languages(tiny_model_dir):
    options = {"model": str(tiny_model_dir), "maxNewTokens": 4, "languages": {"markdown": False}}
    async with session(options) as client:
        open_document(client, URI, TEXT)
        open_document(client, "file:///work/notes.md", "# Notes\n\nSome text", "markdown")
        cursor = types.Position(line=4, character=units("    " + LINE, "utf-16"))

        def completion(uri, position, character):
            return client.text_document_completion_async(
                types.CompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=position,
                    context=types.CompletionContext(
                        trigger_kind=types.CompletionTriggerKind.TriggerCharacter,
                        trigger_character=character,
                    ),
                )
            )

        assert not (await completion(URI, cursor, "x")).items
        assert not (await completion("file:///work/notes.md", types.Position(2, 9), ".")).items
        assert (await stats(client))["requests"] == 0
        assert (await completion(URI, cursor, "(")).items
        assert (await stats(client))["requests"] == 1


async def test_typed_through_reuse(tiny_model_dir):
    async with session({"model": str(tiny_model_dir), "maxNewTokens": 8}) as client:
        open_document(client, URI, TEXT)
        column = units("    " + LINE, "utf-16")
        first = await client.text_document_inline_completion_async(
            inline_params(URI, types.Position(4, column))
        )
        suggestion = first.items[0].insert_text
        assert len(suggestion) >= 2
        change(client, URI, 2, types.Position(4, column), types.Position(4, column), suggestion[0])
        column += units(suggestion[0], "utf-16")
        typed = await client.text_document_inline_completion_async(
            inline_params(URI, types.Position(4, column), automatic=True)
        )
        assert typed.items[0].insert_text == suggestion[1:]
        counted = await stats(client)
        assert (counted["reused"], counted["requests"]) == (1, 1)

        other = "#" if suggestion[1] != "#" else "@"
        change(client, URI, 3, types.Position(4, column), types.Position(4, column), other)
        await client.text_document_inline_completion_async(
            inline_params(URI, types.Position(4, column + 1))
        )
        counted = await stats(client)
        assert (counted["reused"], counted["requests"]) == (1, 2)


async def test_a_closed_document_keeps_nothing_not_even_an_answer_that_came_later(
    tiny_model_dir,
):
    """A completion still waiting out its debounce when its document closes: no suggestion to
    serve the reopened document from, and no KV cache of the closed one."""
    options = {"model": str(tiny_model_dir), "maxNewTokens": 8, "debounceMs": 400}
    async with session(options) as client:
        cursor = types.Position(4, units("    " + LINE, "utf-16"))
        far = "\n" * 80  # the edit below is out of reach of the suggestion's context
        open_document(client, URI, f"{TEXT}{far}changed = False\n")
        late = asyncio.ensure_future(
            client.text_document_inline_completion_async(inline_params(URI, cursor, automatic=True))
        )
        await asyncio.sleep(0.15)  # submitted: it waits out its 400 ms debounce
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI))
        )
        assert not (await late).items
        counted = await stats(client)
        assert counted["cachedDocuments"] == 0

        open_document(client, URI, f"{TEXT}{far}changed = True\n")
        await client.text_document_inline_completion_async(inline_params(URI, cursor))
        counted = await stats(client)
        assert counted["reused"] == 0 and counted["completed"] == 1
        assert counted["cachedDocuments"] == 1

        client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI))
        )
        for _ in range(100):  # the worker drops the cache between jobs
            if (await stats(client))["cachedDocuments"] == 0:
                break
            await asyncio.sleep(0.05)
        assert (await stats(client))["cachedDocuments"] == 0


async def test_completion_documentation_uses_one_line_ending():
    """CRLF documents: the edit keeps "\\r\\n", the markdown documentation has "\\n" only
    (Neovim shows each "\\r" as ^M). The shipped model completes a method body over lines."""
    text = "class Point:\r\n    def __init__(self, x, y):\r\n"
    async with session({"model": "tiny", "maxNewTokens": 24}) as client:
        open_document(client, URI, text)
        listed = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(2, 0)
            )
        )
        (item,) = listed.items
        assert "\r\n" in item.text_edit.new_text
        unix = item.text_edit.new_text.replace("\r\n", "\n")
        assert item.documentation.value == f"```python\n{unix}\n```"


async def test_the_kv_cache_stays_within_its_bounds(tiny_model_dir):
    options = {"model": str(tiny_model_dir), "maxNewTokens": 2, "cacheDocuments": 3}
    async with session(options) as client:
        cursor = types.Position(line=4, character=units("    " + LINE, "utf-16"))
        for i in range(5):
            open_document(client, f"file:///work/doc{i}.py", TEXT)
            await client.text_document_inline_completion_async(
                inline_params(f"file:///work/doc{i}.py", cursor)
            )
        counted = await stats(client)
        assert counted["cachedDocuments"] == 3 and counted["cacheBytes"] > 0
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"codellama": {"cacheMegabytes": 0}})
        )
        open_document(client, "file:///work/doc5.py", TEXT)
        answer = await client.text_document_inline_completion_async(
            inline_params("file:///work/doc5.py", cursor)
        )
        assert answer.items
        counted = await stats(client)
        assert counted["cachedDocuments"] == 1  # only the document in use keeps its cache


async def test_max_new_tokens_beyond_the_models_positions_is_cut_with_one_warning():
    """The shipped tiny model has 512 positions: 600 new tokens would leave no room for a prompt."""
    async with session({"model": "tiny", "maxNewTokens": 600}) as client:
        open_document(client, URI, TEXT)
        cursor = types.Position(line=5, character=len("    return "))
        for _ in range(3):
            answer = await client.text_document_inline_completion_async(inline_params(URI, cursor))
            assert answer is not None and len(answer.items) == 1
        shown = [(m.type, m.message) for m in client.messages]
        assert shown == [
            (
                types.MessageType.Warning,
                "codellama-lsp: maxNewTokens 600 is more than the model's 512 positions "
                "allow; using 495",
            )
        ]
        assert (await stats(client))["failed"] == 0
