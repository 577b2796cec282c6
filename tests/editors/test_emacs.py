"""Emacs 28 with Debian's eglot (.ci/editors/nvim-emacs.sh) and the shipped
editors/emacs/codellama-lsp.el, driven in batch mode against the real server and the tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from editor_process import run_editor
from sample_document import LINE, SOURCE, WORD

pytestmark = pytest.mark.editors

SCRIPT = Path(__file__).with_name("emacs_completion.el")


def emacs() -> str:
    found = shutil.which("emacs")
    if found is None:
        pytest.skip("emacs is not installed (bash .ci/editors/nvim-emacs.sh installs it)")
    return found


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_shipped_eglot_setup_offers_the_completion(tmp_path: Path, server_command: str) -> None:
    result, elapsed = run_editor(
        [emacs(), "--batch", "-l", str(SCRIPT)],
        tmp_path,
        server_command,
        SOURCE,
        HOME=str(tmp_path),  # no user init, no ~/.emacs.d writes
    )
    print(f"emacs: {elapsed:.1f} s; eglot from {result.get('eglot')}")

    assert result["mode"] == "python-mode"
    assert result["server"] == "codellama-lsp"
    assert "tiny" in result["model"]
    assert result["before"] == SOURCE
    assert result["probe"] == WORD

    # completion-at-point's candidates: the server's item, filtered by the word at point.
    candidates = result["candidates"]
    assert len(candidates) == 1, candidates
    assert candidates[0].startswith(WORD) and len(candidates[0]) > len(WORD)

    # The item's edit in UTF-16 (eglot 1.9 sends no positionEncodings): the word before point.
    line = SOURCE.splitlines()[LINE]
    edit = result["textEdit"]
    assert edit["range"] == {
        "start": {"line": LINE, "character": utf16(line[: -len(WORD)])},
        "end": {"line": LINE, "character": utf16(line)},
    }
    new_text = edit["newText"]
    assert new_text.startswith(candidates[0])

    # The completion-at-point command: the whole completion lands at point.
    lines = SOURCE.split("\n")
    expected = "\n".join([*lines[:LINE], line[: -len(WORD)] + new_text, *lines[LINE + 1 :]])
    assert result["after"] == expected
    inserted = (line[: -len(WORD)] + new_text).split("\n")
    assert result["point"] == [LINE + len(inserted) - 1, len(inserted[-1])]  # after the text

    assert result["shutdown"] == "answered"
    assert "Traceback" not in result.get("stderr", ""), result["stderr"]
