"""The `openai` engine: any server of the OpenAI-compatible `POST /v1/completions` that takes a
prompt of token ids (vLLM, SGLang, llama-server).

The ids come back where the server offers them (vLLM's `return_token_ids`); elsewhere the streamed
text is encoded again with this tokenizer, which is all the post-processor needs (it reads text).
Fields a server does not know it ignores (vLLM's `stop_token_ids`, `top_k`, `min_p`).
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import Any

from codellama_lsp.checkpoint.tokenizer import FimTokenizer
from codellama_lsp.engine.interface import EngineUnavailable, Limits
from codellama_lsp.engine.remote.base import (
    MAX_POSITIONS,
    VOCABULARY_SAMPLE,
    RemoteEngine,
    is_int,
)
from codellama_lsp.engine.token_sink import TokenSink
from codellama_lsp.settings import Settings

log = logging.getLogger(__name__)


class OpenAIEngine(RemoteEngine):
    kind = "OpenAI-compatible"

    def __init__(self, settings: Settings, tokenizer: FimTokenizer) -> None:
        super().__init__(settings, tokenizer)
        self.url = self.url.removesuffix("/v1")  # the tokenizer endpoints are at the root

        self.served = settings.engine_model
        """The served model's name; empty until the server names its first model."""

    async def _handshake(self) -> None:
        listing = await self._json("GET", "/v1/models")
        try:
            models = {str(entry["id"]): entry for entry in listing["data"]}
        except (KeyError, TypeError):
            raise EngineUnavailable(f"{self.url}/v1/models is not a list of models") from None
        if not self.served:
            self.served = next(iter(models), "")
        if self.served not in models:
            raise EngineUnavailable(
                f"{self.url} serves no model {self.served!r} (it serves "
                f"{', '.join(models) or 'none'}): set engineModel"
            )
        entry = models[self.served]
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        if (positions := entry.get("max_model_len")) is not None:  # vLLM's
            self.max_positions = self._number(positions, "max_model_len", 1, MAX_POSITIONS)
        elif (positions := meta.get("n_ctx")) is not None:  # llama-server's
            self.max_positions = self._number(positions, "n_ctx", 1, MAX_POSITIONS)
        await self._check_served_vocabulary()
        self.description = f"{self.model} as {self.served} at {self.url}"

    async def _check_served_vocabulary(self) -> None:
        """Through the tokenizer endpoints vLLM and llama-server both offer (at the root);
        a server without them is trusted, and the log says so."""
        marks = self.tokenizer.ids
        try:
            sample = await self._json(
                "POST",
                "/tokenize",
                {  # vLLM's fields and llama-server's
                    "model": self.served,
                    "prompt": VOCABULARY_SAMPLE,
                    "add_special_tokens": False,
                    "content": VOCABULARY_SAMPLE,
                    "add_special": False,
                },
            )
            spelled = await self._json(
                "POST",
                "/detokenize",
                {"model": self.served, "tokens": [marks.pre, marks.suf, marks.mid, marks.eot]},
            )
        except EngineUnavailable as error:
            if " answered 404" not in str(error):
                raise
            log.warning("%s has no /tokenize: its vocabulary is not checked", self.url)
            return
        try:
            tokens = sample["tokens"]
            markers = str(spelled.get("prompt", spelled.get("content")))
        except (KeyError, TypeError, AttributeError):
            raise EngineUnavailable(f"{self.url}/tokenize answers in an unknown form") from None
        if not isinstance(tokens, list) or not all(is_int(t) for t in tokens):
            raise EngineUnavailable(f"{self.url}/tokenize answers in an unknown form")
        self._check_vocabulary(tokens, markers)

    async def _stream(
        self, document: str, prompt: list[int], limits: Limits, sink: TokenSink
    ) -> None:
        body: dict[str, Any] = {
            "model": self.served,
            "prompt": prompt,
            "max_tokens": limits.max_new_tokens,
            "temperature": limits.temperature,
            "top_p": 1.0,
            "top_k": -1,
            "min_p": 0.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "repetition_penalty": 1.0,
            "n": 1,
            "stop_token_ids": sorted(limits.stop_ids),
            "return_token_ids": True,
            "skip_special_tokens": False,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        text = ""
        finished = False
        async with aclosing(self._events("/v1/completions", body)) as events:
            async for event in events:
                usage, timings = event.get("usage"), event.get("timings")
                if isinstance(timings, dict) and "prompt_n" in timings:  # llama-server's
                    sink.prefilled = self._number(timings["prompt_n"], "prompt_n", 0, len(prompt))
                elif isinstance(usage, dict) and "prompt_tokens" in usage:
                    sink.prefilled = self._prefilled(usage, len(prompt))
                for choice in event.get("choices") or ():
                    ids = choice.get("token_ids")
                    if ids is None:  # text only: encoded again, whole (merges can cross chunks)
                        text += choice.get("text") or ""
                        if sink.respell(self.tokenizer.encode_infilling(text)):
                            return
                    elif any(sink.push(token) for token in self._token_ids(ids)):
                        return
                    finished = finished or bool(choice.get("finish_reason"))
                    if choice.get("finish_reason") == "stop":
                        reason = choice.get("stop_reason")  # vLLM's: the stop id, or a text
                        sink.ended(
                            self._token_id(reason) if is_int(reason) else self.tokenizer.ids.eot
                        )
        if not finished:
            raise EngineUnavailable(f"the server at {self.url} ended the answer midway")

    def _prefilled(self, usage: dict[str, Any], prompt_tokens: int) -> int:
        """The prompt tokens the server evaluated, from vLLM's usage: those not cached."""
        counted = self._number(usage["prompt_tokens"], "prompt_tokens", 0, prompt_tokens)
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return counted - (
            0 if cached is None else self._number(cached, "cached_tokens", 0, counted)
        )
