"""Where a model's files come from: a local folder, the shipped tiny model, or the hub's cache.

Everything downstream loads from a local folder, so a hub id is resolved here once, cache first,
and every way this can fail becomes one message a user can act on.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from .download_progress import Progress, reporting_tqdm

SHIPPED_MODELS = {"tiny": Path(__file__).parent / "models" / "tiny"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
MODEL_FILES = ("*.json", "*.safetensors", "tokenizer.model")


class ModelFilesError(Exception):
    """The model's files cannot be found; the message is meant for the user."""


def resolve_model_folder(
    model: str, patterns: tuple[str, ...], progress: Progress | None = None
) -> Path:
    """A local folder holding `model`'s files that match `patterns` (downloaded if need be,
    reporting the bytes to `progress`), each of them a regular file."""
    folder = _find_folder(model, patterns, progress)
    _refuse_special_files(folder, patterns)
    return folder


def _find_folder(model: str, patterns: tuple[str, ...], progress: Progress | None) -> Path:
    if model in SHIPPED_MODELS:
        folder = SHIPPED_MODELS[model]
        if not (folder / "config.json").is_file():
            raise ModelFilesError(f"the shipped model '{model}' is missing from {folder}")
        return folder
    folder = Path(model).expanduser()
    if folder.is_dir():
        return folder
    if not _is_hub_id(model):
        raise ModelFilesError(f"{model}: no such folder")
    return _download(model, patterns, progress)


def _refuse_special_files(folder: Path, patterns: tuple[str, ...]) -> None:
    """Refuse, before anything opens them, model files that are not regular files.

    A FIFO or a device never ends: the loaders would block on it (safetensors and tokenizers
    while holding the GIL, which freezes the whole server). Links to regular files are fine.
    """
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            try:
                mode = path.stat().st_mode
            except OSError as error:
                raise ModelFilesError(f"cannot read {path}: {error.strerror}") from error
            if not stat.S_ISREG(mode):
                raise ModelFilesError(
                    f"cannot load {path}: it is {_kind(mode)}, not a regular file"
                )


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _is_hub_id(model: str) -> bool:
    return (
        model.count("/") <= 1
        and not model.startswith(("/", ".", "~"))
        and all(part and " " not in part for part in model.split("/"))
    )


def _download(model: str, patterns: tuple[str, ...], progress: Progress | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(model, allow_patterns=list(patterns), local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    try:
        return Path(
            snapshot_download(
                model,
                allow_patterns=list(patterns),
                tqdm_class=reporting_tqdm(progress) if progress is not None else None,
            )
        )
    except GatedRepoError as error:
        raise ModelFilesError(
            f"'{model}' is gated on the model hub: accept its licence there and log in "
            "(`hf auth login`), or pass a local folder"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelFilesError(f"no model '{model}' on the model hub, and no such folder") from error
    except (LocalEntryNotFoundError, OSError) as error:
        raise ModelFilesError(
            f"cannot load '{model}': it is not a local folder, it is not in the local cache, and "
            "the model hub could not be reached (download it once while online, or pass a "
            "local folder)"
        ) from error


def declared_positions(model: str) -> int | None:
    """The positions the checkpoint's config.json declares, where it is at hand: they cap the
    prompt window (`fit_to_model`) also where no weights are loaded."""
    try:
        config = resolve_model_folder(model, ("config.json",)) / "config.json"
        value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (ModelFilesError, OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None
