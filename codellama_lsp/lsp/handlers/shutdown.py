"""`shutdown`: the scheduler stops; only `exit` is accepted after (protocol.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


def shutdown(ls: CodeLlamaServer, params: None) -> None:
    ls.shut_down = True
    if ls.scheduler is not None:
        ls.scheduler.stop()
