"""`<FILL_ME>`, the transformers docs' hole marker: `complete FILE` fills the file's one marker;
anywhere else (a cursor given, a document over LSP) it is plain text."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from support.cli import run_cli
from support.lsp_session import open_document, prompt_at, session

BEFORE = "def area(width, height):\n    return "
AFTER = "\n\n\ndef perimeter(width, height):\n    return 2 * (width + height)\n"
CURSOR = "2:12"  # where the marker is, 1-based


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_bytes(text.encode())
    return path


def test_complete_fills_the_one_marker(tiny_model_dir, tmp_path):
    model = ("--model", str(tiny_model_dir), "--max-new-tokens", "6")
    marked = write(tmp_path, "marked.py", BEFORE + "<FILL_ME>" + AFTER)
    plain = write(tmp_path, "plain.py", BEFORE + AFTER)

    at_cursor = run_cli("complete", f"{plain}:{CURSOR}", *model)
    middle = run_cli("complete", str(marked), "--middle", *model)
    filled = run_cli("complete", str(marked), *model)
    for done in (at_cursor, middle, filled):
        assert done.returncode == 0, done.stderr
    assert middle.stdout == at_cursor.stdout
    assert filled.stdout == BEFORE + middle.stdout[:-1] + AFTER
    assert marked.read_text() == BEFORE + "<FILL_ME>" + AFTER  # the file is left as it was


def test_the_marker_is_the_cursor_of_the_prompt_too(tiny_model_dir, tmp_path):
    marked = write(tmp_path, "marked.py", "x = [\r\n    <FILL_ME>\r\n]\r\n")
    plain = write(tmp_path, "plain.py", "x = [\r\n    \r\n]\r\n")
    model = ("--model", str(tiny_model_dir), "--format", "ids")
    assert (
        run_cli("prompt", str(marked), *model).stdout
        == run_cli("prompt", f"{plain}:2:5", *model).stdout
    )


def test_no_marker_or_several_is_one_clear_error(tiny_model_dir, tmp_path):
    for name, text, says in (
        ("none.py", BEFORE + AFTER, "no <FILL_ME> markers"),
        ("two.py", "<FILL_ME>" + BEFORE + "<FILL_ME>", "2 <FILL_ME> markers"),
    ):
        done = run_cli("complete", str(write(tmp_path, name, text)), "--model", str(tiny_model_dir))
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "FILE:LINE:COL" in lines[0], done.stderr


def test_with_a_cursor_the_marker_is_plain_text(tiny_model_dir, tmp_path):
    marked = write(tmp_path, "marked.py", BEFORE + "<FILL_ME>" + AFTER)
    done = run_cli("prompt", f"{marked}:5:1", "--model", str(tiny_model_dir))
    assert done.returncode == 0, done.stderr
    assert "return <FILL_ME>" in done.stdout


async def test_over_lsp_the_marker_is_plain_text(tiny_model_dir):
    uri = "file:///work/marked.py"
    async with session({"model": str(tiny_model_dir), "maxNewTokens": 4}) as client:
        open_document(client, uri, BEFORE + "<FILL_ME>" + AFTER)
        shown = await prompt_at(client, uri, types.Position(4, 0))
        assert "return <FILL_ME>" in shown["text"]
        assert [i for i in shown["ids"] if i in (1, 2, 3, 4, 5, 6)] == [1, 3, 4, 5]
