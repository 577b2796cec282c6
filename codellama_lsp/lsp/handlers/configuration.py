"""`workspace/didChangeConfiguration`: the `codellama` settings the client sends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer

SETTINGS_SECTION = "codellama"


def did_change_configuration(
    ls: CodeLlamaServer, params: types.DidChangeConfigurationParams
) -> None:
    """Settings under the `codellama` section, or bare; nothing at all changes nothing."""
    raw = params.settings
    if isinstance(raw, dict) and isinstance(raw.get(SETTINGS_SECTION), dict):
        raw = raw[SETTINGS_SECTION]
    if raw in (None, {}):
        return
    ls.apply_settings(raw)
