"""Shared by the editor tests (`-m editors`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def server_command() -> str:
    """The `codellama-lsp` of the Python running the tests (the project's venv)."""
    beside = Path(sys.executable).parent / "codellama-lsp"
    found = str(beside) if beside.is_file() else shutil.which("codellama-lsp")
    if found is None:
        pytest.fail("codellama-lsp is not installed: pip install -e . in the venv")
    return found
