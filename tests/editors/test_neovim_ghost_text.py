"""Neovim 0.12's ghost text (vim.lsp.inline_completion) with the shipped editors/nvim/codellama.lua,
driven headless against the real server and the shipped tiny model.

No registry here has Neovim 0.12: it is built for tests in ../shared/neovim-0.12 (its README),
and these tests skip where that is absent. Insert mode starts while the model is still loading,
and nothing is typed: the one request Neovim sends then must bring the ghost text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from editor_process import REPO, run_editor
from sample_document import LINE, SOURCE

pytestmark = pytest.mark.editors

NVIM = REPO.parent / "shared" / "neovim-0.12" / "bin" / "nvim"
SCRIPT = Path(__file__).with_name("nvim_ghost_text.lua")

# A Windows file: the cursor ends the blank line in `scale`'s body, where the tiny model writes
# a docstring of several lines.
CRLF_SOURCE = "\r\n".join(
    [
        "import os",
        "",
        "",
        "def add(first, second):",
        "    return first + second",
        "",
        "",
        "def scale(values, factor):",
        "    ",
        "print(add(1, 2))",
        "",
    ]
)
CRLF_LINE = 8


@pytest.mark.parametrize(
    ("source", "line", "insert"),
    [(SOURCE, LINE, "at-once"), (CRLF_SOURCE, CRLF_LINE, "once-attached")],
    ids=["emoji-cjk-line-insert-at-once", "crlf-file-insert-once-attached"],
)
def test_ghost_text_while_the_model_loads_accepted_with_tab(
    tmp_path: Path, server_command: str, source: str, line: int, insert: str
) -> None:
    if not NVIM.is_file():
        pytest.skip(f"Neovim 0.12 is not at {NVIM} (../shared/neovim-0.12, built for tests)")
    result, elapsed = run_editor(
        [str(NVIM), "--headless", "--clean", "-c", f"luafile {SCRIPT}"],
        tmp_path,
        server_command,
        source,
        CODELLAMA_LINE=str(line),
        CODELLAMA_INSERT=insert,
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    print(
        f"nvim {result['nvim_version']}: {elapsed:.1f} s; ghost text {result['ghost_ms']} ms "
        f"after insert mode; steps {result['steps']}"
    )
    if not result["watchfiles_loads"]:  # the test build's LPeg: see nvim_ghost_text.lua
        print(f"client:stop() cannot work here: {result['watchfiles_error']}")
    assert result["nvim_version"].startswith("0.12.")
    assert result["filetype"] == "python"
    assert result["offset_encoding"] == "utf-8"
    assert result["inline_enabled"] is True
    eol = "\r\n" if "\r\n" in source else "\n"
    assert result["fileformat"] == ("dos" if eol == "\r\n" else "unix")
    lines = source.removesuffix(eol).split(eol)
    assert result["before"] == lines

    # Insert mode before the client was attached (the shipped set-up then asks at once), or
    # after; either way one automatic request, sent while the model loaded, brings the ghost.
    assert result["mode_at_attach"] == ("i" if insert == "at-once" else "n")
    if insert == "at-once":
        assert result["model_at_first_request"] is None
    assert result["requests_before_ghost"] == 1
    assert result["mode_with_ghost"] == "i"

    # The ghost text: one extmark at the cursor (UTF-8 bytes, after the emoji and CJK text),
    # shown inline, with Neovim's line breaks only (no ^M from the CRLF file).
    cursor_line = lines[line]
    ghost = result["ghost"]
    assert (ghost["row"], ghost["col"]) == (line, len(cursor_line.encode("utf-8")))
    assert ghost["marks"] == 1 and ghost["pos"] == "inline"
    shown = ghost["lines"]
    assert "".join(shown).strip() and not any("\r" in text for text in shown)
    if eol == "\r\n":
        assert len(shown) > 1, "the CRLF case needs a completion of several lines"

    # <Tab> put exactly the ghost text in at the cursor and left the cursor after it.
    expected = [*lines[:line], cursor_line + shown[0], *shown[1:], *lines[line + 1 :]]
    assert result["after"] == expected
    last = shown[-1] if len(shown) > 1 else cursor_line + shown[0]
    assert result["cursor"] == [line + len(shown), len(last.encode("utf-8"))]
    assert result["ghost_after_accept"] is None

    # Written with the file's own line ends, and read back as such.
    assert result["written"] == eol.join(expected) + eol
    assert [m for m in result["messages"] if m["type"] == 1] == []  # no errors shown
    assert result["exit"] == {"code": 0, "signal": 0}
