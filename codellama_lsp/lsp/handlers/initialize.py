"""`initialize`: the negotiated position encoding and the first settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from lsprotocol import types

from codellama_lsp.documents.text_document import Encoding

if TYPE_CHECKING:
    from codellama_lsp.lsp.server import CodeLlamaServer


def initialize(ls: CodeLlamaServer, params: types.InitializeParams) -> None:
    """pygls builds the result after this (the protocol drops the static completion provider
    where the client registers it at run time)."""
    negotiated = ls.workspace.position_encoding
    encoding = getattr(negotiated, "value", negotiated) or "utf-16"
    ls.start(cast(Encoding, encoding), params.initialization_options)
