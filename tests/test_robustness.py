"""Hostile input against the real server process: raw frames over stdio, markers, logs.

The raw tests spawn `python -m codellama_lsp` and write bytes to its stdin themselves (a reader
thread parses the Content-Length framed replies), so they can send what no LSP client library
would: bad headers, wrong lengths, invalid JSON, JSON that is not JSON-RPC, wrong parameter types,
unknown methods and documents, huge documents and lines, lone surrogates, NUL and invalid UTF-8.
After every batch the server must answer `codellama/stats` and return the exact prompt of a known
document.

What a stdio stream can recover from: a frame whose Content-Length is too small leaves the rest of
its body in the stream, read as garbage up to the next `Content-Length:` header, which is found
again even in the middle of a line. A Content-Length that is too large swallows the bytes that
follow until it is satisfied; the stream is in step again once it is. A length no editor sends
(over 1 GiB) is refused as garbage. Junk is logged, never shown to the user.

CI sends a few hundred hostile frames; `CODELLAMA_LSP_LONG=1` sends the full count (over 1,000).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from support.lsp_session import open_document, prompt_at, session, to_cursor
from support.raw_lsp import KNOWN_URI, REPLY_TIMEOUT_S, RawServer, at, frame, open_params

LONG = os.environ.get("CODELLAMA_LSP_LONG") == "1"
HOSTILE_FRAMES = 1200 if LONG else 300
BATCH = 60

KNOWN_TEXT = "def add(a, b):\n    return a"
KNOWN_PROMPT = "<s> <PRE> <SUF> <MID> def add(a, b):\n    return a"
KNOWN_END = {"line": 1, "character": len("    return a")}

PARSE_ERROR = -32700
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


def inline(uri: str, line: int, character: int) -> dict[str, Any]:
    return {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 1},
    }


def change_params(
    uri: str, text: str, span: tuple[int, int, int, int] | None = None
) -> dict[str, Any]:
    """Version 2 of `uri`: `text` over the (start line, character, end line, character) span,
    or as the whole document."""
    change: dict[str, Any] = {"text": text}
    if span is not None:
        start_line, start_character, end_line, end_character = span
        change["range"] = {
            "start": {"line": start_line, "character": start_character},
            "end": {"line": end_line, "character": end_character},
        }
    return {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]}


def start_raw(model: Path) -> RawServer:
    server = RawServer()
    try:
        server.initialize({"model": str(model), "maxNewTokens": 4})
        server.wait_ready()
        server.notify("textDocument/didOpen", open_params(KNOWN_URI, KNOWN_TEXT))
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="module")
def shared_raw(tiny_model_dir: Path):
    server = start_raw(tiny_model_dir)
    yield server
    server.close()


@pytest.fixture
def raw(shared_raw: RawServer):
    """One server for the tests that leave it in step (each checks that it does)."""
    assert shared_raw.proc.poll() is None
    shared_raw.settle(0.05)
    shared_raw.messages.clear()
    return shared_raw


@pytest.fixture
def own_raw(tiny_model_dir: Path):
    """A server of its own, for a test that may leave the stream out of step or kill it."""
    server = start_raw(tiny_model_dir)
    yield server
    server.close()


def check_alive(server: RawServer) -> None:
    """The server is in step and correct: stats answers, the known prompt is exact."""
    stats = server.call("codellama/stats", {})
    assert stats["model"]
    shown = server.call("codellama/prompt", at(KNOWN_URI, 1, 12))
    assert to_cursor(shown) == KNOWN_PROMPT
    assert server.proc.poll() is None


# -- the hostile frames ---------------------------------------------------------------------


def hostile_batch(rng: random.Random, server: RawServer) -> list[tuple[str, int | None, Any]]:
    """Send one batch; returns (what is expected, request id, detail) to check afterwards.

    Expectations: "method-not-found" or "invalid-params" (that error, for that id), "empty" (a
    result with no items), "items" (a result list, maybe empty, its ranges inside the document),
    "no-reply" (the id must never be answered).
    """
    expected: list[tuple[str, int | None, Any]] = []
    valid = {"jsonrpc": "2.0", "id": 0, "method": "codellama/stats", "params": {}}
    for _ in range(BATCH):
        kind = rng.randrange(17)
        if kind == 0:  # unknown request
            method = rng.choice(["foo/bar", "textDocument/nope", "$/weird", "", "codellama/x"])
            msg_id = server.request(method, {"x": rng.random()})
            expected.append(("method-not-found", msg_id, method))
        elif kind == 1:  # unknown notification: ignored
            server.notify(rng.choice(["foo/bar", "$/unknown", "textDocument/nope"]), {"a": 1})
        elif kind == 2:  # invalid JSON of the right length
            body = json.dumps(valid).encode()
            cut = rng.randrange(1, len(body) - 1)
            server.write(frame(rng.choice([body[:cut], body[cut:], b"{not json", b"nul", b"{}}"])))
        elif kind == 3:  # random bytes, including invalid UTF-8 and NUL
            server.write(frame(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))))
        elif kind == 4:  # valid JSON that is not JSON-RPC
            body = rng.choice(
                [
                    [1, 2],
                    [valid],
                    [],
                    "text",
                    42,
                    None,
                    {"id": 5, "method": "codellama/stats"},
                    {"jsonrpc": "1.0", "id": 6, "method": "codellama/stats"},
                    {"jsonrpc": "2.0", "id": 7, "method": 5},
                    {"jsonrpc": "2.0", "method": None},
                    {"jsonrpc": "2.0", "id": {"deep": [1]}, "method": "codellama/stats"},
                    {"jsonrpc": "2.0", "id": 123456, "result": {}},  # a reply to nothing
                    {"jsonrpc": "2.0", "id": 123457, "error": {"code": 1, "message": "m"}},
                ]
            )
            server.write(frame(json.dumps(body).encode()))
        elif kind == 5:  # headers that are not Content-Length, then a newline-ended body
            body = json.dumps(valid).encode()
            header = rng.choice(
                [
                    b"Content-Length: abc\r\n",
                    b"Content-Length: -5\r\n",
                    b"X-Nothing: 1\r\n",
                    b"\x00\xff\r\n",
                    b"Content-Length 12\r\n",
                ]
            )
            server.write(header + b"\r\n" + body + b"\r\n")
        elif kind == 6:  # Content-Length too small: the rest is garbage ending in a newline
            body = json.dumps({**valid, "id": next(server._ids)}).encode()
            cut = rng.randrange(1, len(body))
            server.write(b"Content-Length: %d\r\n\r\n" % cut + body + b"\r\n")
        elif kind == 7:  # Content-Length too large, padded with whitespace: still valid JSON
            msg_id = next(server._ids)
            body = json.dumps({**valid, "id": msg_id}).encode()
            pad = rng.randrange(1, 64)
            server.write(b"Content-Length: %d\r\n\r\n" % (len(body) + pad) + body + b" " * pad)
            expected.append(("stats", msg_id, None))
        elif kind == 8:  # Content-Length too large: it swallows the next frame, both are lost
            first, second = next(server._ids), next(server._ids)
            body = json.dumps({**valid, "id": first}).encode()
            swallowed = frame({**valid, "id": second})
            server.write(
                b"Content-Length: %d\r\n\r\n" % (len(body) + len(swallowed)) + body + swallowed,
                frames=2,
            )
            expected += [("no-reply", first, None), ("no-reply", second, None)]
        elif kind == 9:  # unknown documents: empty answers
            uri = f"file:///work/missing-{rng.randrange(10**6)}.py"
            msg_id = server.request("textDocument/inlineCompletion", inline(uri, 0, 0))
            expected.append(("empty", msg_id, uri))
            msg_id = server.request("textDocument/completion", at(uri, 3, 1))
            expected.append(("empty", msg_id, uri))
        elif kind == 10:  # positions past the end: clamped, a valid answer
            line, character = rng.choice([(1, 10**6), (10**6, 0), (2**31 - 1, 2**31 - 1)])
            method = rng.choice(["textDocument/inlineCompletion", "textDocument/completion"])
            params = inline(KNOWN_URI, line, character)
            msg_id = server.request(method, params)
            expected.append(("items", msg_id, params))
        elif kind == 11:  # wrong parameter types for known requests
            method = rng.choice(
                ["textDocument/inlineCompletion", "textDocument/completion", "codellama/prompt"]
            )
            params = rng.choice(
                [
                    {"textDocument": {"uri": 5}, "position": "x", "context": {}},
                    {"textDocument": None, "position": {"line": "a", "character": 0}},
                    [1, 2, 3],
                    "params",
                    {"position": {"line": 1.5, "character": True}},
                ]
            )
            expected.append(("invalid-params", server.request(method, params), method))
        elif kind == 12:  # negative positions
            method = rng.choice(["textDocument/inlineCompletion", "codellama/prompt"])
            msg_id = server.request(method, inline(KNOWN_URI, -rng.randrange(1, 9), -1))
            expected.append(("invalid-params", msg_id, method))
        elif kind == 13:  # known notifications with bad parameters
            uri = f"file:///work/bad-{rng.randrange(100)}.py"
            server.notify(
                rng.choice(["textDocument/didOpen", "textDocument/didChange"]),
                rng.choice(
                    [
                        open_params(uri, ["not", "text"]),
                        open_params(uri, "x", version="one"),
                        {"textDocument": {"uri": uri}},
                        {
                            "textDocument": {"uri": KNOWN_URI, "version": 3},
                            "contentChanges": [{"range": "everything", "text": "x"}],
                        },
                        None,
                    ]
                ),
            )
        elif kind == 14:  # edits of documents that are not open, with reversed ranges
            server.notify(
                "textDocument/didChange",
                change_params(f"file:///work/closed-{rng.randrange(9)}.py", "whole"),
            )
            scratch = "file:///work/scratch.py"
            server.notify("textDocument/didOpen", open_params(scratch, "a\nbc\n"))
            server.notify(
                "textDocument/didChange", change_params(scratch, "reversed", (1, 2, 0, 0))
            )
            server.notify("textDocument/didClose", {"textDocument": {"uri": scratch}})
        elif kind == 15:  # cancellations of nothing, with odd ids
            server.notify("$/cancelRequest", {"id": rng.choice([999_999_999, "nope", -1])})
        else:  # a blank line, stray newlines and spaces between frames
            server.write(rng.choice([b"\r\n", b"\n", b"   \r\n", b"\r\n\r\n"]))
    return expected


def check_batch(server: RawServer, expected: list[tuple[str, int | None, Any]]) -> None:
    errors = {"method-not-found": METHOD_NOT_FOUND, "invalid-params": INVALID_PARAMS}
    for what, msg_id, detail in expected:
        if what == "no-reply":
            continue
        assert msg_id is not None
        answer = server.reply(msg_id)
        if what in errors:
            assert answer.get("error", {}).get("code") == errors[what], (detail, answer)
            continue
        assert "error" not in answer, (what, detail, answer)
        result = answer["result"]
        if what == "stats":
            assert result["model"]
        elif what == "empty":
            assert result["items"] == [], (detail, result)
        else:
            assert isinstance(result["items"], list), (detail, result)
            for item in result["items"]:
                edit = item.get("textEdit", item)
                assert edit["range"]["end"] == KNOWN_END, (detail, item)
    server.settle()
    answered = {m.get("id") for m in server.messages if "method" not in m}
    for what, msg_id, _ in expected:
        if what == "no-reply":
            assert msg_id not in answered, f"a swallowed request {msg_id} was answered"
    shown = [m for m in server.messages if m.get("method") == "window/showMessage"]
    assert not shown, shown


def test_hostile_frames_leave_the_server_answering(raw):
    rng = random.Random(6)
    check_alive(raw)
    start = raw.frames_sent
    while raw.frames_sent - start < HOSTILE_FRAMES:
        expected = hostile_batch(rng, raw)
        check_batch(raw, expected)
        check_alive(raw)
        raw.messages.clear()
    assert raw.frames_sent - start >= HOSTILE_FRAMES


def test_huge_documents_and_lines(raw):
    big = "def f(x):\n    return x + 1\n" * 370_371  # 10 MB
    assert len(big) >= 10_000_000
    raw.notify("textDocument/didOpen", open_params("file:///work/big.py", big))
    last = big.count("\n")
    shown = raw.call("codellama/prompt", at("file:///work/big.py", last - 1, 4))
    assert to_cursor(shown).endswith("    return x + 1\ndef f(x):\n    ")
    answer = raw.call("textDocument/inlineCompletion", inline("file:///work/big.py", last - 1, 4))
    assert len(answer["items"]) == 1
    # Past the end: the end of the document (the prompt is the one at the real end).
    at_end = raw.call("codellama/prompt", at("file:///work/big.py", last, 0))
    past = raw.call("codellama/prompt", at("file:///work/big.py", last + 10**6, 10**6))
    assert past["text"] == at_end["text"] and past["ids"] == at_end["ids"]
    answer = raw.call("textDocument/inlineCompletion", inline("file:///work/big.py", 10**9, 5))
    assert isinstance(answer["items"], list)

    line = "x = [" + "1, " * 33_332 + "]"
    assert len(line) >= 100_000
    text = f"import os\n{line}\ny = 2\n"
    raw.notify("textDocument/didOpen", open_params("file:///work/long.py", text))
    for column in (0, 50_000, len(line), len(line) + 10):
        shown = raw.call("codellama/prompt", at("file:///work/long.py", 1, column))
        assert len(shown["ids"]) <= 2048 + 8
        answer = raw.call(
            "textDocument/inlineCompletion", inline("file:///work/long.py", 1, column)
        )
        assert len(answer["items"]) == 1

    # NUL and other control characters are text like any other.
    raw.notify("textDocument/didOpen", open_params("file:///work/nul.py", "a = '\x00\x01'\nb = "))
    shown = raw.call("codellama/prompt", at("file:///work/nul.py", 1, 4))
    assert to_cursor(shown) == "<s> <PRE> <SUF> <MID> a = '\x00\x01'\nb = "
    answer = raw.call("textDocument/inlineCompletion", inline("file:///work/nul.py", 1, 4))
    assert len(answer["items"]) == 1
    check_alive(raw)


def test_invalid_utf8_in_a_frame_drops_that_frame_only(raw):
    body = (
        b'{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":'
        b'{"uri":"file:///work/bytes.py","languageId":"python","version":1,'
        b'"text":"a\xff\xfe\xc3 = 1"}}}'
    )
    raw.write(frame(body))
    answer = raw.call("textDocument/inlineCompletion", inline("file:///work/bytes.py", 0, 1))
    assert answer["items"] == []  # the document never opened
    check_alive(raw)


def test_requests_with_invalid_params_get_invalid_params(raw):
    cases = [
        ("textDocument/inlineCompletion", inline(KNOWN_URI, -1, 0)),
        ("textDocument/inlineCompletion", inline(KNOWN_URI, 0, -3)),
        ("textDocument/completion", at(KNOWN_URI, -1, -1)),
        ("textDocument/inlineCompletion", {"textDocument": {"uri": 5}, "position": "x"}),
        ("textDocument/completion", [1, 2, 3]),
        ("codellama/prompt", at(KNOWN_URI, -1, 0)),
        ("codellama/prompt", {"textDocument": {"uri": KNOWN_URI}, "position": {"line": "a"}}),
    ]
    ids = [(raw.request(method, params), method) for method, params in cases]
    for msg_id, method in ids:
        answer = raw.reply(msg_id, timeout=5)
        assert answer.get("error", {}).get("code") == INVALID_PARAMS, (method, answer)
    check_alive(raw)


def test_a_body_that_is_not_json_is_answered_parse_error(raw):
    for body in (b"{not json", b'{"jsonrpc": "2.0", "id": 9, "method": "codellama/st', b"\xff\xfe"):
        raw.write(frame(body))
        while not any(m.get("id", 0) is None for m in raw.messages):
            assert raw.pump(5), "no ParseError reply"
        (answer,) = [m for m in raw.messages if m.get("id", 0) is None]
        assert answer["error"]["code"] == PARSE_ERROR, answer
        raw.messages.clear()
    raw.settle()
    assert not [m for m in raw.messages if m.get("method") == "window/showMessage"]
    check_alive(raw)


@pytest.mark.parametrize("method", ["textDocument/inlineCompletion", "textDocument/completion"])
def test_replies_to_positions_past_the_end_stay_inside_the_document(raw, method):
    for line, character in [(1, 10**6), (10**6, 0), (2**31 - 1, 2**31 - 1)]:
        answer = raw.call(method, inline(KNOWN_URI, line, character))
        assert len(answer["items"]) == 1
        item = answer["items"][0]
        if method == "textDocument/completion":  # the edit covers the word "a" before the cursor
            edit, start = item["textEdit"], {"line": 1, "character": len("    return ")}
        else:
            edit, start = item, KNOWN_END
        assert edit["range"] == {"start": start, "end": KNOWN_END}, item
    check_alive(raw)


def test_an_absurd_content_length_does_not_kill_the_server(own_raw):
    raw = own_raw
    raw.write(b"Content-Length: 99999999999999999999999\r\n\r\n")
    raw.write(b"{}\r\n")
    time.sleep(1)
    assert raw.proc.poll() is None, "the server died"
    check_alive(raw)


def test_the_stream_finds_the_next_frame_again(own_raw):
    raw = own_raw
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "codellama/stats", "params": {}})
    body = body.encode()
    raw.write(b"content-length: %d\r\n\r\n" % len(body) + body)
    assert raw.reply(7, timeout=5)["result"]["model"]
    raw.write(b"Content-Length: %d\r\n\r\n" % (len(body) - 5) + body)  # no newline after
    check_alive(raw)
    # Headers in any case and spacing, among others, after garbage with and without newlines.
    raw.write(b"garbage without a newline " * 5000 + b"\x00\xff garbage\r\n")
    body = body.replace(b'"id": 7', b'"id": 8')
    raw.write(b"Content-Type: application/vscode-jsonrpc\r\nCONTENT-LENGTH :%d \n\n" % len(body))
    raw.write(body)
    assert raw.reply(8, timeout=5)["result"]["model"]
    check_alive(raw)


def test_lone_surrogates_do_not_break_completion(raw):
    raw.write(
        frame(
            b'{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":'
            b'{"uri":"file:///work/sur.py","languageId":"python","version":1,'
            b"\"text\":\"a = '\\ud800'\\nb = '\\udfff\\ud83d'\\nc = \"}}}"
        )
    )
    shown = raw.call("codellama/prompt", at("file:///work/sur.py", 2, 4))
    assert to_cursor(shown).endswith("c = ")
    answer = raw.call("textDocument/inlineCompletion", inline("file:///work/sur.py", 2, 4))
    assert len(answer["items"]) == 1
    raw.settle()
    errors = [m for m in raw.messages if m.get("method") == "window/showMessage"]
    assert not errors, errors


@pytest.mark.parametrize("folder", ["tiny_model_dir", "codellama_tokenizer_dir"])
def test_lone_surrogates_are_encoded_as_replacement_characters(request, folder):
    """One for one, so offsets stay put; tiny's is sentencepiece, Code Llama's `tokenizers`."""
    from codellama_lsp.checkpoint.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(request.getfixturevalue(folder)))
    assert tokenizer.encode("a = '\ud800'\n") == tokenizer.encode("a = '\ufffd'\n")
    assert tokenizer.encode_infilling("\udfffb\ud83d") == tokenizer.encode_infilling(
        "\ufffdb\ufffd"
    )


# -- markers in file text (through pytest-lsp) --------------------------------------------


MARKER_TEXTS = [
    "x = '<PRE>'\ny = ' <SUF>'\n",
    "# <MID> <EOT> </s> <s>\n",
    "s = '<s></s><PRE><SUF><MID><EOT>'\n",
    " <PRE> <SUF> <MID> <EOT> </s> <s> ",
    "<EOT><EOT></s>\n<PRE>",
]


async def test_marker_text_never_becomes_a_control_id(tiny_model_dir):
    from codellama_lsp.checkpoint.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    control = tokenizer.control_ids
    assert control == {1, 2, 3, 4, 5, 6}
    ids = tokenizer.ids
    assert (ids.bos, ids.eos, ids.pre, ids.suf, ids.mid, ids.eot) == (1, 2, 3, 4, 5, 6)
    async with session({"model": str(tiny_model_dir), "maxNewTokens": 4}) as client:
        for order in ("spm", "psm"):
            client.workspace_did_change_configuration(
                types.DidChangeConfigurationParams(settings={"codellama": {"order": order}})
            )
            for n, text in enumerate(MARKER_TEXTS):
                uri = f"file:///work/markers-{order}-{n}.py"
                document = text + "value = 1\n" + text
                open_document(client, uri, document)
                lines = document.split("\n")
                for line in range(len(lines)):
                    for character in sorted({0, len(lines[line]) // 2, len(lines[line])}):
                        shown = await prompt_at(client, uri, types.Position(line, character))
                        assert shown["order"] == order
                        found = [i for i in shown["ids"] if i in control]
                        assert found == [1, 3, 4, 5], (order, text, line, character, found)
                        if order == "spm":
                            assert shown["ids"][:3] == [1, 3, 4]
                        else:
                            assert shown["ids"][:2] == [1, 3] and shown["ids"][-1] == 5


# -- logs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [None, "info"])
def test_logs_hold_no_document_text(tiny_model_dir, tmp_path, level):
    marker = "QZX_SECRET_7731"
    log_file = tmp_path / "server.log"
    args = ("--log-file", str(log_file)) + (("--log-level", level) if level else ())
    server = RawServer(args)
    try:
        server.initialize({"model": str(tiny_model_dir), "maxNewTokens": 4})
        server.wait_ready()
        uri = "file:///work/secret.py"
        server.notify("textDocument/didOpen", open_params(uri, f"{marker} = 1\nx = "))
        server.notify("textDocument/didChange", change_params(uri, f"{marker}_typed", (1, 4, 1, 4)))
        server.call("textDocument/inlineCompletion", inline(uri, 1, 4))
        server.call("textDocument/completion", at(uri, 1, 10))
        server.call("codellama/prompt", at(uri, 1, 4))
        # Failing paths: a change to a closed document, a reversed range, a frame that does
        # not structure, invalid JSON, a document whose completion fails.
        server.notify("textDocument/didChange", change_params("file:///work/closed.py", marker))
        server.notify("textDocument/didOpen", open_params("file:///work/s2.py", marker, "v"))
        server.write(frame(f'{{"text": "{marker}", '.encode()))
        server.write(
            frame(
                b'{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":'
                b'{"uri":"file:///work/sur.py","languageId":"python","version":1,'
                b'"text":"' + marker.encode() + b" = '\\ud800'\\n\"}}}"
            )
        )
        server.call("textDocument/inlineCompletion", inline("file:///work/sur.py", 0, 3))
        server.call("codellama/stats", {})
        server.call("shutdown", None)
    finally:
        server.close()
    logged = log_file.read_text(encoding="utf-8", errors="replace")
    assert logged  # the failing paths were logged ...
    assert marker not in logged  # ... without the document's text


# -- the protocol's state machine and messages LSP does not allow --------------------------

INVALID_REQUEST = -32600
SERVER_NOT_INITIALIZED = -32002


def error_code(server: RawServer, msg_id: int) -> int | None:
    return server.reply(msg_id, timeout=10).get("error", {}).get("code")


def test_the_lifecycle_is_enforced(tiny_model_dir):
    server = RawServer()
    try:
        # Before initialize: requests are refused, notifications other than exit dropped.
        assert error_code(server, server.request("codellama/stats", {})) == SERVER_NOT_INITIALIZED
        assert error_code(server, server.request("shutdown", None)) == SERVER_NOT_INITIALIZED
        server.notify("textDocument/didOpen", open_params(KNOWN_URI, KNOWN_TEXT))
        server.initialize({"model": str(tiny_model_dir), "maxNewTokens": 4})
        server.wait_ready()
        shown = server.reply(server.request("codellama/prompt", at(KNOWN_URI, 0, 0)))
        assert shown["error"]["code"] == INVALID_PARAMS  # the early didOpen never ran
        server.notify("textDocument/didOpen", open_params(KNOWN_URI, KNOWN_TEXT))

        # A second initialize is refused; the first session keeps its loaded model.
        again = {"capabilities": {}, "initializationOptions": {"model": "tiny"}}
        assert error_code(server, server.request("initialize", again)) == INVALID_REQUEST
        server.notify("initialized", {})
        check_alive(server)

        # After shutdown every request is answered InvalidRequest; exit then ends with 0.
        server.call("shutdown", None)
        for method, params in [("codellama/stats", {}), ("shutdown", None), ("initialize", again)]:
            assert error_code(server, server.request(method, params)) == INVALID_REQUEST
        server.notify("exit", None)
        assert server.proc.wait(30) == 0
    finally:
        server.close()


def test_batches_and_deep_nesting_are_answered(raw):
    stats = {"jsonrpc": "2.0", "id": 41, "method": "codellama/stats", "params": {}}
    for body, code in [
        ([stats], INVALID_REQUEST),
        ([], INVALID_REQUEST),
        (42, INVALID_REQUEST),
        ("[" * 100_000 + "]" * 100_000, PARSE_ERROR),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, PARSE_ERROR),
    ]:
        raw.write(frame(body.encode() if isinstance(body, str) else json.dumps(body).encode()))
        while not any(m.get("id", 0) is None for m in raw.messages):
            assert raw.pump(10), f"no reply to {str(body)[:20]}"
        (answer,) = [m for m in raw.messages if m.get("id", 0) is None]
        assert answer["error"]["code"] == code, answer
        raw.messages.clear()
    raw.settle()
    assert not [m for m in raw.messages if m.get("id") == 41], "a batch's request ran"
    check_alive(raw)


def test_a_change_list_with_a_bad_change_is_refused_whole(raw):
    uri = "file:///work/step.py"
    raw.notify("textDocument/didOpen", open_params(uri, "a = 1\n"))
    good = {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}}
    reversed_range = {
        "range": {"start": {"line": 0, "character": 3}, "end": {"line": 0, "character": 1}}
    }
    raw.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [{**good, "text": "b = 2\n"}, {**reversed_range, "text": "x"}],
        },
    )
    shown = raw.call("codellama/prompt", at(uri, 1, 0))
    assert to_cursor(shown).endswith("a = 1\n"), shown  # the first change did not apply either
    assert "b = 2" not in shown["text"]
    # Out of step with the editor: no completion until the whole text comes again.
    assert raw.call("textDocument/inlineCompletion", inline(uri, 0, 5))["items"] == []
    raw.notify("textDocument/didChange", change_params(uri, "c = 3\n"))
    assert len(raw.call("textDocument/inlineCompletion", inline(uri, 0, 5))["items"]) == 1
    check_alive(raw)


def test_a_change_with_an_older_version_is_refused(raw):
    uri = "file:///work/versions.py"
    raw.notify("textDocument/didOpen", open_params(uri, "a = 1\n", version=5))
    params = change_params(uri, "OLD = 0\n", (0, 0, 0, 0))
    params["textDocument"]["version"] = 4
    raw.notify("textDocument/didChange", params)
    assert "OLD" not in raw.call("codellama/prompt", at(uri, 0, 0))["text"]
    assert raw.call("textDocument/inlineCompletion", inline(uri, 0, 5))["items"] == []
    params = change_params(uri, "NEW = 0\n", (0, 0, 0, 0))
    params["textDocument"]["version"] = 6
    raw.notify("textDocument/didChange", params)  # a partial change cannot bring it back
    assert raw.call("textDocument/inlineCompletion", inline(uri, 0, 5))["items"] == []
    check_alive(raw)


# -- what the server advertises -------------------------------------------------------------


def server_request(server: RawServer, method: str) -> dict[str, Any]:
    """The next request `method` from the server, answered with a null result."""
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while True:
        for message in server.messages:
            if message.get("method") == method and "id" in message:
                server.messages.remove(message)
                server.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                return message
        assert server.pump(deadline - time.monotonic()), f"no {method} request"


def initialize_with(server: RawServer, capabilities: dict[str, Any], options: Any) -> Any:
    params = {"capabilities": capabilities, "initializationOptions": options}
    result = server.call("initialize", params)
    server.notify("initialized", {})
    return result


def test_the_editors_trigger_characters_are_advertised():
    server = RawServer()
    try:
        result = initialize_with(server, {}, {"model": "tiny", "triggerCharacters": ["#", "."]})
        assert result["capabilities"]["completionProvider"]["triggerCharacters"] == ["#", "."]
    finally:
        server.close()


def test_trigger_characters_are_registered_again_when_they_change():
    server = RawServer()
    dynamic = {"textDocument": {"completion": {"dynamicRegistration": True}}}
    try:
        result = initialize_with(server, dynamic, {"model": "tiny", "triggerCharacters": ["#"]})
        assert "completionProvider" not in result["capabilities"]  # never both ways
        (first,) = server_request(server, "client/registerCapability")["params"]["registrations"]
        assert first["method"] == "textDocument/completion"
        assert first["registerOptions"]["triggerCharacters"] == ["#"]

        server.notify(
            "workspace/didChangeConfiguration", {"settings": {"codellama": {"maxNewTokens": 3}}}
        )
        server.notify(
            "workspace/didChangeConfiguration",
            {"settings": {"codellama": {"triggerCharacters": ["@", "."]}}},
        )
        request = server_request(server, "client/unregisterCapability")
        (gone,) = request["params"]["unregisterations"]
        assert gone == {"id": first["id"], "method": "textDocument/completion"}
        (again,) = server_request(server, "client/registerCapability")["params"]["registrations"]
        assert again["registerOptions"]["triggerCharacters"] == ["@", "."]
        assert again["id"] != first["id"]
        server.settle()
        assert not [m for m in server.messages if "Capability" in m.get("method", "")]
    finally:
        server.close()
