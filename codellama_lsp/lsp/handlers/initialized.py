"""`initialized`: the problems the first settings had, completion's registration, the load."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from codellama_lsp.lsp.protocol import registers_completion

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer

TRUST_REMOTE_CODE = (
    "codellama-lsp: --trust-remote-code is on: the checkpoint's own Python code may run on this "
    "machine"
)


def initialized(ls: CodeLlamaServer, params: types.InitializedParams) -> None:
    for problem in ls.initial_problems:
        ls.tell(types.MessageType.Warning, f"codellama-lsp: {problem}")
    if ls.settings.trust_remote_code:
        ls.tell(types.MessageType.Warning, TRUST_REMOTE_CODE)
    if registers_completion(ls.client_capabilities):
        ls.register_completion()
    ls.configure_scheduler()
