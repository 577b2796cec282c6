"""Extra context: snippets of other files chosen for the cursor, within budget, kept stable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lsprotocol import types
from support.cli import run_cli
from support.lsp_session import open_document, prompt_at, session

from codellama_lsp.completion.prepare import prompt_for
from codellama_lsp.completion.request import InfillRequest
from codellama_lsp.context.extra_context import (
    PAUSE_S,
    ExtraContext,
    OpenFile,
    Snippet,
    StableChoice,
    choose_snippets,
    comment_marker,
    fit_snippets,
)
from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.settings import Settings

MODELS = """\
class Invoice:
    def __init__(self, number, total):
        self.number = number
        self.total = total

    def with_tax(self, rate):
        return self.total * (1 + rate)
"""
FILLER = "".join(f"def step_{i}(value):\n    return value + {i}\n\n\n" for i in range(40))
MAIN = """\
from shop.models import Invoice


def bill(number, total, rate):
    invoice = Invoice(number, total)
    return invoice.with_tax(rate)
"""


def lines_of(text: str) -> tuple[str, ...]:
    return tuple(text.splitlines(keepends=True))


def count_words(text: str) -> int:
    """A stand-in token count: one a word or symbol run."""
    return len(text.split()) + text.count("\n")


def test_the_snippet_that_shares_the_cursors_names_comes_first_in_its_files_comment_syntax():
    others = [
        OpenFile("filler", "shop/steps.py", lines_of(FILLER)),
        OpenFile("models", "shop/models.py", lines_of(FILLER + MODELS)),
    ]
    snippets = choose_snippets(lines_of(MAIN), 5, others, 256)
    assert snippets[0].path == "shop/models.py"
    text, _ = fit_snippets(ExtraContext(snippets, "#"), 256, count_words)
    assert text.startswith("# Path: shop/models.py\n# class Invoice:\n")
    assert "\n#     def with_tax(self, rate):\n" in text
    assert all(line.startswith("#") for line in lines_of(text))


def test_the_signature_of_a_name_imported_far_above_the_cursor_is_chosen():
    body = "".join(f"    counts[{i}] += {i}\n" for i in range(100))
    document = lines_of(f"from shop.models import Invoice\n\n\ndef tally(counts):\n{body}")
    others = [OpenFile("models", "shop/models.py", lines_of(FILLER + MODELS))]
    snippets = choose_snippets(document, len(document) - 1, others, 512)
    assert snippets[0] == Snippet("shop/models.py", len(lines_of(FILLER)), ("class Invoice:\n",))


@pytest.mark.parametrize(
    ("language_id", "path", "marker"),
    [("python", "", "#"), ("typescript", "", "//"), ("lua", "", "--"), ("", "a/b.rb", "#")],
)
def test_comment_markers(language_id, path, marker):
    assert comment_marker(language_id, path) == marker


def test_nothing_in_common_nothing_chosen_and_zero_budget_is_off():
    others = [OpenFile("models", "shop/models.py", lines_of(MODELS))]
    assert choose_snippets(lines_of("x = 1\n"), 0, others, 512) == ()
    assert choose_snippets(lines_of(MAIN), 5, others, 0) == ()


def test_fit_snippets_never_exceeds_the_budget_groups_by_file_and_puts_the_best_last():
    snippets = (
        Snippet("a.py", 10, ("best b c\n",)),
        Snippet("b.py", 0, ("second d e f g h i j k\n",)),
        Snippet("a.py", 2, ("third\n",)),
        Snippet("c.py", 0, ("fourth\n",)),
    )
    extra = ExtraContext(snippets, "--")
    text, used = fit_snippets(extra, 19, count_words)
    assert used == count_words(text) == 19
    assert text == "-- Path: c.py\n-- fourth\n-- Path: a.py\n-- third\n-- best b c\n"
    assert fit_snippets(extra, 0, count_words) == ("", 0)


def test_the_prompt_starts_with_the_extra_context_within_its_budget():
    from codellama_lsp.checkpoint.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("tiny")
    others = [OpenFile("models", "shop/models.py", lines_of(FILLER + MODELS))]
    lines = lines_of(MAIN)
    settings = Settings(context_tokens=512, extra_context_tokens=200, order="psm")
    snippets = ExtraContext(choose_snippets(lines, 5, others, 200), "#")
    request = InfillRequest.at(settings, lines, 5, 11, "\n", snippets)

    count = LineTokenCounter(tokenizer)
    extra, used = fit_snippets(snippets, 200, count)
    assert extra and used <= 200
    window, ids = prompt_for(tokenizer, request, count)
    bare_window, bare_ids = prompt_for(
        tokenizer, InfillRequest.at(settings, lines, 5, 11, "\n"), count
    )
    assert tokenizer.decode(ids).startswith(" <PRE> " + extra + "from shop.models import Invoice")
    assert window.prefix == bare_window.prefix  # the extra context is not the document's text
    assert len(ids) - len(bare_ids) <= 200 + 1


def test_the_choice_stays_put_while_typing_in_one_place():
    choice = StableChoice()
    calls: list[int] = []

    def choose() -> ExtraContext:
        calls.append(1)
        return ExtraContext((Snippet("a.py", len(calls), ("x\n",)),), "#")

    first = choice.get("a", 10, 0.0, choose)
    for step in range(1, 30):  # a keystroke every 100 ms, on nearby lines
        assert choice.get("a", 10 + step % 3, step * 0.1, choose) is first
    assert len(calls) == 1
    choice.get("a", 11, 3.0 + PAUSE_S, choose)  # a pause
    assert len(calls) == 2
    choice.get("b", 11, 4.0, choose)  # another document
    assert len(calls) == 3
    choice.get("b", 60, 4.1, choose)  # the cursor jumped
    assert len(calls) == 4


def uri_of(path: Path) -> str:
    return path.as_uri()


async def test_over_lsp_another_documents_snippet_is_in_the_prompt_but_not_excluded_ones(
    tiny_model_dir, tmp_path
):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("generated.py\n")
    main, models = tmp_path / "main.py", tmp_path / "models.py"
    ignored, notes = tmp_path / "generated.py", tmp_path / "notes.md"
    options = {
        "model": str(tiny_model_dir),
        "languages": {"markdown": False},
    }
    # Its files are in no workspace folder.
    async with session(options, args=("--share-outside-workspace", "on")) as client:
        open_document(client, uri_of(main), MAIN)
        open_document(client, uri_of(models), MODELS)
        open_document(client, uri_of(ignored), MODELS.replace("Invoice", "InvoiceSecret"))
        open_document(client, uri_of(notes), "Invoice with_tax rate number total", "markdown")
        shown = await prompt_at(client, uri_of(main), types.Position(5, 11))
        text = shown["text"]
        assert f"# Path: {models}\n" in text
        assert "#     def with_tax(self, rate):\n" in text
        assert text.index("# Path:") < text.index("from shop.models import Invoice")
        assert "InvoiceSecret" not in text and "generated.py" not in text
        assert "notes.md" not in text
        assert text.count("# Path: ") == 1  # never the document itself

        off = {"codellama": {"extraContextTokens": 0}}
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(off))
        shown = await prompt_at(client, uri_of(main), types.Position(5, 11))
        assert "# Path:" not in shown["text"]


async def test_over_lsp_a_recently_closed_document_still_gives_context(tiny_model_dir, tmp_path):
    main, models = tmp_path / "main.py", tmp_path / "models.py"
    options = {"model": str(tiny_model_dir)}
    async with session(options, args=("--share-outside-workspace", "on")) as client:  # no folder
        open_document(client, uri_of(main), MAIN)
        open_document(client, uri_of(models), MODELS)
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri_of(models)))
        )
        shown = await prompt_at(client, uri_of(main), types.Position(5, 11))
        assert f"# Path: {models}\n" in shown["text"]


def test_the_cli_prompt_shows_the_extra_context_of_files_given_with_with(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "main.py").write_text(MAIN)
    (tmp_path / "shop" / "models.py").write_text(MODELS)
    cursor = "shop/main.py:6:12"
    shown = run_cli("prompt", cursor, "--model", "tiny", "--with", "shop/models.py", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "<MID> # Path: shop/models.py\n# class Invoice:\n" in shown.stdout
    assert "\n#     def with_tax(self, rate):\n" in shown.stdout

    bare = run_cli("prompt", cursor, "--model", "tiny", cwd=tmp_path)
    off = run_cli(
        "prompt", cursor, "--model", "tiny", "--with", "shop/models.py",
        "--extra-context-tokens", "0", cwd=tmp_path,
    )  # fmt: skip
    assert bare.stdout == off.stdout and "# Path:" not in bare.stdout

    missing = run_cli("prompt", cursor, "--model", "tiny", "--with", "nowhere.py", cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.strip().endswith("nowhere.py: no such file")
