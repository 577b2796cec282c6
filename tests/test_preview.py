"""The preview is the prompt a completion sends: `codellama/prompt` and `codellama-lsp prompt`
show the ids `infill.complete` hands the engine, healed as it heals, and name the bytes the
completion must start with."""

from __future__ import annotations

import json

from lsprotocol import types
from support.cli import run_cli
from support.lsp_session import open_document, prompt_at, session

from codellama_lsp.completion.infill import complete
from codellama_lsp.completion.prepare import prompt_for
from codellama_lsp.completion.request import InfillRequest
from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.documents.text_document import TextDocument
from codellama_lsp.engine.in_process import InProcessEngine
from codellama_lsp.engine.interface import Generated, Limits
from codellama_lsp.engine.model import load_model
from codellama_lsp.settings import Settings

TEXT = "def area(width, height):\n    return wid\n\n\ndef perimeter(width, height):\n    pass\n"
LINE, COLUMN = 1, len("    return wid")  # inside a word: `wid` of `width`
MAX_NEW_TOKENS = 4


class RecordingEngine(InProcessEngine):
    """The in-process engine, keeping what `complete` hands it."""

    sent: list[tuple[list[int], bytes]]

    def generate(self, document: str, prompt: list[int], limits: Limits) -> Generated:
        self.sent.append((list(prompt), limits.forced))
        return super().generate(document, prompt, limits)


def sent_by_a_completion(model: str) -> tuple[list[int], bytes]:
    """The prompt and forced bytes a completion at the cursor hands the engine (the defaults:
    suffix-first, token healing on)."""
    settings = Settings(model=model, max_new_tokens=MAX_NEW_TOKENS)
    engine = RecordingEngine(load_model(settings), cache_documents=1, cache_bytes=2**30)
    engine.sent = []
    lines = TextDocument("file:///work/area.py", "python", 1, TEXT).lines
    request = InfillRequest.at(settings, lines, LINE, COLUMN, "\n")
    complete(engine, "area", request, LineTokenCounter(engine.tokenizer), bool)
    ((ids, forced),) = engine.sent
    assert forced and TEXT.splitlines()[LINE][:COLUMN].endswith(forced.decode())
    _, unhealed = prompt_for(engine.tokenizer, request, LineTokenCounter(engine.tokenizer))
    assert ids == unhealed[:-1]  # healed: the word's token backed off
    return ids, forced


async def test_codellama_prompt_shows_what_a_completion_sends(tiny_model_dir):
    ids, forced = sent_by_a_completion(str(tiny_model_dir))
    uri = "file:///work/area.py"
    async with session({"model": str(tiny_model_dir), "maxNewTokens": MAX_NEW_TOKENS}) as client:
        open_document(client, uri, TEXT)
        shown = await prompt_at(client, uri, types.Position(LINE, COLUMN))
    assert shown["ids"] == ids
    assert shown["mustStartWith"] == forced.decode()


def test_the_prompt_command_shows_what_a_completion_sends(tiny_model_dir, tmp_path):
    ids, forced = sent_by_a_completion(str(tiny_model_dir))
    path = tmp_path / "area.py"
    path.write_text(TEXT, encoding="utf-8")
    where = (f"{path}:{LINE + 1}:{COLUMN + 1}", "--model", str(tiny_model_dir))
    options = (*where, "--max-new-tokens", str(MAX_NEW_TOKENS))
    named = f"codellama-lsp: the completion must start with {json.dumps(forced.decode())}"

    shown = run_cli("prompt", *options, "--format", "ids")
    assert shown.returncode == 0, shown.stderr
    assert [int(i) for i in shown.stdout.split()] == ids
    assert shown.stderr.startswith(named)

    text = run_cli("prompt", *options)
    assert text.returncode == 0, text.stderr
    assert text.stderr.startswith(named)
    assert not text.stdout.rstrip("\n").endswith("wid")  # the backed-off bytes are not in it

    # A remote engine does not heal: its prompt is the whole prefix, and nothing is forced.
    remote = run_cli("prompt", *options, "--format", "ids", "--engine", "llama.cpp")
    assert remote.returncode == 0, remote.stderr
    assert [int(i) for i in remote.stdout.split()][:-1] == ids and remote.stderr == ""
