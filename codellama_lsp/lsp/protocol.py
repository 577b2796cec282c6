"""The JSON-RPC side of the server: pygls' protocol, with every malformed message answered and
LSP's lifecycle kept once for every method (`CodeLlamaProtocol` says how)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Generator
from typing import Any

import attrs
from cattrs import ClassValidationError, transform_error
from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCProtocol,
    JsonRPCRequestMessage,
    LanguageServerProtocol,
    lsp_method,
)

log = logging.getLogger(__name__)

STATS = "codellama/stats"
PROMPT = "codellama/prompt"


@attrs.define
class PromptRequest:
    """`codellama/prompt`, typed so that its params are checked as a built-in request's are."""

    id: int | str
    params: types.TextDocumentPositionParams
    method: str = PROMPT
    jsonrpc: str = "2.0"


@attrs.define
class Unstructured:
    """A request or notification whose params do not fit its method: answered, never run."""

    method: Any
    msg_id: int | str | None
    is_request: bool
    problem: str


class CodeLlamaProtocol(LanguageServerProtocol):
    """pygls' protocol, minus its own copy of every document, plus answers to malformed requests.

    The server keeps its own document store, which splits lines as LSP does and edits only the
    lines a change touches. pygls raises in its read loop on a request whose params do not
    structure, so the client never gets a reply; here it gets InvalidParams.

    The LSP state machine is kept here, once for every method: before `initialize` a request is
    answered ServerNotInitialized and a notification other than `exit` is dropped; a second
    `initialize`, and any request after `shutdown`, is answered InvalidRequest (pygls would run
    the one and leave the other unanswered). A body that is JSON but not one JSON-RPC 2.0
    message (a batch: LSP has none) is answered InvalidRequest with id null.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initialize_received = False

    @functools.lru_cache  # noqa: B019 (cached as pygls caches the method it overrides)
    def get_message_type(self, method: str) -> type[Any] | None:
        return PromptRequest if method == PROMPT else super().get_message_type(method)

    def structure_message(self, data: dict[str, Any]) -> Any:
        if "jsonrpc" not in data or "method" not in data or "error" in data:
            return super().structure_message(data)  # a response, or a dict inside a message
        is_request = "id" in data
        try:
            typed = self.get_message_type(data["method"])
            if typed is None:  # JSON-RPC lets params be left out; pygls' generic types do not
                generic = JsonRPCRequestMessage if is_request else JsonRPCNotification
                return self._converter.structure({"params": None, **data}, generic)
            return self._converter.structure(data, typed)
        except Exception as error:
            msg_id = data.get("id")
            return Unstructured(
                method=data["method"],
                msg_id=msg_id if isinstance(msg_id, (int, str)) else None,
                is_request=is_request,
                problem=_problem(error),
            )

    def handle_message(self, message: Any) -> None:
        unstructured = isinstance(message, Unstructured)
        if not unstructured and getattr(message, "jsonrpc", None) != JsonRPCProtocol.VERSION:
            what = "a batch (LSP has none)" if isinstance(message, list) else "not JSON-RPC 2.0"
            log.warning("refused a message that is %s", what)
            self.reply_error(None, JsonRpcInvalidRequest(f"refused a message that is {what}"))
            return
        method = message.method if unstructured else getattr(message, "method", None)
        if method is not None:  # a request or a notification, not a response
            is_request = message.is_request if unstructured else hasattr(message, "id")
            refusal = self.refusal(method)
            if refusal is not None:
                log.warning("%.64r: %s", method, refusal.message)
                if is_request:
                    self.reply_error(message.msg_id if unstructured else message.id, refusal)
                return
            if method == types.INITIALIZE and not unstructured:
                self.initialize_received = True
        if unstructured:
            log.warning("invalid params for %.64r: %s", message.method, message.problem)
            if message.is_request:
                self.reply_error(message.msg_id, JsonRpcInvalidParams(message.problem))
            return
        super().handle_message(message)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(
        self, params: types.InitializeParams
    ) -> Generator[Any, Any, types.InitializeResult]:
        """pygls' result, less the static completion provider where it is registered at run time.

        LSP forbids registering a capability both ways; a dynamic one can change its trigger
        characters when the settings do.
        """
        result: types.InitializeResult = yield from super().lsp_initialize(params)
        if registers_completion(params.capabilities):
            result.capabilities.completion_provider = None
        return result

    def refusal(self, method: Any) -> JsonRpcException | None:
        """Why `method` may not run in the server's state (LSP 3.17's lifecycle), or None."""
        if method == types.EXIT:
            return None
        if not self.initialize_received:
            if method == types.INITIALIZE:
                return None
            return JsonRpcServerNotInitialized("the server is not initialized yet")
        if method == types.INITIALIZE:
            return JsonRpcInvalidRequest("the server is already initialized")
        if self._shutdown:
            return JsonRpcInvalidRequest("the server is shut down: only exit is accepted")
        return None

    def reply_error(self, msg_id: int | str | None, error: JsonRpcException) -> None:
        """An error reply written by hand: lsprotocol's would leave out a null id."""
        response = self._converter.unstructure(error.to_response_error())
        self._send_data({"jsonrpc": JsonRPCProtocol.VERSION, "id": msg_id, "error": response})

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: Any) -> Generator[Any, Any, None]:
        yield from self._user(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: Any) -> Generator[Any, Any, None]:
        yield from self._user(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: Any) -> Generator[Any, Any, None]:
        yield from self._user(types.TEXT_DOCUMENT_DID_CLOSE, params)

    def _user(self, method: str, params: Any) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(method)) is not None:
            yield handler, (params,), None


def registers_completion(capabilities: types.ClientCapabilities) -> bool:
    """Whether the client takes completion's registration at run time (and so its changes)."""
    completion = capabilities.text_document and capabilities.text_document.completion
    return bool(completion and completion.dynamic_registration)


def _problem(error: Exception) -> str:
    """What did not fit, by path and expected type, never the value (it may be document text)."""
    if isinstance(error, ClassValidationError):
        return "; ".join(transform_error(error))
    return f"cannot be read ({type(error).__name__})"
