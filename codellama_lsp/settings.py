"""All settings, each defined once: a field of `Settings`, its range in the field's metadata and
its help text in the docstring under it.

Everything else is derived from these definitions: the editor-side parser (`parse_settings`), the
command line's flags, the VS Code extension's `contributes.configuration` and the README's table
(`tools/settings_reference.py` writes those two; a test checks that they are up to date).

Editors send settings as camelCase JSON (`initializationOptions`, `workspace/didChangeConfiguration`
under the `codellama` section); the command line builds the same object. A bad value is reported
and replaced by its default, on its own, so a typo in an editor's config never stops completion.
Metadata keys: `min`/`max` (numbers), `pattern` (strings, matched whole), `command_line_only`
(never taken from an editor, whose settings a cloned workspace may supply), `secret` (no
command-line flag, which a process list would show, and never echoed in a message).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import inspect
import json
import math
import os
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from codellama_lsp.context.prompt import Order

Dtype = Literal["auto", "float16", "bfloat16", "float32"]
Quantization = Literal["none", "4bit", "8bit"]
EngineKind = Literal["transformers", "llama.cpp", "openai"]

DEFAULT_MODEL = "codellama/CodeLlama-7b-hf"
API_KEY_ENV = "CODELLAMA_LSP_API_KEY"


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    """Hugging Face hub id or local folder of a Code Llama-format checkpoint, or `tiny` (the small
    model shipped with the server)."""
    device: str = field(default="auto", metadata={"pattern": r"auto|cpu|mps|cuda(:[0-9]+)?"})
    """`auto` (CUDA, then Apple `mps`, then CPU), `cpu`, `cuda`, `cuda:N` or `mps`."""
    dtype: Dtype = "auto"
    """Weight precision: `auto` is float16 on a GPU and float32 on a CPU."""
    quantization: Quantization = "none"
    """`4bit` or `8bit` weights (needs a CUDA GPU and the server's `quantization` extra)."""
    threads: int = field(default=0, metadata={"min": 0, "max": 256})
    """The engine's CPU threads; `0` picks one less than the physical cores the process may run on
    (at least one), so a build or a browser on the other cores does not stall every step of the
    model (`OMP_NUM_THREADS`, when set, is used instead)."""
    context_tokens: int = field(default=2048, metadata={"min": 64, "max": 100_000})
    """Prompt budget in tokens, about 3/4 before the cursor and 1/4 after; never more than the
    model's positions less `maxNewTokens`."""
    max_new_tokens: int = field(default=128, metadata={"min": 1, "max": 4096})
    """The most tokens one completion generates; more than the model's positions leave room for
    is cut to what they do, with one warning."""
    order: Order = "spm"
    """Infilling prompt order: `spm` (suffix first: better single-line results, and the cache
    grows as you type) or `psm` (prefix first)."""
    time_budget_ms: int = field(default=5_000, metadata={"min": 50, "max": 600_000})
    """A completion stops generating after this many milliseconds and shows what it has (the
    default answers well inside the 10 s after which some editors give up on a request)."""
    token_healing: bool = True
    """Suffix-first order only: let a completion in the middle of a word re-choose the word's
    token."""
    debounce_ms: int = field(default=50, metadata={"min": 0, "max": 5000})
    """The least an automatic request waits for the next keystroke, in milliseconds; while you
    type steadily it waits 1.25 times your typical gap between keys (at most 300 ms)."""
    temperature: float = field(default=0.0, metadata={"min": 0.0, "max": 2.0})
    """`0` is greedy (deterministic); higher values sample."""
    languages: dict[str, bool] = field(default_factory=dict)
    """Language id to enabled, for example `{"markdown": false}`; the key `"*"` sets the default
    for the other languages (on). Keys are LSP's language ids: Emacs's own (`js`, `c++`, `sh`,
    `python-ts`, ...) are mapped to them (`javascript`, `cpp`, `shellscript`, `python`)."""
    trigger_characters: list[str] = field(
        default_factory=lambda: [".", "(", "[", "{", ",", "=", ":"]
    )
    """Characters after which classic (popup) completion asks the model; advertised at
    `initialize`, and registered again when they change where the editor registers completion
    dynamically."""
    cache_documents: int = field(default=64, metadata={"min": 0, "max": 256})
    """How many documents keep a KV cache of their last prompt (`0`: no cache); `cacheMegabytes`
    is the bound that counts for a large model."""
    cache_megabytes: int = field(default=2048, metadata={"min": 0, "max": 1_000_000})
    """The most memory, in megabytes, that all those caches may hold together; the least recently
    used go first (the document in use always keeps its own)."""
    reuse_completions: bool = True
    """Answer from a recent suggestion when what was typed since matches it, without asking the
    model."""
    extra_context_tokens: int = field(default=512, metadata={"min": 0, "max": 100_000})
    """Tokens of the prompt for snippets of the other open (and recently closed) files, as
    comments with their paths before the file's own text (`0`: none); at most half of the prompt.
    Files turned off in `languages`, git-ignored files (by the rules of `.gitignore`,
    `.git/info/exclude` and your global excludes file, read without running git) and files
    whose status cannot be decided are never used."""
    share_outside_workspace: bool = field(default=False, metadata={"command_line_only": True})
    """Let extra context come from open files outside every workspace folder (after following
    symlinks), such as a file opened on its own with no folder; off, only files inside the
    workspace's folders (and unsaved buffers) are used. Taken from the command line only: a
    workspace's settings must not widen what leaves its folders."""
    trust_remote_code: bool = field(default=False, metadata={"command_line_only": True})
    """**Dangerous.** Runs Python code shipped with the checkpoint (its folder or hub page) on
    your machine: only for checkpoints you trust completely. Taken from the command line only."""
    engine: EngineKind = "transformers"
    """Where generation runs: `transformers` in this process, or on a `llama.cpp` server or an
    `openai`-compatible one (vLLM, SGLang, llama-server); for a server only the model's tokenizer
    is loaded, never its weights."""
    engine_url: str = "http://127.0.0.1:8012"
    """The server of a remote engine (for `openai`, with or without the trailing `/v1`)."""
    engine_model: str = ""
    """The served model's name, for `openai` (empty: the server's first model)."""
    engine_api_key: str = field(default="", repr=False, metadata={"secret": True})
    """Sent as `Authorization: Bearer` to a remote engine, never logged; without it, the
    `CODELLAMA_LSP_API_KEY` environment variable, which goes only to the command line's
    `engineUrl` (an editor's other URL gets no key but its own). No command-line flag: a process
    list would show it."""

    @property
    def cache_bytes(self) -> int:
        """`cacheMegabytes` in bytes, the bound the engines keep their caches in."""
        return self.cache_megabytes * 2**20

    def language_enabled(self, language_id: str) -> bool:
        return self.languages.get(language_id, self.languages.get("*", True))

    def model_key(self) -> tuple[object, ...]:
        """What the loaded model depends on: a change here means loading it again."""
        if self.engine != "transformers":
            remote = (self.engine_url, self.engine_model, self.engine_api_key)
            return (self.model, self.engine, *remote)
        return (
            self.model,
            self.device,
            self.dtype,
            self.quantization,
            self.threads,
            self.trust_remote_code,
        )


class SettingError(ValueError):
    """A value that does not fit its setting; the message says why, in a few words."""


@dataclass(frozen=True)
class SettingSpec:
    """One setting as every consumer sees it, derived from its `Settings` field."""

    name: str
    """The field's snake_case name (the command line's `--kebab-case` flag)."""
    key: str
    """The camelCase name editors use."""
    kind: Any
    """The field's resolved type: str, bool, int, float, a Literal, dict[str, bool], list[str]."""
    default: Any
    help: str
    """The docstring under the field, as one paragraph of Markdown."""
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    command_line_only: bool = False
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def choices(self) -> tuple[str, ...]:
        return get_args(self.kind) if get_origin(self.kind) is Literal else ()

    def convert(self, value: Any) -> Any:
        """`value` (as JSON gives it) as this setting's type, or SettingError."""
        if self.choices:
            if not isinstance(value, str) or value not in self.choices:
                raise SettingError(f"{value!r} is not one of {', '.join(self.choices)}")
            return value
        if self.kind is bool:
            if not isinstance(value, bool):
                raise SettingError(f"{value!r} is not true/false")
            return value
        if self.kind in (int, float):
            return self._number(value)
        if self.kind is str:
            if not isinstance(value, str) or not (value.strip() or self.default == ""):
                raise SettingError(f"{value!r} is not a non-empty string")
            if self.pattern is not None and not re.fullmatch(self.pattern, value.strip()):
                raise SettingError(f"{value!r} does not match {self.pattern}")
            return value.strip()
        if self.kind == dict[str, bool]:
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, bool) for k, v in value.items()
            ):
                raise SettingError(f"{value!r} is not an object of true/false values")
            return dict(value)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise SettingError(f"{value!r} is not a list of strings")
        return list(value)

    def _number(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingError(f"{value!r} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingError(f"{value!r} is not a finite number")
        if self.kind is int and value != int(value):
            raise SettingError(f"{value!r} is not a whole number")
        assert self.minimum is not None and self.maximum is not None
        if not self.minimum <= value <= self.maximum:
            raise SettingError(f"{value!r} is not between {self.minimum} and {self.maximum}")
        return int(value) if self.kind is int else float(value)

    def convert_text(self, text: str) -> Any:
        """A command-line word as this setting's value: on/off for switches, JSON for objects
        and lists, the number or the word itself otherwise."""
        value: Any = text
        if self.kind is bool:
            if text not in ("on", "off"):
                raise SettingError(f"{text!r} is not on or off")
            value = text == "on"
        elif self.kind in (int, float):
            try:  # checked as a number from JSON is: "1e3" and "inf" too
                value = int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else float(text)
            except ValueError:
                raise SettingError(f"{text!r} is not a number") from None
        elif self.kind not in (str,) and not self.choices:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise SettingError(f"{text!r} is not JSON") from None
        return self.convert(value)


SUPPORTED_KINDS: tuple[Any, ...] = (str, bool, int, float, dict[str, bool], list[str])


@functools.cache
def setting_specs() -> tuple[SettingSpec, ...]:
    """Every setting, in the order of the fields."""
    hints = get_type_hints(Settings)
    docs = _field_docs()
    specs = []
    for spec in dataclasses.fields(Settings):
        kind = hints[spec.name]
        if kind not in SUPPORTED_KINDS and get_origin(kind) is not Literal:
            raise TypeError(f"setting {spec.name}: no conversion for {kind}")
        if kind in (int, float) and not {"min", "max"} <= set(spec.metadata):
            raise TypeError(f"setting {spec.name}: a number needs metadata min and max")
        specs.append(
            SettingSpec(
                name=spec.name,
                key=camel_case(spec.name),
                kind=kind,
                default=_default(spec),
                help=docs.get(spec.name, ""),
                minimum=spec.metadata.get("min"),
                maximum=spec.metadata.get("max"),
                pattern=spec.metadata.get("pattern"),
                command_line_only=spec.metadata.get("command_line_only", False),
                secret=spec.metadata.get("secret", False),
            )
        )
    return tuple(specs)


def _field_docs() -> dict[str, str]:
    """The docstring under each field of `Settings`, read from this module's source."""
    try:
        source = textwrap.dedent(inspect.getsource(Settings))
    except (OSError, TypeError):  # no source at hand (a frozen build): help without text
        return {}
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for statement, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def with_environment_key(settings: Settings) -> Settings:
    """The command line's settings with the environment's API key, unless they carry one."""
    if settings.engine_api_key:
        return settings
    return dataclasses.replace(settings, engine_api_key=os.environ.get(API_KEY_ENV, ""))


def parse_settings(
    raw: Mapping[str, Any] | None, base: Settings | None = None, origin: Settings | None = None
) -> tuple[Settings, list[str]]:
    """Settings from an editor's camelCase object, over `base`, with one message per problem.

    Each bad value falls back to its default on its own; the others still apply. Settings the
    command line alone may set are refused and keep `base`'s value. `origin` (default `base`)
    is what the command line gave: its API key goes to its own `engineUrl` only, so that a
    workspace's settings cannot send it to a server of their choosing.
    """
    base = base or Settings()
    origin = origin or base
    if raw is None:
        return base, []
    if not isinstance(raw, Mapping):
        return base, [f"settings must be an object, got {type(raw).__name__}"]
    known = {spec.key: spec for spec in setting_specs()}
    changes: dict[str, Any] = {}
    problems = [f"unknown setting '{key}'" for key in raw if key not in known]
    for key, spec in known.items():
        if key not in raw or raw[key] is None:
            continue
        if spec.command_line_only:
            problems.append(
                f"setting '{key}' is taken only from the command line "
                f"({spec.flag} on, in the server's arguments); ignored"
            )
            continue
        try:
            changes[spec.name] = spec.convert(raw[key])
        except SettingError as problem:
            shown = "not a string" if spec.secret else problem
            problems.append(f"setting '{key}': {shown}; using {spec.default!r}")
            changes[spec.name] = copy.copy(spec.default)
    if "engine_url" in changes and "engine_api_key" not in changes:
        same = _server(changes["engine_url"]) == _server(origin.engine_url)
        changes["engine_api_key"] = origin.engine_api_key if same else ""
    return dataclasses.replace(base, **changes), problems


def _server(url: str) -> str:
    """The server a URL names, as the engines read it (an `openai` URL may end in `/v1`)."""
    return url.strip().rstrip("/").removesuffix("/v1").lower()


def _default(spec: dataclasses.Field[Any]) -> Any:
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default
