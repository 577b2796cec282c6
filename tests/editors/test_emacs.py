"""Emacs 28 with Debian's eglot (.ci/editors/nvim-emacs.sh) and the shipped
editors/emacs/codellama-lsp.el, driven in batch mode against the real server and the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sample_document import LINE, SOURCE, WORD

pytestmark = pytest.mark.editors

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("emacs_completion.el")


def emacs() -> str:
    found = shutil.which("emacs")
    if found is None:
        pytest.skip("emacs is not installed (bash .ci/editors/nvim-emacs.sh installs it)")
    return found


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_shipped_eglot_setup_offers_the_completion(tmp_path: Path, server_command: str) -> None:
    source = tmp_path / "example.py"
    source.write_text(SOURCE, encoding="utf-8")
    result_file = tmp_path / "result.json"
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # no user init, no ~/.emacs.d writes
        "CODELLAMA_REPO": str(REPO),
        "CODELLAMA_LSP_CMD": server_command,
        "CODELLAMA_MODEL": "tiny",
        "CODELLAMA_FILE": str(source),
        "CODELLAMA_LINE": str(LINE),
        "CODELLAMA_RESULT": str(result_file),
    }
    started = time.monotonic()
    run = subprocess.run(
        [emacs(), "--batch", "-l", str(SCRIPT)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    elapsed = time.monotonic() - started
    assert result_file.is_file(), f"no result (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"
    result = json.loads(result_file.read_text(encoding="utf-8"))
    print(f"emacs: {elapsed:.1f} s; eglot from {result.get('eglot')}")
    assert "error" not in result, result["error"] + "\n" + run.stderr
    assert run.returncode == 0, run.stderr

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
