"""`exit`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


def exit_(ls: CodeLlamaServer, params: None) -> None:
    """Exit now, 0 after `shutdown` and 1 without, as the spec says.

    The process ends here rather than through interpreter teardown, which a loader thread
    still inside torch or transformers can turn into a crash with another exit code.
    """
    ls.end()
