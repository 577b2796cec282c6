"""The `llama.cpp` engine: llama.cpp's `llama-server`, through its native `POST /completion`.

The prompt goes as the exact id list (llama-server's `/infill` builds another prompt than Code
Llama's), each document keeps a slot of the server (`id_slot`) so that its KV cache survives there
as it does in-process, and `cache_prompt` makes the server evaluate only the new tokens.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from contextlib import aclosing
from typing import Any

from codellama_lsp.checkpoint.tokenizer import FimTokenizer
from codellama_lsp.engine.interface import EngineUnavailable, Limits
from codellama_lsp.engine.remote.base import (
    DEFAULT_SEED,
    MAX_POSITIONS,
    MAX_SLOTS,
    VOCABULARY_SAMPLE,
    RemoteEngine,
    is_int,
)
from codellama_lsp.engine.token_sink import TokenSink
from codellama_lsp.settings import Settings


def sampling(limits: Limits) -> dict[str, Any]:
    """Every sampling field, sent explicitly: the server's defaults are not greedy, and with
    these the temperature alone shapes the distribution, as in-process."""
    return {
        "n_predict": limits.max_new_tokens,
        "temperature": limits.temperature,
        "dynatemp_range": 0.0,
        "top_k": 0,
        "top_p": 1.0,
        "min_p": 0.0,
        "typical_p": 1.0,
        "top_n_sigma": -1.0,
        "xtc_probability": 0.0,
        "repeat_penalty": 1.0,
        "repeat_last_n": 0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "dry_multiplier": 0.0,
        "mirostat": 0,
        "seed": DEFAULT_SEED,
        "ignore_eos": False,
        "n_probs": 0,
        "n_keep": 0,
        "stop": [],
    }


class LlamaCppEngine(RemoteEngine):
    kind = "llama.cpp"

    def __init__(self, settings: Settings, tokenizer: FimTokenizer) -> None:
        super().__init__(settings, tokenizer)
        self.slots = 1
        self._slot_of: OrderedDict[str, int] = OrderedDict()
        """Document -> slot, newest last."""
        self._first_slot = random.randrange(1 << 16)
        """Where this process starts counting slots: several editors share one server."""

    async def _handshake(self) -> None:
        props = await self._json("GET", "/props")
        sample = await self._json(
            "POST", "/tokenize", {"content": VOCABULARY_SAMPLE, "add_special": False}
        )
        marks = self.tokenizer.ids
        spelled = await self._json(
            "POST", "/detokenize", {"tokens": [marks.pre, marks.suf, marks.mid, marks.eot]}
        )
        try:
            slots = props.get("total_slots", 1)
            n_ctx = props["default_generation_settings"]["n_ctx"]
            tokens = sample["tokens"]
            markers = str(spelled["content"])
        except (KeyError, TypeError, AttributeError):
            raise EngineUnavailable(f"{self.url} does not answer as llama-server does") from None
        if not isinstance(tokens, list) or not all(is_int(t) for t in tokens):
            raise EngineUnavailable(f"{self.url} does not answer as llama-server does")
        self.slots = self._number(slots, "total_slots", 1, MAX_SLOTS)
        n_ctx = self._number(n_ctx, "n_ctx", 1, MAX_POSITIONS)
        self._check_vocabulary(tokens, markers)
        self.max_positions = n_ctx
        self.description = (
            f"{self.model} on llama.cpp at {self.url} ({self.slots} slots of {n_ctx} positions)"
        )

    def slot(self, document: str) -> int:
        """The document's slot: its own while this process has no more documents than slots.

        The first free one is found in as many steps as there are documents, whatever the
        number of slots."""
        slot = self._slot_of.pop(document, None)
        if slot is None:
            taken = set(self._slot_of.values())
            candidates = ((self._first_slot + i) % self.slots for i in range(self.slots))
            slot = next((s for s in candidates if s not in taken), None)
            if slot is None:
                slot = self._slot_of.popitem(last=False)[1]
        self._slot_of[document] = slot
        return slot

    def forget(self, document: str | None = None) -> None:
        if document is None:
            self._slot_of.clear()
        else:
            self._slot_of.pop(document, None)

    def cached(self) -> tuple[int, int]:
        return len(self._slot_of), 0

    async def _stream(
        self, document: str, prompt: list[int], limits: Limits, sink: TokenSink
    ) -> None:
        body = {
            "prompt": prompt,
            "id_slot": self.slot(document),
            "cache_prompt": True,
            "stream": True,
            "return_tokens": True,
            "timings_per_token": True,
            **sampling(limits),
        }
        async with aclosing(self._events("/completion", body)) as events:
            async for event in events:
                timings = event.get("timings")
                if sink.prefilled is None and isinstance(timings, dict) and "prompt_n" in timings:
                    sink.prefilled = self._number(timings["prompt_n"], "prompt_n", 0, len(prompt))
                for token in self._token_ids(event.get("tokens") or []):
                    if sink.push(token):
                        return
                if event.get("stop"):
                    if event.get("stop_type") == "eos":
                        sink.ended(self.tokenizer.ids.eot)
                    return
        raise EngineUnavailable(f"the llama.cpp server at {self.url} ended the answer midway")
