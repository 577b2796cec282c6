"""Where a model's files come from: a local folder, the shipped tiny model, or the hub's cache.

Everything downstream loads from a local folder, so a hub id is resolved here once, cache first,
and every way this can fail becomes one message a user can act on.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path, PurePosixPath

from codellama_lsp.checkpoint.download import Progress, reporting_tqdm

SHIPPED_MODELS = {"tiny": Path(__file__).parents[1] / "models" / "tiny"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
MODEL_FILES = ("*.json", "*.safetensors", "tokenizer.model")
INDEX_FILE = "model.safetensors.index.json"
CONFIG_LIMIT = 2**20
"""The most a config.json may hold: a real one holds a few kB."""
JSON_LIMIT = 64 * 2**20
"""The most a model's JSON file may hold: the largest tokenizer.json known holds about 33 MB;
the loaders read a JSON file whole into memory."""


class ModelFilesError(Exception):
    """The model's files cannot be found; the message is meant for the user."""


def resolve_model_folder(
    model: str, patterns: tuple[str, ...], progress: Progress | None = None
) -> Path:
    """A local folder holding `model`'s files that match `patterns` (downloaded if need be,
    reporting the bytes to `progress`), each of them, and each shard its index names, a
    readable regular file."""
    folder = _find_folder(model, patterns, progress)
    for path in _files_to_load(folder, patterns):
        try:
            file_size(path, JSON_LIMIT if path.suffix == ".json" else None)
        except UnreadableFile as error:
            raise ModelFilesError(f"cannot load {path}: {error}") from error
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
    if folder.exists():
        kind = "a file" if folder.is_file() else _kind(folder.stat().st_mode)
        raise ModelFilesError(f"{model}: it is {kind}, not a model folder")
    if not _is_hub_id(model):
        raise ModelFilesError(f"{model}: no such folder")
    return _download(model, patterns, progress)


class UnreadableFile(Exception):
    """A file that cannot be read as a regular file; the message says why, not which file."""


def file_size(path: Path, limit: int | None = None) -> int:
    """The size of `path`, refused unless it is a regular file this process may read (links to
    one are fine) holding at most `limit` bytes.

    A FIFO or a device never ends: a reader would block on it (safetensors and tokenizers while
    holding the GIL, which freezes the whole server) or fill the memory.
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(f"it is {_kind(mode)}, not a regular file")
        with open(path, "rb") as file:  # proves it readable: safetensors says EACCES is ENOENT
            size = os.fstat(file.fileno()).st_size
    except OSError as error:
        raise UnreadableFile(os_problem(path, error)) from error
    if limit is not None and size > limit:
        raise UnreadableFile(f"it holds {size:,} bytes, more than the {limit:,} it may")
    return size


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes (see `file_size`)."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise UnreadableFile(os_problem(path, error)) from error
    with os.fdopen(descriptor, "rb") as file:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(f"it is {_kind(mode)}, not a regular file")
        data = file.read(limit + 1)  # the file may have grown since it was opened
    if len(data) > limit:
        raise UnreadableFile(f"it holds more than the {limit:,} bytes it may")
    return data


def os_problem(path: Path, error: OSError) -> str:
    """What an OSError on `path` means, in the words a user needs."""
    if error.errno == errno.ENOENT:
        return "a link to a missing file" if path.is_symlink() else "no such file"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.ELOOP:
        return "a loop of symbolic links"
    if error.errno == errno.EISDIR:
        return "it is a folder, not a regular file"
    return (error.strerror or str(error)).lower()


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files the loader may open: those at the top of `folder`, and the shards
    its index names, each checked to lie inside `folder`."""
    files = sorted(folder.glob("*.safetensors"))
    index = folder / INDEX_FILE
    if not index.exists() and not index.is_symlink():
        return files
    try:
        weight_map = json.loads(read_regular_file(index, JSON_LIMIT)).get("weight_map")
    except UnreadableFile as error:
        raise ModelFilesError(f"cannot load {index}: {error}") from error
    except (ValueError, AttributeError) as error:
        raise ModelFilesError(f"{index} is not a valid index: {error}") from error
    if not isinstance(weight_map, dict):
        raise ModelFilesError(f"{index} is not a valid index: it has no weight_map")
    for name in sorted(set(weight_map.values())):
        shard = PurePosixPath(name) if isinstance(name, str) else None
        if shard is None or not name or shard.is_absolute() or ".." in shard.parts or "\\" in name:
            raise ModelFilesError(f"{index} names {name!r}: shards must be files inside {folder}")
        if folder / shard not in files:
            files.append(folder / shard)
    return files


def _files_to_load(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    files = sorted({path for pattern in patterns for path in folder.glob(pattern)})
    if "*.safetensors" in patterns:
        files += [path for path in weight_files(folder) if path not in files]
    return files


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
        value = json.loads(read_regular_file(config, CONFIG_LIMIT)).get("max_position_embeddings")
    except (ModelFilesError, UnreadableFile, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None
