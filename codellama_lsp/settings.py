"""All settings, typed and validated in one place.

Editors send them as camelCase JSON (`initializationOptions`, `workspace/didChangeConfiguration`
under the `codellama` section); the command line builds the same object. A bad value is reported
and replaced by its default, so a typo in an editor's config never stops completion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .prompt import Order

Device = str  # "auto", "cpu", "mps", "cuda" or "cuda:N"
Dtype = Literal["auto", "float16", "bfloat16", "float32"]
Quantization = Literal["none", "4bit", "8bit"]
EngineKind = Literal["transformers", "llama.cpp", "openai"]

DEFAULT_MODEL = "codellama/CodeLlama-7b-hf"


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    """A hub id, a local folder, or `tiny` (the small model shipped with the project)."""
    device: Device = "auto"
    dtype: Dtype = "auto"
    quantization: Quantization = "none"
    context_tokens: int = field(default=2048, metadata={"min": 64, "max": 100_000})
    max_new_tokens: int = field(default=128, metadata={"min": 1, "max": 4096})
    order: Order = "spm"
    time_budget_ms: int = field(default=10_000, metadata={"min": 50, "max": 600_000})
    """A completion stops generating after this long and shows what it has."""
    token_healing: bool = True
    """Suffix-first only: let a completion in the middle of a word re-choose the word's token."""
    debounce_ms: int = field(default=50, metadata={"min": 0, "max": 5000})
    temperature: float = field(default=0.0, metadata={"min": 0.0, "max": 2.0})
    languages: dict[str, bool] = field(default_factory=dict)
    """languageId -> enabled; the key "*" sets the default for the others (on)."""
    trigger_characters: list[str] = field(
        default_factory=lambda: [".", "(", "[", "{", ",", "=", ":"]
    )
    cache_documents: int = field(default=8, metadata={"min": 0, "max": 256})
    """How many documents keep a KV cache of their last prompt (0: no cache)."""
    cache_megabytes: int = field(default=2048, metadata={"min": 0, "max": 1_000_000})
    """The most memory all those caches may hold together."""
    reuse_completions: bool = True
    """Answer from a recent suggestion when what was typed since matches it, without the model."""
    trust_remote_code: bool = False
    """Runs Python code from the model's folder or hub page: only for checkpoints you trust."""
    engine: EngineKind = "transformers"
    """Where generation runs: in this process, or on a llama.cpp or OpenAI-compatible server."""
    engine_url: str = "http://127.0.0.1:8012"
    """The server of a remote engine (for `openai`, with or without the trailing /v1)."""
    engine_model: str = ""
    """The served model's name, for `openai` (empty: the server's first model)."""
    engine_api_key: str = field(default="", repr=False)
    """Sent as `Authorization: Bearer`; else the CODELLAMA_LSP_API_KEY environment variable."""

    def language_enabled(self, language_id: str) -> bool:
        return self.languages.get(language_id, self.languages.get("*", True))

    def model_key(self) -> tuple[object, ...]:
        """What the loaded model depends on: a change here means loading it again."""
        if self.engine != "transformers":
            remote = (self.engine_url, self.engine_model, self.engine_api_key)
            return (self.model, self.engine, *remote)
        return (self.model, self.device, self.dtype, self.quantization, self.trust_remote_code)


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def parse_settings(
    raw: Mapping[str, Any] | None, base: Settings | None = None
) -> tuple[Settings, list[str]]:
    """Settings from an editor's camelCase object, over `base`, with one message per problem."""
    base = base or Settings()
    if raw is None:
        return base, []
    if not isinstance(raw, Mapping):
        return base, [f"settings must be an object, got {type(raw).__name__}"]
    known = {camel_case(f.name): f for f in dataclasses.fields(Settings)}
    changes: dict[str, Any] = {}
    problems = [f"unknown setting '{key}'" for key in raw if key not in known]
    for key, spec in known.items():
        if key not in raw or raw[key] is None:
            continue
        value, problem = _convert(raw[key], spec)
        if problem:
            problems.append(f"setting '{key}': {problem}; using {_default(spec)!r}")
            changes[spec.name] = _default(spec)
        else:
            changes[spec.name] = value
    return dataclasses.replace(base, **changes), problems


def _default(spec: dataclasses.Field[Any]) -> Any:
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _convert(value: Any, spec: dataclasses.Field[Any]) -> tuple[Any, str | None]:
    kind = Settings.__annotations__[spec.name]
    choices = get_args(globals().get(kind)) if kind in globals() else ()
    if choices:
        if value not in choices:
            return None, f"{value!r} is not one of {', '.join(choices)}"
        return value, None
    if kind == "bool":
        return (value, None) if isinstance(value, bool) else (None, f"{value!r} is not true/false")
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{value!r} is not a number"
        if kind == "int" and value != int(value):
            return None, f"{value!r} is not a whole number"
        low, high = spec.metadata["min"], spec.metadata["max"]
        if not low <= value <= high:
            return None, f"{value!r} is not between {low} and {high}"
        return (int(value) if kind == "int" else float(value)), None
    if kind == "dict[str, bool]":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, bool) for k, v in value.items()
        ):
            return None, f"{value!r} is not an object of true/false values"
        return dict(value), None
    if kind == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return None, f"{value!r} is not a list of strings"
        return list(value), None
    if not isinstance(value, str) or not value.strip():
        return None, f"{value!r} is not a non-empty string"
    if spec.name == "device" and not _valid_device(value):
        return None, f"{value!r} is not auto, cpu, mps, cuda or cuda:N"
    return value.strip(), None


def _valid_device(value: str) -> bool:
    kind, _, index = value.partition(":")
    if kind in ("auto", "cpu", "mps"):
        return not index
    return kind == "cuda" and (not index or index.isdigit())
