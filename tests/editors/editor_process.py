"""A real editor run headless on a sample file, as the editor tests drive it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sample_document import LINE

REPO = Path(__file__).resolve().parents[2]


def installed(name: str) -> str | None:
    """The venv's `name` (beside the Python running the tests) before any other on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def run_editor(
    argv: list[str], tmp_path: Path, server_command: str, source: str, **extra: str
) -> tuple[dict[str, Any], float]:
    """Run the editor's test script on `source` (as example.py) against the server and the
    shipped tiny model; the JSON the script wrote, and the seconds the run took."""
    path = tmp_path / "example.py"
    path.write_text(source, encoding="utf-8")
    result_file = tmp_path / "result.json"
    env = {
        **os.environ,
        "CODELLAMA_REPO": str(REPO),
        "CODELLAMA_LSP_CMD": server_command,
        "CODELLAMA_MODEL": "tiny",
        "CODELLAMA_FILE": str(path),
        "CODELLAMA_LINE": str(LINE),
        "CODELLAMA_RESULT": str(result_file),
        **extra,
    }
    started = time.monotonic()
    run = subprocess.run(
        argv,
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
    assert "error" not in result, result["error"] + "\n" + run.stderr
    assert run.returncode == 0, run.stderr
    return result, elapsed
