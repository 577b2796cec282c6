"""Shared by the editor tests (`-m editors`)."""

from __future__ import annotations

import pytest
from editor_process import installed


@pytest.fixture(scope="session")
def server_command() -> str:
    """The `codellama-lsp` of the Python running the tests (the project's venv)."""
    found = installed("codellama-lsp")
    if found is None:
        pytest.fail("codellama-lsp is not installed: pip install -e . in the venv")
    return found
